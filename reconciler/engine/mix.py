"""`hedgeform mix`: the cheapest mix of GPU types for a request rate (issue 15, Mélange)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import yaml

from reconciler.errors import ProfileError
from reconciler.policy.mix import solve_mix
from reconciler.solver_output import banner_to_stderr
from reconciler.spec.loading import yaml_problem
from reconciler.spec.profile import parse_profile


def load_profile_data(path: Path, config: str | None) -> tuple[Any, str]:
    """The profile's mapping and its field path. A file holding several named configs (as
    `../shared/melange/anchor.json` does, under `configs`) needs `config` to pick one; a file
    that is one config must not be given one."""
    try:
        data = yaml.safe_load(path.read_text())  # JSON is YAML
    except yaml.YAMLError as exc:
        raise ProfileError(f"not JSON or YAML: {yaml_problem(str(path), exc)}") from None
    except UnicodeDecodeError:
        raise ProfileError(f"{path}: not a text file") from None
    if isinstance(data, dict) and "configs" in data and "gpus" not in data:
        configs = data["configs"]
        if not isinstance(configs, dict) or not configs:
            raise ProfileError(f"{path}: configs: expected a mapping of named profiles")
        if config is None:
            raise ProfileError(
                f"{path} holds several profiles; choose one with --config "
                f"({', '.join(sorted(configs))})"
            )
        if config not in configs:
            raise ProfileError(f"{path}: no config {config!r} (have: {', '.join(sorted(configs))})")
        return configs[config], f"configs.{config}"
    if config is not None:
        raise ProfileError(f"{path} holds one profile; --config {config} does not apply")
    return data, "profile"


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
    type=click.FloatRange(min=0),
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
    type=click.FloatRange(min=0, min_open=True, max=1),
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
    data, where = load_profile_data(profile_path, config)
    profile = parse_profile(data, where)
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
