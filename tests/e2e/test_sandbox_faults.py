"""Faults on the sandbox path that must come back as one clear line: the load balancer's port
in use, HAProxy not installed."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import main
from reconciler.sandbox import market_daemon, replicas
from reconciler.sandbox.haproxy import HAProxyLB
from tests.e2e.conftest import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def run_apply(root: Path, env: dict[str, str]) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["apply", "llama", "--no-wait", "--root", str(root)], env=env)
    return result.exit_code, result.output


def cleanup(root: Path) -> None:
    CliRunner().invoke(main, ["destroy", "llama", "--root", str(root)])
    sandbox = root / "state" / "llama" / "sandbox"
    replicas.stop_all(sandbox)
    HAProxyLB(sandbox).down()
    market_daemon.stop(sandbox)


def test_load_balancer_port_in_use_names_the_stack_and_the_port(sandbox_root: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        try:
            code, out = run_apply(sandbox_root, {"HEDGEFORM_LB_PORT": str(port)})
        finally:
            cleanup(sandbox_root)
    assert code == 1
    assert "stack front: apply failed" in out
    assert f"port {port} on 127.0.0.1 is already in use" in out
    assert "Traceback" not in out


def test_haproxy_absent_says_how_to_install_it(sandbox_root: Path, tmp_path: Path) -> None:
    port = str(free_port())
    bin_dir = tmp_path / "bin"  # a PATH with everything the provisioners need but haproxy
    bin_dir.mkdir()
    for tool in ("sh", "env"):
        found = shutil.which(tool)
        assert found
        (bin_dir / tool).symlink_to(found)
    try:
        code, out = run_apply(sandbox_root, {"PATH": str(bin_dir), "HEDGEFORM_LB_PORT": port})
    finally:
        cleanup(sandbox_root)
    assert code == 1
    assert "HAProxy is not installed" in out
    assert "apt-get install" in out
    assert os.environ["PATH"] != str(bin_dir)  # the test's own PATH was restored
