"""Cancel escalates SIGINT -> SIGTERM -> SIGKILL over the whole process group."""

from __future__ import annotations

import os
import signal
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
