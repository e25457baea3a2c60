"""Backtest speed: wall seconds per policy per trace set for 10 repeats (2,880 ticks each).

Targets (issue "Policy core and trace backtest"): every non-ILP policy <= 2 s per trace set,
the ILP (`optimal`) <= 60 s on AWS3. The paper's own simulator takes 170-230 s per policy per
trace here. Run: `make bench` or `.venv/bin/python bench/bench_backtest.py [--traces-root D]`.
The machine is small and noisy: compare figures within one run.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

from reconciler.backtest.runner import ALL_POLICIES, WINDOW_TICKS, BacktestConfig, run_policy
from reconciler.traces import load_trace_set

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--traces-root", type=Path, default=ROOT.parent / "shared/traces/spothedge")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args()
    cfg = BacktestConfig(repeats=args.repeats)
    rows: dict[str, dict[str, float]] = {}
    print(f"python {platform.python_version()}, {args.repeats} repeats x {WINDOW_TICKS} ticks")
    print(f"{'trace':<6} " + " ".join(f"{p:>11}" for p in ALL_POLICIES))
    for d in sorted(p for p in args.traces_root.iterdir() if p.is_dir()):
        traces = load_trace_set(d)
        rows[d.name] = {p: run_policy(p, traces, cfg).wall_s for p in ALL_POLICIES}
        print(f"{d.name:<6} " + " ".join(f"{rows[d.name][p]:>10.2f}s" for p in ALL_POLICIES))
    worst = max(w for r in rows.values() for p, w in r.items() if p != "optimal")
    ticks = args.repeats * WINDOW_TICKS
    print(f"slowest non-ILP policy: {worst:.2f} s ({worst / ticks * 1e6:.0f} us per tick)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
