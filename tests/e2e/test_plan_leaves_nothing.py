"""A plan changes nothing and leaves nothing running: on a new sandbox service it used to
start the spot market's daemon (a `python -m reconciler.sandbox.market_daemon` per service)
and leave it behind."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import main
from reconciler.sandbox import market_daemon
from tests.e2e.conftest import THREE_REPLICAS, fast_sandbox_env, project_root

pytestmark = [pytest.mark.e2e]


def processes_under(root: Path) -> list[str]:
    """The command lines of the processes that name a path under `root` (the sandbox's
    replicas, HAProxy and market daemon all do)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if str(root) in argv:
                found.append(f"{proc.name}: {argv}")
    return found


def test_plan_on_a_new_sandbox_service_leaves_no_process(short_tmp: Path) -> None:
    with project_root(short_tmp, {"fresh": THREE_REPLICAS}) as root:
        assert processes_under(root) == []
        result = CliRunner().invoke(
            main, ["plan", "fresh", "--root", str(root)], env=fast_sandbox_env()
        )
        assert result.exit_code == 0, result.output
        assert "Plan: " in result.output  # it did plan the replicas
        assert market_daemon.running_pid(root / "state" / "fresh" / "sandbox") is None
        assert processes_under(root) == []
