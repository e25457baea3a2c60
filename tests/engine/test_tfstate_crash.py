"""What a Terraform killed mid-apply leaves behind, read the way Terraform 1.0 reads it.

Terraform's local backend opens (creating) `terraform.tfstate` and takes an fcntl lock on it
before it writes anything, and writes `.terraform.tfstate.lock.info` only as information; a
SIGKILL then leaves a 0-byte state file, a lock-info file and no lock. Terraform reads a
0-byte state as "no state yet" (statefile.ErrNoState), so must we; it refuses anything else
that is not JSON, whitespace included, and so do we.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from reconciler.backends.fake import FakeBackend
from reconciler.backends.sandbox import SandboxCloud, SandboxSettings, managed_replicas
from reconciler.clouds.registry import cloud_replicas
from reconciler.engine.reconcile import Reconciler
from reconciler.errors import TfStateError
from reconciler.paths import ServicePaths
from reconciler.sandbox import processes
from reconciler.spec import load_spec
from reconciler.terraform import state as tfstate
from reconciler.terraform.state import (
    state_lock_held,
    state_outputs,
    state_resources,
    stop_stray_terraform,
    stray_terraform_processes,
)

REPO = Path(__file__).resolve().parents[2]
LOCK_INFO = ".terraform.tfstate.lock.info"


def test_a_0_byte_state_is_an_empty_state(tmp_path: Path) -> None:
    (tmp_path / "terraform.tfstate").write_bytes(b"")
    assert state_resources(tmp_path / "terraform.tfstate") == []
    assert state_outputs(tmp_path) == {}
    assert managed_replicas(tmp_path) == []
    assert cloud_replicas(tmp_path, "aws") == []


@pytest.mark.parametrize("text", [" ", "\n", "  \n\t"])
def test_whitespace_is_refused_as_terraform_refuses_it(tmp_path: Path, text: str) -> None:
    path = tmp_path / "terraform.tfstate"
    path.write_text(text)
    with pytest.raises(TfStateError, match="unreadable Terraform state"):
        state_resources(path)
    with pytest.raises(TfStateError, match=str(path)):
        state_outputs(tmp_path)


def test_the_front_stack_killed_before_its_first_write_has_no_applied_members(
    tmp_path: Path,
) -> None:
    project = tmp_path / "root"
    (project / "services").mkdir(parents=True)
    (project / "services" / "llama.yaml").write_text((REPO / "services" / "llama.yaml").read_text())
    paths = ServicePaths.for_service("llama", root=project)
    front = paths.stack_dir("front")
    front.mkdir(parents=True)
    (front / "terraform.tfstate").write_bytes(b"")
    (front / LOCK_INFO).write_text('{"ID": "stale"}')
    cloud = SandboxCloud(
        paths.sandbox_dir, SandboxSettings(), paths=paths, spec=load_spec(paths.spec_file)
    )
    assert cloud.applied_members() is None
    assert cloud.managed() == []


HOLDER = """
import fcntl, sys, time
f = open(sys.argv[1], "r+")
fcntl.lockf(f, fcntl.LOCK_EX)  # what Terraform does: fcntl(F_SETLK, F_WRLCK) on the state
print("locked", flush=True)
time.sleep(60)
"""


def hold_lock(state: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(state)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_a_lock_is_held_only_while_a_process_holds_it(tmp_path: Path) -> None:
    state = tmp_path / "terraform.tfstate"
    assert not state_lock_held(tmp_path)  # no state file: nothing to lock
    state.write_bytes(b"")
    (tmp_path / LOCK_INFO).write_text('{"ID": "x"}')
    assert not state_lock_held(tmp_path)  # the info file alone is not a lock
    proc = hold_lock(state)
    try:
        assert state_lock_held(tmp_path)
        assert state_lock_held(tmp_path)  # probing twice does not take or break it
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert (tmp_path / LOCK_INFO).exists()  # what a kill -9 leaves
    assert not state_lock_held(tmp_path)


def test_a_bsd_flock_is_not_terraforms_lock(tmp_path: Path) -> None:
    state = tmp_path / "terraform.tfstate"
    state.write_bytes(b"")
    code = HOLDER.replace("fcntl.lockf(f, fcntl.LOCK_EX)", "fcntl.flock(f, fcntl.LOCK_EX)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(state)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"locked"
        assert not state_lock_held(tmp_path)
    finally:
        proc.kill()
        proc.wait()


def orphan_rig(tmp_path: Path) -> tuple[Reconciler, FakeBackend]:
    (tmp_path / "services").mkdir()
    (tmp_path / "services" / "llama.yaml").write_text(
        (REPO / "services" / "llama.yaml").read_text()
    )
    paths = ServicePaths.for_service("llama", root=tmp_path)
    spec = load_spec(paths.spec_file)
    cloud = FakeBackend(spec, paths.sandbox_dir, orphan_ids=["local-1a-spot-0"])
    rec = Reconciler(paths, spec, SandboxSettings(), backend=cloud)
    for stack in rec.stack_names:
        paths.stack_dir(stack).mkdir(parents=True)
        (paths.stack_dir(stack) / "terraform.tfstate").write_bytes(b"")
    return rec, cloud


def collect(rec: Reconciler) -> tuple[list[str], list[str]]:
    """What a pass's observation stopped and adopted (Reconciler._observe)."""
    seen = rec._observe(offline=False, consume=True)
    return seen.orphans, [m.id for m in seen.adopted]


