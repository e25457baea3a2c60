"""Failed requests and latency through the load balancer while every zone loses its spot
capacity and gets it back (issue 9's "no moment without a healthy server").

In a throwaway project root (the repository's modules and pinned tools linked in, so it never
touches your state/), with the shipped `llama` service: `hedgeform apply` until it serves,
then `hedgeform run --interval I` and a constant load of Q requests/s of
`POST /v1/completions` through HAProxy for D seconds. At `--out-at` seconds every zone's spot
capacity is pinned to 0 (its spot replicas get the sandbox's preemption warning, then are
preempted); at `--back-at` seconds capacity returns (pinned to 8 per zone, so "back" does
not depend on where the trace happens to be). Prints one JSON line: requests sent, failed,
errors by kind, p50/p90/p99 latency, and the ticks the loop ran.

Needs `make setup` and HAProxy. Run:
`.venv/bin/python bench/bench_preemption_load.py [--duration 120 --qps 20 --interval 5]
[--json out.json]`.
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
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ZONES = ("local-1a", "local-1b", "local-2a")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ticks(ticks_file: Path) -> int:
    if not ticks_file.exists():
        return 0
    lines = ticks_file.read_text().splitlines()
    return sum(1 for line in lines if json.loads(line).get("message") == "tick")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=120.0, help="load seconds")
    parser.add_argument("--qps", type=float, default=20.0)
    parser.add_argument("--interval", type=float, default=5.0, help="loop interval, s")
    parser.add_argument("--out-at", type=float, default=20.0, help="capacity 0 at, s")
    parser.add_argument("--back-at", type=float, default=70.0, help="capacity back at, s")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if not 0 < args.out_at < args.back_at < args.duration:
        parser.error("need 0 < --out-at < --back-at < --duration")
    root = Path(tempfile.mkdtemp(prefix="hedgeform-preempt-load-"))
    (root / "services").mkdir()
    shutil.copy(REPO / "services" / "llama.yaml", root / "services" / "llama.yaml")
    (root / "terraform").symlink_to(REPO / "terraform")
    (root / ".tools").symlink_to(REPO / ".tools")
    port = free_port()
    env = {**os.environ, "HEDGEFORM_LB_PORT": str(port)}
    cli = [str(Path(sys.executable).parent / "hedgeform")]
    sandbox = root / "state" / "llama" / "sandbox"
    state = root / "state" / "llama"

    def hf(*argv: str, check: bool = True) -> None:
        subprocess.run([*cli, *argv], env=env, check=check, stdout=subprocess.DEVNULL)

    def set_capacity(capacity: int) -> None:
        for zone in ZONES:
            hf("sandbox", "market", "set-capacity", "--state-dir", str(sandbox),
               "--zone", zone, "--capacity", str(capacity))  # fmt: skip

    loop = None
    try:
        hf("sandbox", "market", "run", "--state-dir", str(sandbox))
        set_capacity(8)
        hf("apply", "llama", "--root", str(root), "--timeout", "120")
        loop = subprocess.Popen(
            [*cli, "run", "llama", "--root", str(root), "--interval", str(args.interval)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        load_out: dict[str, str] = {}

        def load() -> None:
            proc = subprocess.run(
                [*cli, "sandbox", "load", "--url", f"http://127.0.0.1:{port}",
                 "--qps", str(args.qps), "--duration", str(args.duration), "--json"],
                env=env, capture_output=True, text=True, check=False,
            )  # fmt: skip
            load_out["stdout"], load_out["stderr"] = proc.stdout, proc.stderr

        sender = threading.Thread(target=load)
        started = time.monotonic()
        sender.start()
        time.sleep(args.out_at)
        set_capacity(0)
        time.sleep(max(0.0, args.back_at - (time.monotonic() - started)))
        set_capacity(8)
        sender.join()
        result = json.loads(load_out["stdout"]) if load_out.get("stdout") else {}
        if not result:
            sys.exit(f"the load generator failed: {load_out.get('stderr', '').strip()}")
    finally:
        if loop is not None:
            loop.send_signal(signal.SIGTERM)
            loop.wait(timeout=60)
        hf("destroy", "llama", "--root", str(root), check=False)
    summary = {
        "duration_s": args.duration,
        "qps": args.qps,
        "interval_s": args.interval,
        "out_at_s": args.out_at,
        "back_at_s": args.back_at,
        "sent": result["sent"],
        "failed": result["failures"],
        "errors": result["errors"],
        "p50_ms": result["p50_ms"],
        "p90_ms": result["p90_ms"],
        "p99_ms": result["p99_ms"],
        "failed_seconds": [i for i, (_, failed) in enumerate(result["per_second"]) if failed],
        "ticks": ticks(state / "ticks.jsonl"),
    }
    shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
