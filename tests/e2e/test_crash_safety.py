"""kill -9 at any point of a tick, then the next tick converges: no lost or orphaned replica,
a readable record, the target group holding exactly the ready replicas."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.backends.sandbox import managed_replicas
from reconciler.cli import main
from reconciler.engine.state_store import load_record
from reconciler.paths import ServicePaths
from reconciler.sandbox import replicas
from reconciler.sandbox.haproxy import HAProxyLB
from reconciler.sandbox.market import SpotMarket
from tests.e2e.conftest import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
HEDGEFORM = str(Path(sys.executable).parent / "hedgeform")


@pytest.fixture(scope="module")
def env(sandbox_root: Path) -> dict[str, str]:
    settings = {
        "HEDGEFORM_LB_PORT": str(free_port()),
        "HEDGEFORM_SANDBOX_COLD_START": "1",
        "HEDGEFORM_SANDBOX_WARNING": "1",
        "HEDGEFORM_SANDBOX_LATENCY_MS": "1",
    }
    sandbox = sandbox_root / "state" / "llama" / "sandbox"
    SpotMarket.init(sandbox, now=time.time(), warning_seconds=1)
    market = SpotMarket.load(sandbox)
    for zone in ("local-1a", "local-1b", "local-2a"):
        market.set_capacity(zone, 2)
    apply(sandbox_root, settings)
    yield settings
    CliRunner().invoke(main, ["destroy", "llama", "--root", str(sandbox_root)], env=settings)


def apply(root: Path, env: dict[str, str]) -> str:
    result = CliRunner().invoke(main, ["apply", "llama", "--root", str(root)], env=env)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize(
    "point", ["before_observe", "before_plan", "before_apply", "during_apply", "before_record"]
)
def test_kill_9_then_the_next_tick_converges(
    sandbox_root: Path, env: dict[str, str], point: str
) -> None:
    paths = ServicePaths.for_service("llama", root=sandbox_root)
    sandbox = paths.sandbox_dir
    # a VM dies, so the next tick must replace it: that tick is the one we kill
    victim = sorted(s.record.replica_id for s in replicas.list_replicas(sandbox) if s.alive)[0]
    replicas.stop(sandbox, victim)
    crashed = subprocess.run(
        [HEDGEFORM, "apply", "llama", "--no-wait", "--root", str(sandbox_root)],
        env={**os.environ, **env, "HEDGEFORM_CRASH_AT": point},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert crashed.returncode == -9, crashed.stdout + crashed.stderr

    apply(sandbox_root, env)  # the next tick (it waits for a Terraform left running)

    managed = {
        m.id
        for stack in ("local-1", "local-2")
        for m in managed_replicas(paths.stack_dir(stack))
        if not m.tainted
    }
    alive = {s.record.replica_id for s in replicas.list_replicas(sandbox) if s.alive}
    assert alive == managed, "no orphaned and no lost replica"
    assert victim not in managed
    record = load_record(paths.memory_file)  # readable and consistent
    assert record.memory.launch_seq > max(int(r.rsplit("-", 1)[1]) for r in managed)
    members = set(HAProxyLB(sandbox).members())
    assert members == alive  # all ready after apply: the target group is exactly them
    assert len(alive) >= 2