def test_orphans_are_collected_despite_a_stale_lock_info(tmp_path: Path) -> None:
    rec, cloud = orphan_rig(tmp_path)
    (rec.paths.stack_dir("local-1") / LOCK_INFO).write_text('{"ID": "killed"}')
    assert collect(rec) == (["local-1a-spot-0"], [])
    assert cloud.stopped == ["local-1a-spot-0"]


def test_a_running_orphan_the_backend_can_keep_is_adopted_not_stopped(tmp_path: Path) -> None:
    """A lost state file must not stop replicas that serve: what the backend can keep as it
    is comes back as managed, the rest is stopped."""
    rec, cloud = orphan_rig(tmp_path)
    cloud.orphan_ids.append("local-1a-spot-1")
    cloud.keepable = {"local-1a-spot-1"}
    stopped, adopted = collect(rec)
    assert stopped == ["local-1a-spot-0"]
    assert adopted == ["local-1a-spot-1"]
    assert cloud.stopped == ["local-1a-spot-0"]


def test_orphans_are_left_while_a_terraform_keeps_a_stack_locked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tfstate, "LOCK_WAIT_S", 0.3)
    rec, cloud = orphan_rig(tmp_path)
    proc = hold_lock(rec.paths.stack_dir("local-1") / "terraform.tfstate")
    try:
        assert collect(rec) == ([], [])  # it may be about to record that replica
        assert cloud.stopped == []
    finally:
        proc.kill()
        proc.wait()


def test_a_terraform_left_running_is_waited_out_then_orphans_go(tmp_path: Path) -> None:
    rec, cloud = orphan_rig(tmp_path)
    proc = hold_lock(rec.paths.stack_dir("local-1") / "terraform.tfstate")
    assert cloud.orphan_ids == ["local-1a-spot-0"]
    timer = threading.Timer(0.5, proc.kill)
    timer.start()
    start = time.monotonic()
    try:
        assert collect(rec) == (["local-1a-spot-0"], [])
    finally:
        timer.cancel()
        proc.kill()
        proc.wait()
    assert 0.4 <= time.monotonic() - start < 10


def spawn_provider(
    stack: Path, tmp_path: Path, core_alive: bool
) -> tuple[int, subprocess.Popen[bytes]]:
    """A fake `terraform-provider-null` (a copy of sleep) started in `stack` by a "core" (a
    shell in the stack directory) that still runs, or that died and left it to init."""
    exe = tmp_path / "terraform-provider-null_v2.1.2_x4"
    if not exe.exists():
        shutil.copy(shutil.which("sleep") or "/bin/sleep", exe)
    script = f"'{exe}' 60 & echo $!; " + ("sleep 60" if core_alive else "exit 0")
    core = subprocess.Popen(
        ["/bin/sh", "-c", script], cwd=stack, stdout=subprocess.PIPE, start_new_session=True
    )
    assert core.stdout is not None
    pid = int(core.stdout.readline())
    if not core_alive:
        core.wait()
    # `$!` is printed before the child has exec'd: until then its argv is the shell's, and
    # it is no provider yet (a race a loaded machine loses).
    for _ in range(500):
        argv = processes.cmdline(pid)
        if argv and os.path.basename(argv[0]).startswith("terraform-provider-"):
            break
        time.sleep(0.01)
    return pid, core


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="needs /proc")
def test_a_provider_whose_terraform_was_killed_is_stopped(tmp_path: Path) -> None:
    stack = tmp_path / "front"
    stack.mkdir()
    other = tmp_path / "elsewhere"
    other.mkdir()
    stray, _ = spawn_provider(stack, tmp_path, core_alive=False)
    kept, core = spawn_provider(stack, tmp_path, core_alive=True)
    unrelated, _ = spawn_provider(other, tmp_path, core_alive=False)
    try:
        assert stray in stray_terraform_processes([stack])
        assert kept not in stray_terraform_processes([stack])  # its Terraform still runs
        assert unrelated not in stray_terraform_processes([stack])  # another directory
        assert stop_stray_terraform([stack]) == [stray]
        assert not alive(stray)
        assert alive(kept) and alive(unrelated)
    finally:
        for pid in (stray, kept, unrelated):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        core.kill()
        core.wait()


def test_an_adopted_replica_is_observed_and_fail_next_reaches_observe(tmp_path: Path) -> None:
    """The fake observes adopted replicas as the sandbox does, and `fail_next("observe")`
    fails the next look of any kind (found by a user-eye check of issue 10)."""
    rec, cloud = orphan_rig(tmp_path)
    cloud.keepable = {"local-1a-spot-0"}
    seen = rec._observe(offline=False, consume=True)
    assert [r.id for r in seen.observed.replicas] == ["local-1a-spot-0"]
    cloud.fail_next("observe", RuntimeError("injected"))
    with pytest.raises(RuntimeError, match="injected"):
        rec._observe(offline=False, consume=False)
