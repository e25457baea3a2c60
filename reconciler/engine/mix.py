"""`hedgeform mix`: the cheapest mix of GPU types for a request rate (issue 15, Mélange)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from reconciler.click_types import Finite
from reconciler.errors import UnreadableFileError
from reconciler.policy.mix import solve_mix
from reconciler.solver_output import banner_to_stderr
from reconciler.spec.profile_file import load_profile


@click.command(name="mix")
@click.option(
    "--profile",
    "profile_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="Throughput profile (JSON or YAML): gpus.<type>.usd_per_hour, gpus.<type>.max_rps "
    "per request-size bucket, distribution (docs/mix.md).",
)
@click.option(
    "--rate",
    type=Finite(min=0),
    required=True,
    help="Total request rate to serve, requests per second.",
)
@click.option("--config", default=None, help="Which of several named profiles in the file.")
@click.option(
    "--size-oblivious",
    is_flag=True,
    help="The load balancer cannot route by request size: every type gets the same mix.",
)
@click.option(
    "--max-utilization",
    type=Finite(min=0, min_open=True, max=1),
    default=1.0,
    show_default=True,
    help="Headroom: load each instance to at most this share of its SLO capacity.",
)
@click.option("--json", "as_json", is_flag=True, help='Print {"mix": {...}, "usd_per_hour": x}.')
def mix(
    profile_path: Path,
    rate: float,
    config: str | None,
    size_oblivious: bool,
    max_utilization: float,
    as_json: bool,
) -> None:
    """Print the cheapest count of each GPU type that serves RATE requests/s within the SLO.

    The profile gives, per GPU type, its $/h and the highest rate one instance sustains within
    the latency SLO for each request-size bucket, and how requests spread over the buckets
    (Mélange's inputs, arXiv 2404.14527). The mix is an exact integer program (HiGHS): by
    default a bucket's traffic may be split across types (a size-aware load balancer).
    """
    try:
        profile = load_profile(profile_path, config)
    except UnreadableFileError as exc:  # /dev/zero, a FIFO, 2 GB: a bad --profile, exit 2
        raise click.BadParameter(str(exc), param_hint="--profile") from None
    with banner_to_stderr():
        chosen = solve_mix(
            profile, rate, size_aware=not size_oblivious, max_utilization=max_utilization
        )
    if as_json:
        click.echo(json.dumps(chosen.to_json()))
        return
    used = [f"{n} × {name}" for name, n in chosen.counts.items() if n]
    click.echo(f"mix for {rate:g} req/s: {', '.join(used) or 'nothing'}")
    click.echo(f"cost: ${chosen.usd_per_hour:.2f}/h")
