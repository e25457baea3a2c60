"""The guards around the commands: the busy-lock message names the flag that exists (and
`plan` has it), the loop records its pid, and `destroy` stops a running loop first (or
refuses in one line when what holds the loop lock is not one)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import main
from reconciler.engine.loop import loop_lock, loop_stopped
from reconciler.engine.reconcile import service_lock
from reconciler.paths import ServicePaths
from reconciler.sandbox.processes import cmdline

REPO = Path(__file__).resolve().parents[2]


def invoke(root: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, [*args, "--root", str(root)])
    return result.exit_code, result.output


@pytest.mark.parametrize("command", ["apply", "plan", "destroy"])
def test_the_busy_message_names_the_wait_lock_flag(root: Path, command: str) -> None:
    with service_lock(ServicePaths.for_service("llama", root=root)):
        code, out = invoke(root, command, "llama")
    assert code == 1
    assert out.startswith("Error: another reconcile of llama is running")
    assert "wait for it with --wait-lock" in out
    assert out.count("\n") == 1


def test_plan_wait_lock_waits_for_the_running_reconcile(root: Path) -> None:
    paths = ServicePaths.for_service("llama", root=root)
    taken, release = threading.Event(), threading.Event()

    def holder() -> None:
        with service_lock(paths):
            taken.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    taken.wait(5)
    threading.Timer(0.5, release.set).start()
    start = time.monotonic()
    code, out = invoke(root, "plan", "llama", "--render-only", "--wait-lock")
    thread.join()
    assert code == 0, out
    assert time.monotonic() - start >= 0.4
    assert "wrote " in out


def test_the_loop_records_its_pid_in_its_lock(tmp_path: Path) -> None:
    lock = tmp_path / ".loop.lock"
    lock.write_text("999999\n")  # a stale pid from an earlier loop
    with loop_lock(lock, "llama", wait=False):
        assert lock.read_text() == f"{os.getpid()}\n"


FAKE_LOOP = """
import signal, sys, threading
from pathlib import Path
from reconciler.engine.loop import loop_lock

stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
with loop_lock(Path(sys.argv[3]), sys.argv[2], wait=False):
    print("running", flush=True)
    stop.wait(60)
"""


def start_fake_loop(root: Path, tmp_path: Path, name: str) -> subprocess.Popen[str]:
    """A process that holds the loop lock like `hedgeform run llama`, under `name`."""
    script = tmp_path / name
    script.write_text(FAKE_LOOP)
    lock = root / "state" / "llama" / ".loop.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, str(script), "run", "llama", str(lock)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "running"
    return proc


def test_destroy_stops_the_loop_first_and_holds_its_lock(root: Path, tmp_path: Path) -> None:
    loop = start_fake_loop(root, tmp_path, "hedgeform")
    try:
        code, out = invoke(root, "destroy", "llama")
        assert loop.wait(5) == 0, "the loop exited on SIGTERM"
    finally:
        loop.kill()
    assert code == 0, out
    assert f"stopped the reconcile loop of llama (pid {loop.pid})" in out
    assert "llama: nothing left running" in out


def test_a_loop_started_during_destroy_exits_already_running(root: Path) -> None:
    paths = ServicePaths.for_service("llama", root=root)
    with loop_stopped(paths.loop_lock_file, "llama"):
        code, out = invoke(root, "run", "llama", "--max-ticks", "1")
    assert code == 1
    assert "a reconcile loop (or a destroy) of llama is already running" in out
    assert not (paths.state_dir / "ticks.jsonl").exists()  # no tick ran


def test_destroy_refuses_when_the_lock_holder_is_not_a_loop(root: Path, tmp_path: Path) -> None:
    other = start_fake_loop(root, tmp_path, "not-hedgeform.py")
    try:
        code, out = invoke(root, "destroy", "llama")
        assert other.poll() is None, "never signalled"
        assert cmdline(other.pid) is not None
    finally:
        other.kill()
        other.wait()
    assert code == 1
    assert out.startswith("Error: cannot stop the reconcile loop of llama:")
    assert f"held by pid {other.pid}" in out
    assert out.count("\n") == 1
    assert "nothing left running" not in out
