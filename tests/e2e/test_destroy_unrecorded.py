"""Processes that outlive destroy (issue 9, item 5): `destroy` finds what belongs to the
service by more than its record files, stops it, and says "nothing left running" only after
a scan that found nothing.

- A replica whose record file was deleted kept listening while `destroy` printed "nothing
  left running".
- After a `kill -9` of `hedgeform apply` during `terraform apply`, provider plugins were said
  to survive every later `apply` and `destroy`.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import main
from reconciler.engine import teardown
from reconciler.paths import ServicePaths
from reconciler.sandbox import processes, replicas
from reconciler.stacks import FRONT
from reconciler.terraform.state import (
    stray_terraform_processes,
    terraform_processes,
    wait_for_state_locks,
)
from tests.e2e.conftest import SANDBOX_ZONES, free_port, project_root
from tests.e2e.procs import kill_during_terraform, settle

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
HEDGEFORM = str(Path(sys.executable).parent / "hedgeform")
STACKS = (FRONT, "local-1", "local-2")
SPEC = (
    """\
service:
  readiness_probe: /health
  replicas: 2
"""
    + SANDBOX_ZONES
)


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    with project_root(tmp_path, {"orph": SPEC}) as path:
        yield path
        # What a failed test left that no record names: marked daemons, stray providers.
        paths = ServicePaths.for_service("orph", root=path)
        teardown.stop_leftovers(paths.sandbox_dir, [paths.stack_dir(s) for s in STACKS])


def env_for(port: int) -> dict[str, str]:
    return {
        "HEDGEFORM_LB_PORT": str(port),
        "HEDGEFORM_SANDBOX_COLD_START": "1",
        "HEDGEFORM_SANDBOX_WARNING": "1",
        "HEDGEFORM_SANDBOX_LATENCY_MS": "1",
    }


def hedgeform(root: Path, env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(main, [*args, "orph", "--root", str(root)], env=env)
    assert result.exit_code == 0, result.output
    return result.output


def named_pids(output: str) -> list[int]:
    """The pids on destroy's "stopped unrecorded processes:" line."""
    lines = [ln for ln in output.splitlines() if ln.startswith("stopped unrecorded processes:")]
    return [int(pid) for ln in lines for pid in re.findall(r"(\d+) \(", ln)]


def test_destroy_stops_a_replica_whose_record_was_deleted(root: Path) -> None:
    env = env_for(free_port())
    hedgeform(root, env, "apply")
    sandbox = ServicePaths.for_service("orph", root=root).sandbox_dir
    recorded = replicas.list_replicas(sandbox)
    lost = recorded[0].record
    assert processes.is_alive(lost.pid, replicas.markers(lost.replica_id))
    # Every daemon of this sandbox carries its marker: the replicas, HAProxy, the market daemon.
    marked = {teardown.label(p) for p in processes.owned_by(sandbox)}
    daemons = {f"replica {s.record.replica_id}" for s in recorded} | {"haproxy", "market daemon"}
    assert daemons <= marked
    replicas.record_path(sandbox, lost.replica_id).unlink()

    out = hedgeform(root, env, "destroy")

    assert not processes.is_alive(lost.pid, replicas.markers(lost.replica_id))
    assert f"{lost.pid} (replica {lost.replica_id})" in out
    assert out.rstrip().splitlines()[-1] == "orph: nothing left running"
    assert processes.owned_by(sandbox) == []
    assert settle(root / "state") == []


def test_kill_9_during_terraform_apply_then_destroy_leaves_no_provider(root: Path) -> None:
    """Regression test: the providers a killed `terraform apply` leaves are stopped by the
    next `destroy`, which names them and anything else no record named."""
    env = env_for(free_port())
    paths = ServicePaths.for_service("orph", root=root)
    argv = [HEDGEFORM, "apply", "orph", "--root", str(root), "--no-wait"]
    kill_during_terraform(argv, {**os.environ, **env}, "apply")
    stack_dirs = [paths.stack_dir(s) for s in STACKS]
    # Terraform writes its output to files, so it outlives the killed hedgeform; killing
    # Terraform itself (kill -9, the OOM killer) is what orphans its provider plugins. Kill
    # it once a provider runs (Terraform 1.0 starts them a moment into the apply).
    deadline = time.monotonic() + 30
    while not any(
        os.path.basename((processes.cmdline(pid) or [""])[0]).startswith("terraform-provider-")
        for pid in terraform_processes(stack_dirs)
    ):
        assert time.monotonic() < deadline, "no provider started within 30 s"
        time.sleep(0.02)
    for pid in terraform_processes(stack_dirs):
        if processes.cmdline(pid) and os.path.basename(processes.cmdline(pid)[0]) == "terraform":
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert wait_for_state_locks(stack_dirs, timeout_s=60) == []
    # Whether an orphaned provider outlives its Terraform depends on where it was (measured:
    # on some machines it always does, on others it often exits within 0.1 s). So the test
    # also leaves one for certain: a process named as a provider, in a stack directory,
    # whose parent is not there (init's, after its launching shell exits).
    subprocess.run(
        ["bash", "-c", "(exec -a terraform-provider-orphan_v0 sleep 600 &)"],
        cwd=stack_dirs[0],
        check=True,
    )
    deadline = time.monotonic() + 10
    while not (strays := stray_terraform_processes(stack_dirs)):
        assert time.monotonic() < deadline, "a provider whose Terraform is gone is a stray"
        time.sleep(0.02)

    out = hedgeform(root, env, "destroy")

    assert out.rstrip().splitlines()[-1] == "orph: nothing left running"
    named = named_pids(out)
    assert set(strays) <= set(named), out
    assert all(processes.cmdline(pid) is None for pid in named), "each one named is gone"
    assert processes.owned_by(paths.sandbox_dir) == []
    left = settle(root)
    assert [p for p in left if p.name.startswith("terraform-provider-")] == []
    assert settle(paths.state_dir) == [], "no replica, HAProxy, market daemon or Terraform"
