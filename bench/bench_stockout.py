"""Spot refusals per hour while every sandbox zone is stocked out.

Pins the spot capacity of every sandbox zone to 0, runs `hedgeform run SERVICE --interval I`
for D seconds of wall time, and counts the spot launches the sandbox refused (capacity
errors recorded in the tick log). The on-demand cover must serve all along: the run also
reports how many ticks ended with fewer ready replicas than the target.

Runs in a throwaway project root (the repository's modules and pinned tools linked in), so it
never touches your state/. Needs `make setup` and HAProxy. Run:
`.venv/bin/python bench/bench_stockout.py --duration 600 --interval 30 [--json out.json]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SERVICE = """\
service:
  readiness_probe: /health
  replica_policy:
    min_replicas: 2
    num_overprovision: 1
    dynamic_ondemand_fallback: true
resources:
  use_spot: true
  any_of:
    - {cloud: local, region: local-1, zone: local-1a}
    - {cloud: local, region: local-1, zone: local-1b}
    - {cloud: local, region: local-2, zone: local-2a}
"""
ZONES = ("local-1a", "local-1b", "local-2a")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def count(ticks_file: Path) -> dict[str, int]:
    """Capacity refusals, launches attempted and ticks from the loop's JSON tick log."""
    refusals = ticks = launches = 0
    for line in ticks_file.read_text().splitlines():
        record = json.loads(line)
        if record.get("message") != "tick":
            continue
        ticks += 1
        launches += len(record.get("decision", {}).get("launches", []))
        for stack in record.get("stacks", {}).values():
            refusals += sum(1 for k in stack.get("launch_failures", {}).values() if k == "capacity")
    return {"ticks": ticks, "refusals": refusals, "launches": launches}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=600.0, help="wall seconds")
    parser.add_argument("--interval", type=float, default=30.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="hedgeform-stockout-"))
    (root / "services").mkdir()
    (root / "services" / "stockout.yaml").write_text(SERVICE)
    (root / "terraform").symlink_to(REPO / "terraform")
    (root / ".tools").symlink_to(REPO / ".tools")
    env = {
        **os.environ,
        "HEDGEFORM_LB_PORT": str(free_port()),
        "HEDGEFORM_SANDBOX_COLD_START": "1",
    }
    cli = [str(Path(sys.executable).parent / "hedgeform")]
    sandbox = root / "state" / "stockout" / "sandbox"
    market = [*cli, "sandbox", "market"]
    subprocess.run([*market, "run", "--state-dir", str(sandbox)], env=env, check=True)
    for zone in ZONES:
        subprocess.run(
            [
                *market,
                "set-capacity",
                "--state-dir",
                str(sandbox),
                "--zone",
                zone,
                "--capacity",
                "0",
            ],
            env=env,
            check=True,
        )
    started = time.monotonic()
    loop = subprocess.Popen(
        [*cli, "run", "stockout", "--root", str(root), "--interval", str(args.interval)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(args.duration)
    finally:
        loop.send_signal(signal.SIGTERM)
        loop.wait(timeout=60)
    elapsed = time.monotonic() - started
    figures = count(root / "state" / "stockout" / "ticks.jsonl")
    result = {
        **figures,
        "duration_s": round(elapsed, 1),
        "interval_s": args.interval,
        "refusals_per_hour": round(figures["refusals"] * 3600 / elapsed, 1),
    }
    subprocess.run(
        [*cli, "destroy", "stockout", "--root", str(root)],
        env=env,
        stdout=subprocess.DEVNULL,
        check=False,
    )
    shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
