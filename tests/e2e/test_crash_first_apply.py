"""kill -9 at every point of the FIRST apply of a never-applied service, and of `destroy`: the
next `apply` (or `destroy`) converges.

A Terraform killed before its first state write leaves a 0-byte `terraform.tfstate` and a
`.terraform.tfstate.lock.info` that no process holds, and its provider plugins running;
none of that may stop the next command. Each scenario is a fresh service (so its first apply
really is the first: no state, no `.terraform`), crashed at one point of `apply`, re-applied
and checked, then crashed at one point of `destroy`, destroyed again and checked.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from reconciler.backends.sandbox import managed_replicas
from reconciler.cli import main
from reconciler.engine.state_store import Record, load_record
from reconciler.paths import ServicePaths
from reconciler.policy import Memory
from reconciler.sandbox import market_daemon, replicas
from reconciler.sandbox.haproxy import HAProxyLB
from reconciler.sandbox.market import SpotMarket
from reconciler.sandbox.processes import port_in_use
from tests.e2e.conftest import REPO, free_port
from tests.e2e.procs import kill_during_terraform, settle, under

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
HEDGEFORM = str(Path(sys.executable).parent / "hedgeform")
KILL = "kill"  # an external `kill -9` of hedgeform 0.4 s into its first `terraform` command

# (where the first apply dies, where the destroy dies): every point of each, paired so that
# each scenario pays for one service's setup.
SCENARIOS = [
    ("before_observe", "before_destroy"),
    ("before_plan", "before_destroy:local-1"),  # front destroyed, the regions not yet
    ("before_apply", "during_destroy"),
    ("during_apply", "before_teardown"),
    ("before_record", "during_destroy"),
    (KILL, KILL),
]


def env_for(port: int) -> dict[str, str]:
    return {
        "HEDGEFORM_LB_PORT": str(port),
        "HEDGEFORM_SANDBOX_COLD_START": "1",
        "HEDGEFORM_SANDBOX_WARNING": "1",
        "HEDGEFORM_SANDBOX_LATENCY_MS": "1",
    }


@pytest.fixture
def service(sandbox_root: Path, request: pytest.FixtureRequest) -> Iterator[ServicePaths]:
    """A never-applied copy of the sandbox service, its zones' capacity pinned."""
    # short: HAProxy's admin socket path under state/<service>/sandbox must stay short
    name = "fa-" + request.node.callspec.params["apply_point"].replace("_", "-")
    shutil.copy(REPO / "services" / "llama.yaml", sandbox_root / "services" / f"{name}.yaml")
    paths = ServicePaths.for_service(name, root=sandbox_root)
    SpotMarket.init(paths.sandbox_dir, now=time.time(), warning_seconds=1)
    market = SpotMarket.load(paths.sandbox_dir)
    for zone in ("local-1a", "local-1b", "local-2a"):
        market.set_capacity(zone, 2)
    yield paths
    if paths.sandbox_dir.exists():  # whatever a failed test left behind
        replicas.stop_all(paths.sandbox_dir)
        HAProxyLB(paths.sandbox_dir).down()
        market_daemon.stop(paths.sandbox_dir)
    for proc in under(paths.state_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, 9)


def crash(paths: ServicePaths, env: dict[str, str], command: str, point: str) -> None:
    argv = [HEDGEFORM, command, paths.service, "--root", str(paths.root)]
    if command == "apply":
        argv.append("--no-wait")
    if point == KILL:
        kill_during_terraform(argv, {**os.environ, **env}, command)
        return
    done = subprocess.run(
        argv,
        env={**os.environ, **env, "HEDGEFORM_CRASH_AT": point},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == -9, done.stdout + done.stderr


def hedgeform(paths: ServicePaths, env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(
        main, [*args, paths.service, "--root", str(paths.root)], env=env, catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return result.output


def managed(paths: ServicePaths) -> set[str]:
    return {
        m.id
        for stack in ("local-1", "local-2")
        for m in managed_replicas(paths.stack_dir(stack))
        if not m.tainted
    }


def alive(paths: ServicePaths) -> set[str]:
    return {s.record.replica_id for s in replicas.list_replicas(paths.sandbox_dir) if s.alive}


@pytest.mark.parametrize(("apply_point", "destroy_point"), SCENARIOS)
def test_kill_9_in_the_first_apply_and_in_destroy_then_the_next_one_converges(
    service: ServicePaths, apply_point: str, destroy_point: str
) -> None:
    paths = service
    port = free_port()
    env = env_for(port)

    crash(paths, env, "apply", apply_point)
    hedgeform(paths, env, "apply")  # converges: exit 0

    assert requests.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
    assert requests.get(f"http://127.0.0.1:{port}/v1/models", timeout=5).status_code == 200
    assert alive(paths) == managed(paths), "no orphaned and no lost replica"
    assert len(managed(paths)) >= 2
    assert set(HAProxyLB(paths.sandbox_dir).members()) == alive(paths)
    assert settle(paths.root, keep="terraform") == [], "no Terraform or provider left"
    load_record(paths.memory_file)  # readable
    assert paths.memory_file.exists()
    # `status` names the port HAProxy runs on, whatever the current environment says
    other = {**env, "HEDGEFORM_LB_PORT": str(free_port())}
    assert f"endpoint: http://127.0.0.1:{port}\n" in hedgeform(paths, other, "status")

    crash(paths, env, "destroy", destroy_point)
    out = hedgeform(paths, env, "destroy")
    assert f"{paths.service}: nothing left running" in out

    assert settle(paths.state_dir) == [], "no replica, HAProxy, market daemon or Terraform"
    assert not port_in_use(port)
    assert managed(paths) == set()
    kept = load_record(paths.memory_file)  # the launch sequence alone: ids never repeat
    assert kept == Record(memory=Memory(launch_seq=kept.memory.launch_seq))
    assert kept.memory.launch_seq >= 2
    shown = hedgeform(paths, env, "status")
    assert f"{paths.service}  destroyed " in shown and "nothing runs, nothing bills" in shown
