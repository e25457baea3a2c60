"""Reconcile speed on the local sandbox: a no-op reconcile, and one that launches three
replicas until they serve behind the load balancer.

Targets (issue "Terraform engine and the local sandbox cloud"): no-op <= 1.5 s; launching
three replicas <= 5 s plus the cold start. Runs in a throwaway project root (the repository's
modules and pinned tools linked in), so it never touches your state/. Needs `make setup` and
HAProxy. Run: `make bench` or `.venv/bin/python bench/bench_reconcile.py`.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import tempfile
import time
from pathlib import Path

from reconciler.backends.sandbox import SandboxSettings
from reconciler.engine.reconcile import NOOP_MARKER, Reconciler
from reconciler.paths import ServicePaths
from reconciler.sandbox import market_daemon, replicas
from reconciler.sandbox.haproxy import HAProxyLB
from reconciler.spec import load_spec

REPO = Path(__file__).resolve().parents[1]
SERVICE = """\
service:
  readiness_probe: /health
  replicas: 3
resources:
  any_of:
    - {cloud: local, region: local-1, zone: local-1a}
    - {cloud: local, region: local-1, zone: local-1b}
    - {cloud: local, region: local-2, zone: local-2a}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _fmt(durations: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.2f}" for k, v in durations.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cold-start", type=float, default=1.0)
    parser.add_argument("--noop-runs", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="hedgeform-bench-"))
    (root / "services").mkdir()
    (root / "services" / "bench.yaml").write_text(SERVICE)
    (root / "terraform").symlink_to(REPO / "terraform")
    (root / ".tools").symlink_to(REPO / ".tools")
    paths = ServicePaths.for_service("bench", root=root)
    settings = SandboxSettings(cold_start_s=args.cold_start, lb_port=free_port(), latency_ms=1)
    rec = Reconciler(paths, load_spec(paths.spec_file), settings)
    try:
        started = time.perf_counter()
        converged = rec.converge(60.0, lambda r: print(f"  {r.summary_line} {_fmt(r.durations)}"))
        served = time.perf_counter() - started
        assert converged.serving is not None and converged.serving.serving, converged.serving
        passes = converged.results
        launch_pass = passes[0].durations["total_s"]
        assert len(passes[0].decision.launches) == 3, passes[0].decision.launches
        assert len(HAProxyLB(paths.sandbox_dir).members()) == 3
        noops = []
        for _ in range(args.noop_runs):
            t = time.perf_counter()
            result = rec.run_pass(apply=True)
            noops.append(time.perf_counter() - t)
            assert not result.changed
        uncached = []
        for _ in range(3):  # the same no-op, but every stack really planned by Terraform
            for stack in rec.stack_names:
                (paths.stack_dir(stack) / NOOP_MARKER).unlink(missing_ok=True)
            t = time.perf_counter()
            result = rec.run_pass(apply=True)
            uncached.append(time.perf_counter() - t)
            assert not result.changed
        print(f"launch pass (3 replicas): {launch_pass:.2f} s")
        print(
            f"launch to serving behind the LB: {served:.2f} s "
            f"(cold start {args.cold_start:.1f} s; {served - args.cold_start:.2f} s beyond it)"
        )
        print(
            f"no-op reconcile: median {statistics.median(noops):.2f} s, "
            f"min {min(noops):.2f} s, max {max(noops):.2f} s over {len(noops)} runs"
        )
        print(
            f"no-op reconcile with every stack planned (no plan cache): median "
            f"{statistics.median(uncached):.2f} s over {len(uncached)} runs"
        )
    finally:
        for stack in rec.stack_names:
            var_file = paths.stack_dir(stack) / "terraform.tfvars.json"
            if var_file.exists():
                rec.runner(stack).destroy(var_file)
        replicas.stop_all(paths.sandbox_dir)
        HAProxyLB(paths.sandbox_dir).down()
        market_daemon.stop(paths.sandbox_dir)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
