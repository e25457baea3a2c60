"""`hedgeform profile`: measure one GPU type's throughput profile against a running endpoint
and write it into a service's sidecar (issue 15; spec/sidecar.py, sandbox/profiling.py)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import yaml

from reconciler.click_types import Finite, Whole
from reconciler.errors import SandboxError
from reconciler.files import write_atomic
from reconciler.sandbox.profiling import Probe, measure_bucket
from reconciler.spec.fields import ACCELERATOR_NAME, ACCELERATOR_RULE
from reconciler.spec.loading import read_sidecar
from reconciler.spec.sidecar import SIDECAR_SUFFIX

MAX_BUCKETS = 64  # input lengths x output lengths: each bucket is a search of several loads


def _lengths(value: str, option: str) -> list[int]:
    try:
        lengths = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected whole numbers, e.g. 128,1024") from None
    if not lengths or any(n < 1 or n > 100_000 for n in lengths):
        raise click.BadParameter(f"{value!r}: each length must be 1-100000", param_hint=option)
    return lengths


def _sidecar_gpus(path: Path, shape: Sequence[int]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The sidecar at `path` ({} when missing) and its `mix.profile.gpus` mapping, ready to
    take a `max_rps` grid of `shape` (each row's length); a missing or empty (null) `mix`,
    `profile` or `gpus` is made. SpecError (one line) for a file that cannot be read or is
    not YAML as `load_spec` reads it; SandboxError (one line, naming the field path) for a
    field that is not a mapping, or a `mix.profile.distribution` of another shape than the
    grid (the sidecar would then be refused)."""
    data: Any = read_sidecar(path) if path.exists() else None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SandboxError(f"{path}: expected a mapping with `mix:`")
    node: dict[str, Any] = data
    where = ""
    for key in ("mix", "profile", "gpus"):  # each made where missing or empty (null)
        where = f"{where}.{key}" if where else key
        if node.get(key) is None:
            node[key] = {}
        if not isinstance(node[key], dict):
            raise SandboxError(f"{path}: {where} is not a mapping")
        node = node[key]
    distribution = data["mix"]["profile"].get("distribution")
    if isinstance(distribution, list) and all(isinstance(row, list) for row in distribution):
        buckets = [len(row) for row in distribution]
        if buckets != list(shape):
            raise SandboxError(
                f"{path}: mix.profile.distribution has {len(buckets)} rows of {buckets} "
                f"buckets, the profile measures {len(shape)} rows of {list(shape)} "
                "(--input-lengths x --output-lengths): measure its buckets, or change it first"
            )
    return data, node


def check_sidecar(path: Path, shape: Sequence[int]) -> None:
    """Check, before a sweep, that a `max_rps` grid of `shape` (each row's length) can be
    merged into the sidecar at `path` (`merge_into_sidecar`): the file (if any) is read,
    parsed and its field paths checked, and a file can be written in its directory. One-line
    errors as `merge_into_sidecar`'s; SandboxError naming the directory when no file can be
    written there (missing, not writable)."""
    _sidecar_gpus(path, shape)
    try:
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"):
            pass
    except OSError as exc:
        raise SandboxError(
            f"{path}: cannot write in {path.parent}: {exc.strerror or exc}"
        ) from None


def merge_into_sidecar(path: Path, accelerator: str, grid: list[list[float]]) -> None:
    """Set `mix.profile.gpus.<accelerator>.max_rps` in the sidecar at `path` (created when
    missing), replacing the type's entry under any case of its name and keeping everything
    else the file holds (comments are not kept: YAML is rewritten).
    The file is read again here (it may have changed during a sweep checked with
    `check_sidecar`). SpecError or SandboxError (one line naming the file and the field) for
    a file that is not such a sidecar (`_sidecar_gpus`); OSError when it cannot be written."""
    data, gpus = _sidecar_gpus(path, [len(row) for row in grid])
    for name in [n for n in gpus if str(n).upper() == accelerator.upper()]:
        del gpus[name]  # the type's entry under another case (the sidecar ignores case)
    gpus[accelerator] = {"max_rps": grid}
    write_atomic(path, yaml.safe_dump(data, sort_keys=False).encode())


