"""Several GPU types in the backtest (issue 15): the mix against the cheaper type, window by window.

    .venv/bin/python bench/mixed_paired.py [--repeats 40] [--out DIR] [CELL ...]

`bench/mixed_backtest.py` prints each run's mean over the windows; a mean difference of a
tenth of a point between two runs may be the windows' noise or the policies'. This bench
replays the same trace sets (built by `mixed_backtest.build`, same types and cells) and, per
cell, pairs each window of `hedgeform_mix` with the same window of the cheaper type alone
(A10G at 7 req/s, A100-80GB at 20): the mean of the per-window differences (mix minus
alone, in cost points and availability points) and its standard error (sample standard
deviation / sqrt(windows)). Both runs see the same windows, notices and seeded draws (common
random numbers, docs/backtest.md), so a difference several standard errors from zero is the
policies'. A CELL is `<set>-<rate>-w<warning>-c<cold start>`, as mixed_backtest.py names its
JSON files (`B-20-w0-c120`); none: every cell. Prints one markdown table.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mixed_backtest import CELLS, OUT_HELP, RATES, prepare_out, whole_at_least

from reconciler.backtest.mixed_run import MixedSetup, for_traces, run_mixed
from reconciler.backtest.runner import BacktestConfig
from reconciler.solver_output import banner_to_stderr
from reconciler.spec.profile_file import load_profile
from reconciler.traces import load_trace_set


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeats",
        type=whole_at_least(2),
        default=40,
        metavar="N",
        help="Windows per trace set and cell (at least 2, for a standard error; default 40).",
    )
    parser.add_argument(
        "--out", type=Path, default=None, metavar="DIR", help=OUT_HELP.format(also="", replaced="")
    )
    parser.add_argument("cells", nargs="*", help="e.g. B-20-w0-c120 (default: every cell)")
    args = parser.parse_args()
    _, dirs, types = prepare_out(parser, args.out, "mixed-paired-")
    profile = load_profile(types, None, selector=None)
    known = {
        f"{label}-{rate:g}-w{warning}-c{cold}"
        for label in dirs for rate in RATES for warning, cold in CELLS
    }  # fmt: skip
    wanted = set(args.cells)
    if wanted - known:
        sys.exit(f"unknown cell {sorted(wanted - known)[0]!r}: one of {', '.join(sorted(known))}")
    print("| cell | windows | differ | cost diff (points) | avail diff (points) |")
    print("|---|---|---|---|---|")
    for label, directory in dirs.items():
        traces = load_trace_set(directory)
        for rate in RATES:
            cheaper = "A10G" if rate < 10 else "A100-80GB"
            setup = for_traces(traces, MixedSetup(profile, rate))
            for warning, cold in CELLS:
                cell = f"{label}-{rate:g}-w{warning}-c{cold}"
                if wanted and cell not in wanted:
                    continue
                cfg = replace(
                    BacktestConfig(), repeats=args.repeats, warning_s=int(warning),
                    cold_start_s=int(cold),
                )  # fmt: skip
                with banner_to_stderr():  # HiGHS prints its banner on fd 1
                    rows = run_mixed(traces, setup, cfg)
                mix, alone = (
                    rows["hedgeform_mix"].windows,
                    rows[f"hedgeform {cheaper} only"].windows,
                )
                cost = [m.cost_pct - a.cost_pct for m, a in zip(mix, alone, strict=True)]
                avail = [
                    m.availability_pct - a.availability_pct for m, a in zip(mix, alone, strict=True)
                ]
                differ = sum(1 for c, a in zip(cost, avail, strict=True) if c or a)
                print(
                    f"| {cell} | {len(cost)} | {differ} | {_mean_se(cost)} | {_mean_se(avail)} |",
                    flush=True,
                )


def _mean_se(values: list[float]) -> str:
    """`+mean ± standard error` of at least two values (one per window: --repeats >= 2)."""
    se = statistics.stdev(values) / math.sqrt(len(values))
    return f"{statistics.mean(values):+.3f} ± {se:.3f}"


if __name__ == "__main__":
    main()
