"""`destroy` while `hedgeform run` loops on the same service: the loop is stopped first, so
nothing re-creates the service a tick later."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.backends.sandbox import managed_replicas
from reconciler.cli import main
from reconciler.paths import ServicePaths
from reconciler.sandbox import market_daemon, replicas
from reconciler.sandbox.haproxy import HAProxyLB
from reconciler.sandbox.market import SpotMarket
from reconciler.sandbox.processes import port_in_use
from tests.e2e.conftest import REPO, free_port
from tests.e2e.procs import settle, under

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
HEDGEFORM = str(Path(sys.executable).parent / "hedgeform")


@pytest.fixture
def paths(sandbox_root: Path) -> Iterator[ServicePaths]:
    shutil.copy(REPO / "services" / "llama.yaml", sandbox_root / "services" / "loopy.yaml")
    paths = ServicePaths.for_service("loopy", root=sandbox_root)
    SpotMarket.init(paths.sandbox_dir, now=time.time(), warning_seconds=1)
    market = SpotMarket.load(paths.sandbox_dir)
    for zone in ("local-1a", "local-1b", "local-2a"):
        market.set_capacity(zone, 2)
    yield paths
    replicas.stop_all(paths.sandbox_dir)
    HAProxyLB(paths.sandbox_dir).down()
    market_daemon.stop(paths.sandbox_dir)
    for proc in under(paths.state_dir):
        os.kill(proc.pid, 9)


def ticks(paths: ServicePaths) -> list[dict[str, object]]:
    path = paths.state_dir / "ticks.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines if line.strip()]


def test_destroy_stops_the_loop_and_nothing_comes_back(paths: ServicePaths, tmp_path: Path) -> None:
    port = free_port()
    env = {
        "HEDGEFORM_LB_PORT": str(port),
        "HEDGEFORM_SANDBOX_COLD_START": "1",
        "HEDGEFORM_SANDBOX_WARNING": "1",
        "HEDGEFORM_SANDBOX_LATENCY_MS": "1",
    }
    with open(tmp_path / "loop.log", "w") as log:
        loop = subprocess.Popen(
            [HEDGEFORM, "run", "loopy", "--interval", "1", "--root", str(paths.root)],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while not any(t.get("message") == "tick" for t in ticks(paths)):
            assert loop.poll() is None, (tmp_path / "loop.log").read_text()
            assert time.monotonic() < deadline, "no tick within 60 s"
            time.sleep(0.1)

        result = CliRunner().invoke(main, ["destroy", "loopy", "--root", str(paths.root)], env=env)
        assert result.exit_code == 0, result.output
        assert f"stopped the reconcile loop of loopy (pid {loop.pid})" in result.output
        assert "loopy: nothing left running" in result.output
        assert loop.wait(timeout=5) == 0, "the loop exited cleanly on SIGTERM"
    finally:
        loop.kill()
        loop.wait()

    time.sleep(3)  # a loop still running would have ticked and re-created it by now
    assert not any(s.alive for s in replicas.list_replicas(paths.sandbox_dir))
    assert not HAProxyLB(paths.sandbox_dir).is_running()
    assert not port_in_use(port)
    assert all(managed_replicas(paths.stack_dir(s)) == [] for s in ("local-1", "local-2"))
    assert settle(paths.state_dir, timeout_s=0) == []
