"""The standard evaluation matrix (`hedgeform backtest --matrix`, `make evaluate`).

Every cell of warning {0, 30, 120} s x notice model {perfect, realistic} (a 0 s warning has one,
`none`) x cold start {120, 600} s x target {1, 3, 8} x workload {constant, maf}: 60 cells, each
run on every trace set through every policy and `optimal` (docs/evaluation.md).

A cell is the unit of work and of resumption. Cells run in worker processes; the parent writes
the results file after each finished cell (a whole new file, renamed over the old one, so a
`kill -9` leaves the last complete state). `--resume` reuses a finished cell only if its
fingerprint matches: the source digest (every `reconciler/policy/*.py` and
`reconciler/backtest/*.py` but the three that only present results, `command.py`, `report.py`
and `matrix_report.py`; plus `reconciler/traces.py` and `reconciler/spec/model.py`, which shape
the figures too) and the settings digest (the cell's factors, the run's fixed settings, and
the bytes of the trace files and the workload file).

Per cell, trace and policy: `cost_ratio` = the policy's total cost over the windows / optimal's,
and `availability_pct`, the headline: scored ticks with ready >= the policy's own target.
Under `maf` each scored tick falls in exactly one of (`downtime_split`):
capacity downtime (ready < the autoscaler's target), scale-up lag (target <= ready < demand)
or served (ready >= both), so capacity + lag + served = 100 % and availability = 100 % - capacity.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import cache
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np

from reconciler.backtest.runner import (
    ALL_POLICIES,
    OPTIMAL,
    TICK_SECONDS,
    WINDOW_TICKS,
    BacktestConfig,
    PolicyStats,
    run_policy,
)
from reconciler.backtest.simulator import WindowResult
from reconciler.backtest.workload import Workload, load_maf
from reconciler.errors import BacktestError
from reconciler.traces import TraceSet, load_trace_set

WARNINGS = (0, 30, 120)
NOTICE_MODELS = ("perfect", "realistic")  # a 0 s warning has neither: its cells say "none"
COLD_STARTS = (120, 600)
TARGETS = (1, 3, 8)
WORKLOADS = ("constant", "maf")
BASELINE = "spothedge"  # the Pareto summary compares every policy with it
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
FORMAT = "hedgeform-evaluation/1"

_ROOT = Path(__file__).resolve().parents[1]  # reconciler/
SOURCE_GLOBS = ("policy/*.py", "backtest/*.py", "traces.py", "spec/model.py")
PRESENTATION = ("backtest/command.py", "backtest/report.py", "backtest/matrix_report.py")


def matrix_policies() -> tuple[str, ...]:
    """Every policy, `spothedge` and `hedgeform` first, `optimal` last."""
    first = (BASELINE, "hedgeform")
    rest = [p for p in ALL_POLICIES if p not in first and p != OPTIMAL]
    return (*[p for p in first if p in ALL_POLICIES], *rest, OPTIMAL)


@dataclass(frozen=True, order=True)
class Cell:
    """One combination of the matrix's factors."""

    warning_s: int
    notices: str  # "none" (warning 0), "perfect" or "realistic"
    cold_start_s: int
    target: int
    workload: str

    @property
    def id(self) -> str:
        return (
            f"w{self.warning_s}-{self.notices}-c{self.cold_start_s}-t{self.target}-{self.workload}"
        )

    def config(self, settings: MatrixSettings) -> BacktestConfig:
        return BacktestConfig(
            target=self.target,
            overprovision=settings.overprovision,
            cold_start_s=self.cold_start_s,
            repeats=settings.repeats,
            seed=settings.seed,
            warning_s=self.warning_s,
            workload=self.workload,
            notice_model="realistic" if self.notices == "realistic" else "perfect",
            unwarned_share=settings.unwarned_share,
            lead_jitter_s=None,  # half the warning
            launch_failure_delay_s=settings.launch_failure_delay_s,
        )


def grid() -> list[Cell]:
    """The 60 cells, in the order they are run and reported."""
    cells = []
    for workload, warning, cold, target in product(WORKLOADS, WARNINGS, COLD_STARTS, TARGETS):
        for notices in ("none",) if warning == 0 else NOTICE_MODELS:
            cells.append(Cell(warning, notices, cold, target, workload))
    return cells


