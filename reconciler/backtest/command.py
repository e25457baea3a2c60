"""`hedgeform backtest`: replay spot traces through the policies."""

from __future__ import annotations

from pathlib import Path

import click

from reconciler.backtest.report import format_table, write_json, write_plot
from reconciler.backtest.runner import (
    ALL_POLICIES,
    NOTICE_MODELS,
    TICK_SECONDS,
    BacktestConfig,
    PolicyStats,
    run_policy,
)
from reconciler.backtest.workload import Workload, load_maf
from reconciler.errors import BacktestError, TraceError
from reconciler.spec.service import MAX_REPLICAS
from reconciler.traces import load_trace_set

DEFAULT_POLICIES = ("spothedge", "hedgeform", "ondemand", "even_spread", "round_robin", "static")
MAF_CSV = Path(__file__).resolve().parents[2] / ".." / "shared" / "workloads"
MAF_NAME = "maf1-requests-per-minute.csv"


@click.command("backtest")
@click.option(
    "--traces",
    "trace_dirs",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path),
    help="Directory of spot traces, one JSON file per zone (SpotHedge format). Repeatable; "
    "several directories may also follow one --traces.",
)
@click.argument("more_traces", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--policy",
    "policies",
    multiple=True,
    type=click.Choice(ALL_POLICIES),
    help=f"Policy to run (repeatable). Default: {', '.join(DEFAULT_POLICIES)}, optimal.",
)
@click.option(
    "--repeats",
    type=click.IntRange(1, 1000),
    default=10,
    show_default=True,
    help="24 h windows per trace (1 to 1000).",
)
@click.option(
    "--seed",
    type=click.IntRange(0, 2**32 - 1),
    default=0,
    show_default=True,
    help="Seed for the window offsets and the realistic notices (0 to 2^32-1).",
)
@click.option(
    "--target",
    type=click.IntRange(1, MAX_REPLICAS),
    default=3,
    show_default=True,
    help=f"Replicas the service needs (1 to {MAX_REPLICAS}).",
)
@click.option(
    "--overprovision",
    type=click.IntRange(0, MAX_REPLICAS),
    default=1,
    show_default=True,
    help=f"Extra spot replicas (SpotHedge; 0 to {MAX_REPLICAS}).",
)
@click.option(
    "--cold-start",
    type=click.IntRange(0, 86_400),
    default=120,
    show_default=True,
    help="Seconds from launch to ready, exact (0 to 86400); the policy sees READY at its first "
    "decision at or after that time, and availability counts it from the next 30 s tick.",
)
@click.option(
    "--warning",
    "warning_s",
    type=click.IntRange(0, 3_600),
    default=120,
    show_default=True,
    help="Seconds of advance preemption notice, exact (0 to 3600; 0 for none): AWS 120 "
    "(best effort), GCP 30, Azure at least 30. A notice between ticks wakes the policy then.",
)
@click.option(
    "--notice-model",
    type=click.Choice(NOTICE_MODELS),
    default="perfect",
    show_default=True,
    help="perfect: every preemption exactly --warning ahead. realistic: each preemption "
    "independently has no notice with probability --unwarned-share, else a lead of --warning "
    "minus U(0, --lead-jitter) seconds; seeded by --seed and the window.",
)
@click.option(
    "--unwarned-share",
    type=click.FloatRange(0.0, 1.0),
    default=0.1,
    show_default=True,
    help="Realistic notices: share of preemptions with no notice (0 to 1). No cloud publishes "
    "it; 0.1 is a stress assumption, not a measurement.",
)
@click.option(
    "--lead-jitter",
    "lead_jitter_s",
    type=click.FloatRange(0.0, 3_600.0),
    default=None,
    help="Realistic notices: a notice comes up to this many seconds late (0 to --warning; "
    "default half the warning).",
)
@click.option(
    "--launch-failure-delay",
    "launch_failure_delay_s",
    type=click.IntRange(0, 3_600),
    default=60,
    show_default=True,
    help="Seconds before a refused spot launch is known (0 to 3600): the reconciler learns of "
    "a capacity refusal from `terraform apply`, which returns only after the provider's create "
    "call and waiters, tens of seconds on every cloud. Until then the policy sees it STARTING.",
)
@click.option(
    "--workload",
    type=click.Choice(["constant", "maf"]),
    default="constant",
    show_default=True,
    help="constant: fixed target; maf: target from the Azure Functions trace via the autoscaler.",
)
@click.option(
    "--workload-file",
    type=click.Path(path_type=Path),
    default=None,
    help=f"Requests-per-minute CSV for --workload maf (default ../shared/workloads/{MAF_NAME}).",
)
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Write results here.")
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(path_type=Path),
    help="Write the plot here (.png, .pdf or .svg).",
)
@click.option(
    "--quiet",
    is_flag=True,
    help="No progress lines on stderr (the line about zones of unequal length stays).",
)
def backtest(
    trace_dirs: tuple[Path, ...],
    more_traces: tuple[Path, ...],
    policies: tuple[str, ...],
    repeats: int,
    seed: int,
    target: int,
    overprovision: int,
    cold_start: int,
    warning_s: int,
    notice_model: str,
    unwarned_share: float,
    lead_jitter_s: float | None,
    launch_failure_delay_s: int,
    workload: str,
    workload_file: Path | None,
    json_path: Path | None,
    plot_path: Path | None,
    quiet: bool,
) -> None:
    """Replay spot-availability traces through the policies and report cost and availability.

    Each repeat scores a 24 h window (2,880 ticks of 30 s) at a seeded random offset. Spot
    costs 1 per replica-tick, on-demand 3; cost % is relative to serving the target on
    on-demand only; availability % is the share of ticks (after the first cold start) with at
    least `target` replicas that the policy had already seen ready. Times (cold start, notices,
    refused launches) are exact in seconds. The simulator drives the same policy code as the
    live loop. Zones of unequal length are replayed over their common span (a line on stderr
    says what is dropped). docs/backtest.md gives the semantics.
    """
    for flag, path in (("--json", json_path), ("--plot", plot_path)):
        if path is not None:
            _check_writable(flag, path)  # before the run, not after it
    _check_notice_flags(notice_model, warning_s, lead_jitter_s)
    chosen = policies or (*DEFAULT_POLICIES, "optimal")
    cfg = BacktestConfig(
        target=target,
        overprovision=overprovision,
        cold_start_s=cold_start,
        repeats=repeats,
        seed=seed,
        warning_s=warning_s,
        workload=workload,
        notice_model=notice_model,
        unwarned_share=unwarned_share,
        lead_jitter_s=lead_jitter_s,
        launch_failure_delay_s=launch_failure_delay_s,
    )
    try:
        sets = [load_trace_set(d) for d in (*trace_dirs, *more_traces)]
        spans: dict[str, str] = {}
        for traces in sets:
            note = traces.span_note(TICK_SECONDS)
            if note is not None:
                spans[traces.name] = note
                click.echo(note, err=True)
        load: Workload | None = None
        if workload == "maf":
            load = load_maf(workload_file or MAF_CSV / MAF_NAME, target)
            if "optimal" in chosen:
                raise BacktestError("the optimal policy supports only --workload constant")
        results: dict[str, dict[str, PolicyStats]] = {}
        for traces in sets:
            results[traces.name] = {}
            for name in chosen:
                results[traces.name][name] = run_policy(
                    name, traces, cfg, load, None if quiet else _progress
                )
    except (TraceError, BacktestError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(format_table(results))
    if json_path:
        write_json(results, json_path, config=cfg.to_json(), spans=spans)
        click.echo(f"wrote {json_path}")
    if plot_path:
        write_plot(results, plot_path)
        click.echo(f"wrote {plot_path}")


PLOT_SUFFIXES = (".png", ".pdf", ".svg")


def _check_notice_flags(model: str, warning_s: int, lead_jitter_s: float | None) -> None:
    """Notice flags that contradict each other are usage errors, one line each."""
    ctx = click.get_current_context()
    if model == "perfect":
        for name, flag in (
            ("unwarned_share", "--unwarned-share"),
            ("lead_jitter_s", "--lead-jitter"),
        ):
            if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT:
                raise click.BadParameter(
                    "applies only with --notice-model realistic", param_hint=flag
                )
    if lead_jitter_s is not None and lead_jitter_s > warning_s:
        raise click.BadParameter(
            f"{lead_jitter_s:g} s is more than --warning {warning_s} s: a notice cannot come "
            "after its preemption",
            param_hint="--lead-jitter",
        )


def _check_writable(flag: str, path: Path) -> None:
    """A results file that cannot be written is a usage error now, not after the whole run:
    the file is opened for appending (and removed again when it did not exist)."""
    if path.is_dir():
        raise click.BadParameter(f"{path} is a directory; give a file name", param_hint=flag)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise click.BadParameter(f"directory {parent} does not exist", param_hint=flag)
    if flag == "--plot" and path.suffix.lower() not in PLOT_SUFFIXES:
        raise click.BadParameter(
            f"{path}: give a file ending in {', '.join(PLOT_SUFFIXES)}", param_hint=flag
        )
    existed = path.exists()
    try:
        with path.open("ab"):
            pass
    except OSError as exc:
        raise click.BadParameter(
            f"{path} is not writable ({exc.strerror})", param_hint=flag
        ) from None
    if not existed:
        path.unlink(missing_ok=True)


def _progress(message: str) -> None:
    click.echo(message, err=True)
