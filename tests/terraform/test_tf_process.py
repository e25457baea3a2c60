"""Cancel escalates SIGINT -> SIGTERM -> SIGKILL over the whole process group."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from reconciler.terraform.process import GroupProcess, group_members

# A parent and a child that both ignore SIGINT and SIGTERM (ignored signals are inherited).
STUBBORN = ["sh", "-c", "trap '' INT TERM; sleep 30 & wait; sleep 30"]


def test_cancel_escalates_to_sigkill_for_a_stubborn_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[str] = []
    real_killpg = os.killpg

    def spy(pgid: int, sig: int) -> None:
        if sig:
            sent.append(signal.Signals(sig).name)
        real_killpg(pgid, sig)

    monkeypatch.setattr(os, "killpg", spy)
    runner = GroupProcess(sigint_grace_s=0.3, sigterm_grace_s=0.3)
    results = []
    thread = threading.Thread(
        target=lambda: results.append(runner.run(STUBBORN, tmp_path, dict(os.environ)))
    )
    thread.start()
    deadline = time.monotonic() + 5
    while runner._proc is None or len(group_members(runner._proc.pid)) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    pgid = runner._proc.pid

    runner.cancel()
    thread.join(5)

    assert sent == ["SIGINT", "SIGTERM", "SIGKILL"]
    assert group_members(pgid) == []
    assert results[0].cancelled and results[0].returncode == -signal.SIGKILL


def test_timeout_stops_the_group(tmp_path: Path) -> None:
    runner = GroupProcess(sigint_grace_s=1, sigterm_grace_s=1)
    started = time.monotonic()
    result = runner.run(["sh", "-c", "sleep 30 & wait"], tmp_path, dict(os.environ), 0.3)
    assert result.timed_out and not result.cancelled
    assert time.monotonic() - started < 3


def test_a_normal_run_returns_output(tmp_path: Path) -> None:
    result = GroupProcess().run(["sh", "-c", "echo out; echo err >&2; exit 3"], tmp_path, {})
    assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err\n")


def test_a_command_outlives_a_killed_caller_and_finishes(tmp_path: Path) -> None:
    """kill -9 of the `hedgeform` running Terraform must not kill Terraform mid-apply: with
    its output on a pipe, its next write raised SIGPIPE and it died after the cloud created
    resources and before its state recorded them (an ALB that "already exists" at every later
    apply, found on the AWS emulator). Here a caller process is killed while its command
    still has output to write; the command must run to its end."""
    done = tmp_path / "finished"
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from reconciler.terraform.process import GroupProcess\n"
        "env = {'PATH': '/usr/bin:/bin'}\n"
        "GroupProcess().run(['sh', '-c', sys.argv[1]], Path(sys.argv[2]), env)\n"
    )
    command = (
        f"sleep 1; i=0; while [ $i -lt 2000 ]; do echo line $i; i=$((i+1)); done; echo ok > {done}"
    )
    caller = subprocess.Popen(
        [sys.executable, "-c", script, command, str(tmp_path)], cwd=Path(__file__).parents[2]
    )
    time.sleep(0.5)  # the command is sleeping; its caller reads nothing from now on
    caller.kill()
    caller.wait()
    deadline = time.monotonic() + 10
    while not done.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert done.read_text() == "ok\n"
