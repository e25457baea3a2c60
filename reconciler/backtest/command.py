"""`hedgeform backtest`: replay spot traces through the policies."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import click

from reconciler.backtest.matrix import Cell, MatrixRun, MatrixSettings, cell_by_id, grid, run_matrix
from reconciler.backtest.matrix_report import format_pareto, write_report
from reconciler.backtest.matrix_report import write_plot as write_matrix_plot
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
from reconciler.click_types import Finite, Whole
from reconciler.errors import (
    BacktestError,
    MixError,
    ProfileError,
    TraceError,
    UnreadableFileError,
)
from reconciler.solver_output import banner_to_stderr
from reconciler.spec.service import MAX_REPLICAS
from reconciler.traces import load_trace_set

DEFAULT_POLICIES = (
    "spothedge",
    "hedgeform",
    "hedgeform_v1",
    "ondemand",
    "even_spread",
    "round_robin",
    "static",
)
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
    type=Whole(1, 1000),
    default=10,
    show_default=True,
    help="24 h windows per trace (1 to 1000).",
)
@click.option(
    "--seed",
    type=Whole(0, 2**32 - 1),
    default=0,
    show_default=True,
    help="Seed for the window offsets and the realistic notices (0 to 2^32-1).",
)
@click.option(
    "--target",
    type=Whole(1, MAX_REPLICAS),
    default=3,
    show_default=True,
    help=f"Replicas the service needs (1 to {MAX_REPLICAS}).",
)
@click.option(
    "--overprovision",
    type=Whole(0, MAX_REPLICAS),
    default=1,
    show_default=True,
    help=f"Extra spot replicas (SpotHedge; 0 to {MAX_REPLICAS}).",
)
@click.option(
    "--cold-start",
    type=Whole(0, 86_400),
    default=120,
    show_default=True,
    help="Seconds from launch to ready, exact (0 to 86400); the policy sees READY at its first "
    "decision at or after that time, and availability counts it from the next 30 s tick.",
)
@click.option(
    "--warning",
    "warning_s",
    type=Whole(0, 3_600),
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
    type=Finite(0.0, 1.0),
    default=0.1,
    show_default=True,
    help="Realistic notices: share of preemptions with no notice (0 to 1). No cloud publishes "
    "it; 0.1 is a stress assumption, not a measurement.",
)
@click.option(
    "--lead-jitter",
    "lead_jitter_s",
    type=Finite(0.0, 3_600.0),
    default=None,
    help="Realistic notices: a notice comes up to this many seconds late (0 to --warning; "
    "default half the warning).",
)
@click.option(
    "--launch-failure-delay",
    "launch_failure_delay_s",
    type=Whole(0, 3_600),
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
@click.option(
    "--types",
    "types_path",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="Several GPU types (docs/backtest.md, 'Several GPU types'): a YAML/JSON file giving "
    "per type its on-demand $/h and the requests/s one replica serves, one number "
    "(gpus.<TYPE>.usd_per_hour, gpus.<TYPE>.max_rps; TYPE as the trace file names give it, "
    "e.g. A10G for us-east-1a_a10g_1.json). Spot costs a third of on-demand. Runs "
    "hedgeform_mix over every pool of each trace directory, then hedgeform over each type "
    "alone; needs --rate.",
)
@click.option(
    "--rate",
    type=Finite(min=0, min_open=True, max=1e6),
    help="--types: the requests/s to serve (constant).",
)
@click.option(
    "--matrix",
    is_flag=True,
    help="Run the standard evaluation matrix instead (docs/evaluation.md): every policy and "
    "optimal in each cell of warning x notice model x cold start x target x workload. Needs "
    "--json; sets those five factors itself, so they and --policy are refused.",
)
@click.option(
    "--jobs",
    type=Whole(1, 64),
    default=2,
    show_default=True,
    help="--matrix: cells run in parallel in this many processes (1 to 64).",
)
@click.option(
    "--resume",
    is_flag=True,
    help="--matrix: reuse the finished cells of the --json file whose fingerprint (source "
    "files, settings, traces) still matches; recompute the others.",
)
@click.option(
    "--cell",
    "cell_ids",
    multiple=True,
    help="--matrix: run only this cell, e.g. w120-perfect-c120-t3-constant (repeatable).",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(path_type=Path),
    help="--matrix: write the markdown report here (only its generated part if it has one).",
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
    types_path: Path | None,
    rate: float | None,
    matrix: bool,
    jobs: int,
    resume: bool,
    cell_ids: tuple[str, ...],
    report_path: Path | None,
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
    for flag, path in (("--json", json_path), ("--plot", plot_path), ("--report", report_path)):
        if path is not None:
            _check_writable(flag, path)  # before the run, not after it
    mixed = types_path is not None or rate is not None
    if mixed:
        _check_mixed_flags(types_path, rate, matrix)
    _check_matrix_flags(matrix, json_path)
    if matrix:
        assert json_path is not None
        _run_matrix(
            MatrixRun(
                cells=tuple(_cells(cell_ids)),
                settings=MatrixSettings(
                    repeats=repeats,
                    seed=seed,
                    overprovision=overprovision,
                    launch_failure_delay_s=launch_failure_delay_s,
                    unwarned_share=unwarned_share,
                ),
                trace_dirs=(*trace_dirs, *more_traces),
                workload_file=workload_file or MAF_CSV / MAF_NAME,
                json_path=json_path,
                jobs=jobs,
                resume=resume,
                tree=_tree_state(),
            ),
            report_path,
            plot_path,
            quiet,
        )
        return
    _check_notice_flags(notice_model, warning_s, lead_jitter_s)
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
    if mixed:
        assert types_path is not None and rate is not None
        _run_mixed(types_path, rate, (*trace_dirs, *more_traces), cfg, json_path, quiet)
        return
    chosen = policies or (*DEFAULT_POLICIES, "optimal")
    try:
        sets = [load_trace_set(d) for d in (*trace_dirs, *more_traces)]
        for traces in sets:
            traces.require_one_type(
                "a backtest without --types FILE --rate RPS (which run the mix)"
            )
        spans: dict[str, str] = {}
        for traces in sets:
            note = traces.span_note(TICK_SECONDS)
            if note is not None:
                spans[traces.name] = note
                click.echo(note, err=True)
        load: Workload | None = None
        if workload == "maf":
            load = load_maf(workload_file or MAF_CSV / MAF_NAME, target)
        results: dict[str, dict[str, PolicyStats]] = {}
        with banner_to_stderr():  # HiGHS (optimal) prints its banner on fd 1
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
MATRIX_FACTORS = (
    ("warning_s", "--warning"),
    ("notice_model", "--notice-model"),
    ("lead_jitter_s", "--lead-jitter"),
    ("cold_start", "--cold-start"),
    ("target", "--target"),
    ("workload", "--workload"),
)
MATRIX_ONLY = (
    ("jobs", "--jobs"),
    ("resume", "--resume"),
    ("cell_ids", "--cell"),
    ("report_path", "--report"),
)


def _check_matrix_flags(matrix: bool, json_path: Path | None) -> None:
    """--matrix sets the factors itself and runs every policy; its own flags need it."""
    ctx = click.get_current_context()

    def given(name: str) -> bool:
        return ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT

    if not matrix:
        for name, flag in MATRIX_ONLY:
            if given(name):
                raise click.BadParameter("applies only with --matrix", param_hint=flag)
        return
    if given("policies"):
        raise click.BadParameter(
            "--matrix runs every policy (cost ÷ optimal needs optimal, the Pareto summary "
            "spothedge); use --cell to run fewer cells",
            param_hint="--policy",
        )
    for name, flag in MATRIX_FACTORS:
        if given(name):
            raise click.BadParameter(
                "is set per cell by --matrix (docs/evaluation.md); use --cell to pick cells",
                param_hint=flag,
            )
    if json_path is None:
        raise click.BadParameter(
            "--matrix writes its results there cell by cell (and --resume reads them)",
            param_hint="--json",
        )


MIXED_EXCLUDES = (
    ("policies", "--policy", "--types runs hedgeform_mix and hedgeform per type"),
    ("target", "--target", "--types sizes each run from --rate"),
    ("workload", "--workload", "--types serves a constant --rate"),
    ("workload_file", "--workload-file", "--types serves a constant --rate"),
    ("plot_path", "--plot", "--types writes no plot"),
)


def _check_mixed_flags(types_path: Path | None, rate: float | None, matrix: bool) -> None:
    """--types and --rate go together, without the flags they replace."""
    ctx = click.get_current_context()
    if types_path is None:
        raise click.BadParameter(
            "needs --types (what each GPU type costs and serves)", param_hint="--rate"
        )
    if rate is None:
        raise click.BadParameter("needs --rate (the requests/s to serve)", param_hint="--types")
    if matrix:
        raise click.BadParameter("cannot be combined with --matrix", param_hint="--types")
    for name, flag, why in MIXED_EXCLUDES:
        if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT:
            raise click.BadParameter(f"does not apply with --types: {why}", param_hint=flag)


def _run_mixed(
    types_path: Path,
    rate: float,
    dirs: tuple[Path, ...],
    cfg: BacktestConfig,
    json_path: Path | None,
    quiet: bool,
) -> None:
    from reconciler.backtest.mixed_run import SPOT_SHARE, MixedSetup, for_traces, run_mixed
    from reconciler.spec.profile_file import load_profile

    try:
        profile = load_profile(types_path, None, selector=None)
        setup = MixedSetup(profile, rate)
        # Every set and the types checked before anything runs.
        checked = [(traces, for_traces(traces, setup)) for traces in map(load_trace_set, dirs)]
        results: dict[str, dict[str, PolicyStats]] = {}
        spans: dict[str, str] = {}
        with banner_to_stderr():  # HiGHS prints its banner on fd 1
            baseline = checked[0][1].baseline_usd_per_hour
            for traces, named in checked:
                note = traces.span_note(TICK_SECONDS)
                if note is not None:
                    spans[traces.name] = note
                    click.echo(note, err=True)
                results[traces.name] = run_mixed(traces, named, cfg, None if quiet else _progress)
    except UnreadableFileError as exc:  # /dev/zero, a FIFO, 2 GB: a bad --types, exit 2
        raise click.BadParameter(str(exc), param_hint="--types") from None
    except (TraceError, BacktestError, ProfileError, MixError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(format_table(results))
    click.echo(
        f"cost % is of ${baseline:.2f}/h, the cheapest on-demand-only way to serve {rate:g} "
        "req/s; availability: ticks whose ready replicas serve the rate"
    )
    if json_path:
        config = {
            **cfg.to_json(),
            "types": {g.name: {"usd_per_hour": g.usd_per_hour, "max_rps": g.max_rps[0][0]}
                      for g in checked[0][1].profile.gpus},
            "spot_share_of_on_demand": SPOT_SHARE,
            "rate_rps": rate,
            "baseline_usd_per_hour": round(baseline, 6),
        }  # fmt: skip
        config.pop("target")
        config.pop("workload")
        write_json(results, json_path, config=config, spans=spans)
        click.echo(f"wrote {json_path}")


def _cells(cell_ids: tuple[str, ...]) -> list[Cell]:
    if not cell_ids:
        return grid()
    try:
        chosen = {cell_by_id(c) for c in cell_ids}
    except BacktestError as exc:
        raise click.BadParameter(str(exc), param_hint="--cell") from None
    return sorted(chosen, key=grid().index)


def _tree_state() -> str | None:
    """The git commit of this checkout, and whether the files that shape the figures differ
    from it: recorded with each run. None outside a git checkout."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "reconciler/policy",
             "reconciler/backtest", "reconciler/traces.py", "reconciler/spec/model.py"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.split("\n")  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    changed = sorted(line[3:] for line in dirty if line.strip())
    return head + (f" + uncommitted {', '.join(changed)}" if changed else "")


def _run_matrix(
    run: MatrixRun, report_path: Path | None, plot_path: Path | None, quiet: bool
) -> None:
    say = (lambda _m: None) if quiet else _progress
    try:
        if run.workload_file is not None and any(c.workload == "maf" for c in run.cells):
            load_maf(run.workload_file, 1)  # a bad workload file fails now, not after an hour
        data = run_matrix(run, say)
    except (TraceError, BacktestError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo("\n".join(format_pareto(data)))
    click.echo(f"wrote {run.json_path}")
    if plot_path:
        write_matrix_plot(data, plot_path)
        click.echo(f"wrote {plot_path}")
    if report_path:
        plot_name = None
        if plot_path is not None:
            plot_name = os.path.relpath(plot_path.resolve(), report_path.resolve().parent)
        write_report(data, report_path, plot_name)
        click.echo(f"wrote {report_path}")


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
