"""Where a policy's unavailable ticks come from, on the shared traces (issue 14 analysis).

    .venv/bin/python bench/lost_ticks.py [--policy hedgeform] [--warning 120] [--target 3]
        [--overprovision 1] [TRACE ...]

For each trace set (default: ../shared/traces/spothedge/{AWS1,AWS2,AWS3,GCP1}) it runs the
backtest's 10 windows at the given settings and splits the scored ticks with fewer ready
replicas than the target into: the zones' spot capacity summed over the trace set was below
the target (only on-demand could have served), and the rest. Prints one line per trace.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from reconciler.backtest.runner import TICK_SECONDS, BacktestConfig, run_policy, window_starts
from reconciler.backtest.simulator import first_scored_tick
from reconciler.traces import load_trace_set

TRACES = Path(__file__).resolve().parents[1] / ".." / "shared" / "traces" / "spothedge"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("traces", nargs="*", type=Path)
    parser.add_argument("--policy", default="hedgeform")
    parser.add_argument("--warning", type=int, default=120)
    parser.add_argument("--cold-start", type=int, default=120)
    parser.add_argument("--target", type=int, default=3)
    parser.add_argument("--overprovision", type=int, default=1)
    args = parser.parse_args()
    dirs = args.traces or [TRACES / n for n in ("AWS1", "AWS2", "AWS3", "GCP1")]
    cfg = BacktestConfig(
        target=args.target,
        overprovision=args.overprovision,
        warning_s=args.warning,
        cold_start_s=args.cold_start,
    )
    first = first_scored_tick(cfg.cold_start_s, TICK_SECONDS)
    for directory in dirs:
        traces = load_trace_set(directory)
        capacity = traces.capacity(TICK_SECONDS)
        stats = run_policy(args.policy, traces, cfg)
        no_spot = other = 0
        for window, start in zip(stats.windows, window_starts(capacity.shape[1], cfg), strict=True):
            total = capacity[:, start : start + len(window.targets)].sum(axis=0)
            ready = window.ready_spot + window.ready_od
            lost = np.nonzero(ready[first:] < window.targets[first:])[0] + first
            short = int(np.sum(total[lost] < window.targets[lost]))
            no_spot += short
            other += len(lost) - short
        print(
            f"{traces.name} {args.policy}: cost {stats.cost_pct:.1f} % availability "
            f"{stats.availability_pct:.2f} %; lost ticks over {stats.repeats} windows: "
            f"{no_spot} with spot capacity below the target, {other} other"
        )


if __name__ == "__main__":
    main()
