"""Ablation of the default policy's changes over hedgeform_v1 (issue 14, docs/policy.md).

    .venv/bin/python bench/ablation.py [--jobs 2] [--json FILE] [TRACE ...]

Runs `hedgeform`, `hedgeform` with each of its four issue-14 changes taken out (and its
adaptive spare without the documented-lead prior), `hedgeform_v1` and `spothedge` over the
constant-load, 120 s cold start cells of the evaluation
matrix (warning 0, 30 and 120 s; perfect and realistic notices; targets 1, 3 and 8: 15 cells)
on each trace set (default: ../shared/traces/spothedge/{AWS1,AWS2,AWS3,GCP1}), with the
matrix's settings (10 windows, seed 0, overprovision 1); `optimal`'s cost on each is read from
the recorded matrix (docs/evaluation.json, which must hold these cells and traces at these
settings: the solver does not depend on the policy). Prints one markdown row per variant:
the default cell's cost / optimal (mean over traces) and its lowest availability; then, over
the warning 0 and 30 s cells (36 cell/traces), how often it Pareto-dominates spothedge
(availability to 4 decimals >=, mean cost per window to 2 decimals <=, as the matrix
compares), its worst availability shortfall against spothedge and its mean cost / optimal.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reconciler.backtest.matrix import Cell, MatrixSettings, grid  # noqa: E402
from reconciler.backtest.runner import OPTIMAL, run_policy  # noqa: E402
from reconciler.policy import POLICIES  # noqa: E402
from reconciler.policy.decision import PolicyFn  # noqa: E402
from reconciler.policy.spothedge import HEDGEFORM, Variant, decide_with  # noqa: E402
from reconciler.traces import load_trace_set  # noqa: E402

TRACES = ROOT / ".." / "shared" / "traces" / "spothedge"
DEFAULT_CELL = "w120-perfect-c120-t3-constant"
VARIANTS: dict[str, Variant] = {
    "hedgeform": HEDGEFORM,
    "without the queue placer": replace(HEDGEFORM, placer_queue=False),
    "without the adaptive spare": replace(HEDGEFORM, adaptive_spare=False),
    "adaptive spare without the documented-lead prior": replace(HEDGEFORM, documented_prior=False),
    "without spare diversity": replace(HEDGEFORM, spare_diversity=False),
    "without readiness-aware scale-down": replace(HEDGEFORM, ready_aware_scale_down=False),
}
FIXED = ("hedgeform_v1", "spothedge")
RECORDED = ROOT / "docs" / "evaluation.json"


def _policy(variant: Variant) -> PolicyFn:
    def decide(spec, observed, signals, memory, now):  # type: ignore[no-untyped-def]
        return decide_with(variant, spec, observed, signals, memory, now)

    return decide


def cells() -> list[Cell]:
    return [c for c in grid() if c.workload == "constant" and c.cold_start_s == 120]


def run_one(job: tuple[str, str, str]) -> tuple[str, str, str, float, float]:
    """(variant, cell id, trace dir) -> mean cost units per window and availability."""
    name, cell_id, trace_dir = job
    for label, variant in VARIANTS.items():
        POLICIES.setdefault(f"ablation:{label}", _policy(variant))
    cell = next(c for c in cells() if c.id == cell_id)
    policy = name if name in FIXED else f"ablation:{name}"
    stats = run_policy(policy, load_trace_set(Path(trace_dir)), cell.config(MatrixSettings()))
    units = sum(w.cost_units for w in stats.windows) / len(stats.windows)
    return name, cell_id, Path(trace_dir).name, units, stats.availability_pct


def table(results: dict[tuple[str, str, str], tuple[float, float]]) -> list[str]:
    traces = sorted({t for _, _, t in results})
    lines = [
        "| policy | default cell: cost ÷ optimal | default cell: lowest availability | "
        "w0/w30: dominates spothedge | w0/w30: worst shortfall (points) | "
        "w0/w30: mean cost ÷ optimal |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    cost_of: Callable[[str, str, str], float] = lambda n, c, t: results[(n, c, t)][0]  # noqa: E731
    for name in [*VARIANTS, "hedgeform_v1", "spothedge"]:
        ratios = [
            cost_of(name, DEFAULT_CELL, t) / cost_of(OPTIMAL, DEFAULT_CELL, t) for t in traces
        ]
        lowest = min(results[(name, DEFAULT_CELL, t)][1] for t in traces)
        dom = n = 0
        worst = -100.0
        mean = []
        for cell in cells():
            if cell.warning_s == 120:
                continue
            for t in traces:
                units, avail = results[(name, cell.id, t)]
                base_units, base_avail = results[("spothedge", cell.id, t)]
                n += 1
                dom += round(avail, 4) >= round(base_avail, 4) and round(units, 2) <= round(
                    base_units, 2
                )
                worst = max(worst, round(base_avail, 4) - round(avail, 4))
                mean.append(units / cost_of(OPTIMAL, cell.id, t))
        lines.append(
            f"| {name} | {sum(ratios) / len(ratios):.3f} | {lowest:.2f} % | {dom}/{n} | "
            f"{worst:.2f} | {sum(mean) / len(mean):.3f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("traces", nargs="*", type=Path)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args()
    dirs = args.traces or [TRACES / n for n in ("AWS1", "AWS2", "AWS3", "GCP1")]
    jobs = [(n, c.id, str(d)) for c in cells() for d in dirs for n in [*VARIANTS, *FIXED]]
    results: dict[tuple[str, str, str], tuple[float, float]] = {}
    recorded = json.loads(RECORDED.read_text())
    ours = MatrixSettings()
    theirs = recorded["settings"]
    if any(theirs[k] != getattr(ours, k) for k in ("repeats", "seed", "overprovision")) or (
        theirs["launch_failure_delay_s"] != ours.launch_failure_delay_s
        or theirs["unwarned_share"] != ours.unwarned_share
    ):
        sys.exit(f"{RECORDED}: not run with the matrix's default settings")
    for cell in cells():
        for d in dirs:
            try:
                row = recorded["cells"][cell.id]["traces"][d.name][OPTIMAL]
            except KeyError:
                sys.exit(f"{RECORDED} has no optimal for {cell.id} / {d.name}: run make evaluate")
            results[(OPTIMAL, cell.id, d.name)] = (row["cost_units"], 100.0)
    with ProcessPoolExecutor(args.jobs) as pool:
        for i, (name, cell_id, trace, units, avail) in enumerate(pool.map(run_one, jobs), 1):
            results[(name, cell_id, trace)] = (units, avail)
            if i % 20 == 0:
                print(f"[{i}/{len(jobs)}]", file=sys.stderr)
    if args.json:
        rows = [[*k, *v] for k, v in sorted(results.items())]
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    print("\n".join(table(results)))


if __name__ == "__main__":
    main()
