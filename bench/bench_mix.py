"""How long one GPU-mix solve takes (issue 15 asks for at most 0.1 s), on Mélange's anchors.

    .venv/bin/python bench/bench_mix.py [--repeats 20] [ANCHOR_JSON]

Solves every (config, rate) point of `../shared/melange/anchor.json` (16 points) and the
single-bucket call-out `--repeats` times each, size-aware and size-oblivious, in this process
(HiGHS built once per solve, as `solve_mix` does), and prints per mode the median and the
slowest solve in milliseconds and the cost against Mélange's slice-factor-4 solution.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reconciler.policy.mix import solve_mix  # noqa: E402
from reconciler.spec.profile import parse_profile  # noqa: E402

ANCHOR = ROOT / ".." / "shared" / "melange" / "anchor.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("anchor", nargs="?", type=Path, default=ANCHOR)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    anchor = json.loads(args.anchor.read_text())
    cases = [
        (parse_profile(anchor["configs"][p["config"]]), p["rate_rps"], p["melange_sf4"]["cost"])
        for p in anchor["points"]
    ]
    fixture = anchor["single_bucket_fixture"]
    cases.append((parse_profile({"gpus": fixture["gpus"]}), fixture["callout"]["rate_rps"],
                  fixture["callout"]["usd_per_hour"]))  # fmt: skip
    solve_mix(cases[0][0], 1.0)  # the first HiGHS object pays for loading the library
    for aware in (True, False):
        times, ratios = [], []
        for profile, rate, melange in cases:
            for _ in range(args.repeats):
                started = time.perf_counter()
                got = solve_mix(profile, rate, size_aware=aware)
                times.append(time.perf_counter() - started)
            ratios.append(got.usd_per_hour / melange)
        mode = "size-aware" if aware else "size-oblivious"
        print(
            f"{mode}: {len(cases)} points x {args.repeats}: median "
            f"{statistics.median(times) * 1000:.1f} ms, slowest {max(times) * 1000:.1f} ms; "
            f"cost / Melange sf4: {min(ratios):.3f}-{max(ratios):.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