def cell_by_id(cell_id: str) -> Cell:
    for cell in grid():
        if cell.id == cell_id:
            return cell
    raise BacktestError(f"no cell {cell_id!r} in the matrix (e.g. {grid()[0].id})")


@dataclass(frozen=True)
class MatrixSettings:
    """What every cell shares."""

    repeats: int = 10
    seed: int = 0
    overprovision: int = 1
    launch_failure_delay_s: int = 60
    unwarned_share: float = 0.1  # realistic cells; their lead jitter is half the warning

    def to_json(self) -> dict[str, object]:
        return {
            **asdict(self),
            "lead_jitter": "half the warning",
            "tick_s": TICK_SECONDS,
            "window_ticks": WINDOW_TICKS,
        }


# -- fingerprints --------------------------------------------------------------------------------


def _digest(chunks: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(len(chunk).to_bytes(8, "big"))
        h.update(chunk)
    return h.hexdigest()[:16]


def source_files(root: Path = _ROOT) -> list[Path]:
    """The files whose contents make the source fingerprint."""
    found = {p for pattern in SOURCE_GLOBS for p in root.glob(pattern)}
    return sorted(p for p in found if p.relative_to(root).as_posix() not in PRESENTATION)


def source_fingerprint(root: Path = _ROOT) -> str:
    """Digest of the code that shapes the figures (module docstring)."""
    return _digest(
        chunk
        for path in source_files(root)
        for chunk in (path.relative_to(root).as_posix().encode(), path.read_bytes())
    )


def inputs_fingerprint(trace_dirs: Sequence[Path], workload_file: Path | None) -> str:
    """Digest of the trace files and the workload file."""
    chunks: list[bytes] = []
    for d in trace_dirs:
        for path in sorted(Path(d).glob("*.json")):
            chunks += [f"{Path(d).name}/{path.name}".encode(), path.read_bytes()]
    if workload_file is not None and workload_file.is_file():
        chunks += [b"workload", workload_file.read_bytes()]
    return _digest(chunks)


def settings_fingerprint(cell: Cell, settings: MatrixSettings, inputs: str) -> str:
    text = json.dumps([asdict(cell), asdict(settings), inputs], sort_keys=True)
    return _digest([text.encode()])


# -- one cell ------------------------------------------------------------------------------------


def downtime_split(w: WindowResult) -> tuple[int, int, int]:
    """Scored ticks of a window under a request-rate workload, as (capacity downtime, scale-up
    lag, served): ready < the policy's target; target <= ready < demand; ready >= both.
    They partition the scored ticks. Without a demand (constant workload) lag is 0."""
    if w.scored_ticks == 0:
        return 0, 0, 0
    first = len(w.targets) - w.scored_ticks  # the simulator scores the window's last ticks
    ready = (w.ready_spot.astype(np.int64) + w.ready_od)[first:]
    target = w.targets.astype(np.int64)[first:]
    demand = target if w.demand is None else w.demand.astype(np.int64)[first:]
    capacity = ready < target
    lag = ~capacity & (ready < demand)
    return int(capacity.sum()), int(lag.sum()), int((~capacity & ~lag).sum())


def policy_row(stats: PolicyStats, optimal_units: float | None, maf: bool) -> dict[str, Any]:
    """One policy on one trace set in one cell, as the results file records it."""
    units = sum(w.cost_units for w in stats.windows)
    row: dict[str, Any] = {
        "cost_ratio": round(units / optimal_units, 4) if optimal_units else None,
        "availability_pct": round(stats.availability_pct, 4),
        "cost_pct": round(stats.cost_pct, 2),
        "cost_units": round(units / len(stats.windows), 2),
        "preemptions": round(stats.preemptions, 2),
        "spot_launches": round(stats.spot_launches, 2),
        "od_launches": round(stats.od_launches, 2),
        "wall_s": round(stats.wall_s, 3),
    }
    if maf and any(w.scored_ticks for w in stats.windows):
        shares = np.array(
            [
                np.array(downtime_split(w)) / w.scored_ticks * 100
                for w in stats.windows
                if w.scored_ticks
            ]
        ).mean(axis=0)
        row["capacity_down_pct"] = round(float(shares[0]), 4)
        row["scaleup_lag_pct"] = round(float(shares[1]), 4)
        row["served_pct"] = round(float(shares[2]), 4)
    return row


@dataclass(frozen=True)
class CellJob:
    """Everything a worker needs for one cell (picklable)."""

    cell: Cell
    settings: MatrixSettings
    trace_dirs: tuple[Path, ...]
    workload_file: Path | None
    policies: tuple[str, ...]


@cache
def _trace_set(directory: Path) -> TraceSet:
    return load_trace_set(directory)


@cache
def _workload(path: Path, target: int) -> Workload:
    return load_maf(path, target)


def run_cell(job: CellJob) -> dict[str, Any]:
    """Run one cell on every trace set: {trace: {policy: row}} and the cell's wall time."""
    started = time.perf_counter()
    cell = job.cell
    cfg = cell.config(job.settings)
    load: Workload | None = None
    if cell.workload == "maf":
        if job.workload_file is None:
            raise BacktestError("the maf workload needs a workload file")
        load = _workload(job.workload_file, cell.target)
    traces: dict[str, dict[str, Any]] = {}
    for d in job.trace_dirs:
        ts = _trace_set(d)
        stats = {name: run_policy(name, ts, cfg, load) for name in job.policies}
        opt = stats.get(OPTIMAL)
        opt_units = sum(w.cost_units for w in opt.windows) if opt else None
        traces[ts.name] = {
            name: policy_row(s, opt_units, load is not None) for name, s in stats.items()
        }
    return {"traces": traces, "wall_s": round(time.perf_counter() - started, 2)}


# -- the results file ----------------------------------------------------------------------------


def load_results(path: Path) -> dict[str, Any] | None:
    """A results file written by `run_matrix`, or None if there is none."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BacktestError(f"{path}: cannot resume from it ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BacktestError(f"{path}: not an evaluation matrix file (format {FORMAT})")
    return data


def save_results(data: Mapping[str, Any], path: Path) -> None:
    """Write a new file beside `path` and rename it over: a kill leaves the old or the new."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(dumps(data))
    os.replace(tmp, path)


def dumps(data: Mapping[str, Any]) -> str:
    """Indented JSON with every innermost object or list (a policy's row, a cell's factors)
    on one line: the 60-cell file stays about two thousand lines."""
    text = json.dumps(data, indent=1, ensure_ascii=False)
    # json.dumps escapes newlines inside strings, so every newline here is layout.
    flat = re.sub(r"\{[^{}\[\]]*\}", lambda m: re.sub(r"\n\s*", " ", m.group()), text)
    return re.sub(r"\[[^{}\[\]]*\]", lambda m: re.sub(r"\n\s*", " ", m.group()), flat) + "\n"


# -- the run -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MatrixRun:
    """One `--matrix` invocation."""

    cells: tuple[Cell, ...]
    settings: MatrixSettings
    trace_dirs: tuple[Path, ...]
    workload_file: Path | None
    json_path: Path
    jobs: int = 2
    resume: bool = False
    policies: tuple[str, ...] = ()  # default: matrix_policies()
    tree: str | None = None  # the checkout's state, recorded with the run


def run_matrix(run: MatrixRun, say: Callable[[str], None]) -> dict[str, Any]:
    """Run (or resume) the matrix, writing the results file after each finished cell."""
    started = time.perf_counter()
    policies = run.policies or matrix_policies()
    sets = [_trace_set(d) for d in run.trace_dirs]  # loaded here: forked workers inherit them
    spans = {ts.name: note for ts in sets if (note := ts.span_note(TICK_SECONDS)) is not None}
    for note in spans.values():
        say(note)
    source = source_fingerprint()
    inputs = inputs_fingerprint(run.trace_dirs, run.workload_file)
    previous = load_results(run.json_path) if run.resume else None
    if run.resume and previous is None:
        say(f"{run.json_path}: nothing to resume; starting afresh")
    old_cells: dict[str, Any] = previous["cells"] if previous else {}
    data: dict[str, Any] = {
        "format": FORMAT,
        "settings": run.settings.to_json(),
        "grid": {
            "warning_s": list(WARNINGS),
            "notice_models": ["none (warning 0)", *NOTICE_MODELS],
            "cold_start_s": list(COLD_STARTS),
            "target": list(TARGETS),
            "workload": list(WORKLOADS),
            "cells": len(grid()),
        },
        "traces": [ts.name for ts in sets],
        "policies": list(policies),
        "spans": spans,
        "source": {"fingerprint": source, "files": len(source_files())},
        "inputs": inputs,
        "runs": [*(previous["runs"] if previous else [])],
        "cells": {},
    }
    this_run = len(data["runs"])
    todo: list[Cell] = []
    names = [ts.name for ts in sets]
    for cell in run.cells:
        key = settings_fingerprint(cell, run.settings, inputs)
        old = old_cells.get(cell.id)
        if old is None:
            todo.append(cell)
            continue
        changed = [
            what
            for what, mine, theirs in (
                ("source", source, old.get("source")),
                ("settings", key, old.get("settings")),
                ("policies", list(policies), old.get("policies")),
                ("traces", names, list(old.get("traces", {}))),
            )
            if mine != theirs
        ]
        if changed:
            say(f"{cell.id}: {' and '.join(changed)} changed since it ran; recomputing")
            todo.append(cell)
        else:
            data["cells"][cell.id] = old
    reused = len(run.cells) - len(todo)
    if reused:
        which = f": {', '.join(c.id for c in todo)}" if 0 < len(todo) <= 5 else ""
        say(f"resuming {run.json_path}: {reused} of {len(run.cells)} cells reused, "
            f"{len(todo)} to run{which}")  # fmt: skip
    record: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "jobs": run.jobs,
        "tree": run.tree,
        "source": source,
        "computed": 0,
        "reused": reused,
        "wall_s": 0.0,
        "complete": False,
    }
    data["runs"].append(record)

    def finish(cell: Cell, result: dict[str, Any]) -> None:
        data["cells"][cell.id] = {
            "cell": asdict(cell),
            "source": source,
            "settings": settings_fingerprint(cell, run.settings, inputs),
            "policies": list(policies),
            "run": this_run,
            **result,
        }
        record["computed"] += 1
        record["wall_s"] = round(time.perf_counter() - started, 1)
        save_results(_ordered(data, run.cells), run.json_path)
        done = len(data["cells"])
        say(f"[{done}/{len(run.cells)}] {cell.id}: {result['wall_s']:.1f} s")

    jobs = [
        CellJob(cell, run.settings, run.trace_dirs, run.workload_file, policies) for cell in todo
    ]
    for cell, result in _execute(jobs, run.jobs):
        finish(cell, result)
    record["wall_s"] = round(time.perf_counter() - started, 1)
    record["complete"] = True
    data = _ordered(data, run.cells)
    save_results(data, run.json_path)
    return data


def _ordered(data: dict[str, Any], cells: Sequence[Cell]) -> dict[str, Any]:
    order = {c.id: i for i, c in enumerate(cells)}
    return {**data, "cells": dict(sorted(data["cells"].items(), key=lambda kv: order[kv[0]]))}


def _die_with_parent() -> None:
    """In each worker: ask Linux to kill it when the process that started it dies, so a
    `kill -9` of the matrix leaves no worker waiting forever on its task queue
    (prctl PR_SET_PDEATHSIG; elsewhere nothing)."""
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the parent died before the request took effect
        os._exit(1)


def _execute(jobs: Sequence[CellJob], workers: int) -> Iterator[tuple[Cell, dict[str, Any]]]:
    """Results as cells finish: in this process with one worker, else in a process pool."""
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield job.cell, run_cell(job)
        return
    with ProcessPoolExecutor(
        max_workers=min(workers, len(jobs)), initializer=_die_with_parent
    ) as pool:
        pending: dict[Future[dict[str, Any]], Cell] = {
            pool.submit(run_cell, job): job.cell for job in jobs
        }
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=lambda f: pending[f]):
                    cell = pending.pop(future)
                    yield cell, future.result()
        except BaseException:
            for future in pending:
                future.cancel()
            raise
