"""Time the omniscient `optimal` baseline on the SpotHedge trace sets.

Ten seeded windows of 24 h per trace (the backtest's protocol), target 3, cold start 120 s.
Prints the mean cost as a percentage of all-on-demand and the seconds spent per trace set.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from reconciler.backtest.optimal import solve_window
from reconciler.backtest.runner import TICK_SECONDS, WINDOW_TICKS, BacktestConfig, window_starts
from reconciler.traces import load_trace_set

WINDOWS = 10
TARGET = 3
COLD_TICKS = 4
OD_COST = 3.0
TRACES = ("AWS1", "AWS2", "AWS3", "GCP1")


def bench_trace(directory: Path) -> tuple[float, float]:
    """Mean cost % of on-demand over the seeded windows, and the total solve seconds."""
    capacity = load_trace_set(directory).capacity(TICK_SECONDS)
    ticks = capacity.shape[1]
    window = min(WINDOW_TICKS, ticks)
    costs: list[float] = []
    elapsed = 0.0
    for start in window_starts(ticks, BacktestConfig(repeats=WINDOWS, seed=0)):
        began = time.perf_counter()
        plan = solve_window(
            capacity[:, start : start + window], target=TARGET, cold_ticks=COLD_TICKS
        )
        elapsed += time.perf_counter() - began
        costs.append(plan.cost_units / (OD_COST * TARGET * window) * 100)
    return float(np.mean(costs)), elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--traces-root",
        type=Path,
        default=Path(__file__).resolve().parents[2] / "shared/traces/spothedge",
    )
    args = parser.parse_args()
    print(f"{'trace':<6} {'cost %':>7} {'seconds':>8}")
    for name in TRACES:
        cost, seconds = bench_trace(args.traces_root / name)
        print(f"{name:<6} {cost:7.1f} {seconds:8.2f}")


if __name__ == "__main__":
    main()