@click.command(name="profile")
@click.option("--url", required=True, help="The endpoint, a loopback URL (e.g. the sandbox's).")
@click.option("--accelerator", required=True, help="The GPU type the endpoint runs, e.g. L4.")
@click.option(
    "--slo-ms",
    type=Finite(min=0, min_open=True),
    required=True,
    help="Latency target: a request within it meets the SLO.",
)
@click.option(
    "--attainment",
    type=Finite(min=0, min_open=True, max=1),
    default=0.95,
    show_default=True,
    help="Share of requests that must meet the target at the rate reported.",
)
@click.option(
    "--input-lengths",
    default="128",
    show_default=True,
    help="Prompt lengths in words, comma-separated: the profile's bucket rows.",
)
@click.option(
    "--output-lengths",
    default="16",
    show_default=True,
    help="Completion lengths in tokens, comma-separated: the profile's bucket columns.",
)
@click.option(
    "--duration",
    type=Finite(min=1, max=3_600),
    default=20.0,
    show_default=True,
    help="Seconds of load per probe.",
)
@click.option(
    "--max-rate",
    type=Finite(min=0, min_open=True, max=10_000),
    default=1_000.0,
    show_default=True,
    help="Requests/s no probe exceeds.",
)
@click.option("--seed", type=Whole(min=0), default=0, show_default=True)
@click.option(
    "--write",
    "sidecar",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Merge the result into this sidecar (services/<name>.hedgeform.yaml); the file is "
    "checked before the sweep.",
)
@click.option("--json", "as_json", is_flag=True, help='Print {"<type>": {"max_rps": [...]}}.')
def profile(
    url: str,
    accelerator: str,
    slo_ms: float,
    attainment: float,
    input_lengths: str,
    output_lengths: str,
    duration: float,
    max_rate: float,
    seed: int,
    sidecar: Path | None,
    as_json: bool,
) -> None:
    """Measure the highest request rate one replica of ACCELERATOR sustains within the
    latency target, per request-size bucket, by sweeping seeded Poisson loads against URL.

    Each bucket is a search: rates double from 1 request/s until a load misses the target
    for more than 1 - ATTAINMENT of its requests, then bisect to within 5 %. Point URL at
    one replica (not a load balancer over several) to measure one replica. The result is
    the `max_rps` grid of the sidecar's profile (docs/mix.md); the request distribution over
    the buckets is the workload's, for you to write there.

    When nothing answers (nothing listening, timeouts, every reply an error) it stops at the
    first probe, says so in one line with the first error and exits 1, writing nothing. A
    bucket the endpoint answers but never within the target measures 0 (one line on stderr
    says so): that type cannot serve that bucket within the SLO.
    """
    if not ACCELERATOR_NAME.fullmatch(accelerator):
        raise click.BadParameter(f"{accelerator!r}: {ACCELERATOR_RULE}", param_hint="--accelerator")
    rows = _lengths(input_lengths, "--input-lengths")
    cols = _lengths(output_lengths, "--output-lengths")
    if len(rows) * len(cols) > MAX_BUCKETS:
        raise click.BadParameter(
            f"{len(rows) * len(cols)} buckets; at most {MAX_BUCKETS}", param_hint="--input-lengths"
        )
    if max_rate * duration < 1:  # every probe would send no request, so measure nothing
        raise click.BadParameter(
            f"{max_rate:g} req/s for {duration:g} s is not one request per probe",
            param_hint="--max-rate",
        )
    if sidecar is not None and not sidecar.name.endswith(SIDECAR_SUFFIX):
        raise click.BadParameter(
            f"{sidecar}: a sidecar's name ends in {SIDECAR_SUFFIX}", param_hint="--write"
        )
    if sidecar is not None:  # before the sweep, which takes minutes: a bad sidecar fails now
        check_sidecar(sidecar, [len(cols)] * len(rows))
    grid: list[list[float]] = []
    for words in rows:
        row = []
        for tokens in cols:
            bucket = f"{accelerator} ({words} words in, {tokens} out)"
            probes: list[Probe] = []

            def shown(probe: Probe, bucket: str = bucket, probes: list[Probe] = probes) -> None:
                probes.append(probe)
                click.echo(
                    f"{bucket}: {probe.rate_rps:g} req/s "
                    f"-> {100 * probe.attainment:.1f} % within {slo_ms:g} ms",
                    err=True,
                )

            rate = measure_bucket(
                url,
                input_words=words,
                output_tokens=tokens,
                slo_ms=slo_ms,
                attainment=attainment,
                duration_s=duration,
                seed=seed,
                max_rate=max_rate,
                on_probe=shown,
            )
            if rate == 0:  # answered (measure_bucket refuses otherwise), never in time
                lowest = min(p.rate_rps for p in probes)
                click.echo(
                    f"{bucket}: max_rps 0: the endpoint answers, but not {100 * attainment:g} % "
                    f"of requests within {slo_ms:g} ms even at {lowest:g} req/s",
                    err=True,
                )
            row.append(round(rate, 3))
        grid.append(row)
    if sidecar is not None:
        merge_into_sidecar(sidecar, accelerator, grid)
        click.echo(f"wrote mix.profile.gpus.{accelerator}.max_rps in {sidecar}", err=True)
    if as_json:
        click.echo(json.dumps({accelerator: {"max_rps": grid}}))
        return
    click.echo(f"{accelerator}: max_rps (rows: {input_lengths} words in; columns: "
               f"{output_lengths} tokens out)")  # fmt: skip
    for words, row in zip(rows, grid, strict=True):
        click.echo(f"  {words:>6}: " + "  ".join(f"{v:g}" for v in row))
