"""Replica health on the sandbox: hung replicas are replaced, `apply` succeeds only when the
endpoint serves (issue "Replica health", reproductions 2 and 3)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from reconciler.cli import main
from reconciler.sandbox import replicas
from tests.e2e.conftest import SANDBOX_ZONES, free_port, project_root

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


HUNG = (
    """\
service:
  readiness_probe:
    path: /health
    initial_delay_seconds: 10
    timeout_seconds: 1
    consecutive_failure_threshold_timeout: 5
  replicas: 2
"""
    + SANDBOX_ZONES
)
NEVER_READY = (
    """\
service:
  readiness_probe:
    path: /v1/no-such-route
    initial_delay_seconds: 300
  replicas: 1
"""
    + SANDBOX_ZONES
)


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    with project_root(tmp_path, {"hung": HUNG, "never": NEVER_READY}) as path:
        yield path


def cli(root: Path, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [*args, "--root", str(root)], env=env)
    return result.exit_code, result.stdout, result.stderr


def env_for() -> dict[str, str]:
    return {"HEDGEFORM_LB_PORT": str(free_port()), "HEDGEFORM_SANDBOX_COLD_START": "1"}


def test_two_hung_replicas_are_replaced_and_the_endpoint_serves_again(root: Path) -> None:
    """The issue's reproduction: `replicas: 2`, `initial_delay_seconds: 10`, apply,
    `kill -STOP` both replica processes, wait past the threshold, apply: both are replaced."""
    env = env_for()
    code, out, err = cli(root, env, "apply", "hung")
    assert code == 0, out + err
    assert "serving after" in out
    sandbox = root / "state" / "hung" / "sandbox"
    before = {s.record.replica_id: s.record.pid for s in replicas.list_replicas(sandbox)}
    assert len(before) == 2
    for pid in before.values():
        os.kill(pid, signal.SIGSTOP)
    url = f"http://127.0.0.1:{env['HEDGEFORM_LB_PORT']}/health"
    time.sleep(6)  # past the 5 s threshold (and HAProxy has marked both down)
    assert requests.get(url, timeout=5).status_code == 503

    code, out, err = cli(root, env, "apply", "hung")
    assert code == 0, out + err
    after = {s.record.replica_id for s in replicas.list_replicas(sandbox) if s.alive}
    assert len(after) == 2 and not after & set(before), (before, after)
    assert requests.get(url, timeout=5).status_code == 200
    for pid in before.values():  # the hung processes were terminated, not left stopped
        assert not Path(f"/proc/{pid}").exists() or "zombie" in _state(pid)
    record = json.loads((root / "state" / "hung" / "reconciler.json").read_text())
    assert record["memory"]["failed"] == {}  # the verdicts went with the replicas


def test_apply_exits_3_in_one_line_when_the_endpoint_never_serves(root: Path) -> None:
    env = env_for()
    code, out, err = cli(root, env, "apply", "never", "--timeout", "6")
    assert code == 3, out + err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1
    assert "never is still converging after 6 s: not serving" in lines[0]
    assert "checked by endpoint" in lines[0]
    assert "Traceback" not in out + err
    cli(root, env, "destroy", "never")


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return "zombie"
