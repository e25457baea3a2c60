"""A secret named MODEL_NAME reaches no file, no argv and no response (issue "Hardening",
item 2): the sandbox read envs["MODEL_NAME"] without checking whether it was a secret."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from reconciler.cli import main
from reconciler.sandbox import market_daemon, replicas
from reconciler.sandbox.haproxy import HAProxyLB
from tests.e2e.conftest import REPO, SANDBOX_ZONES, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SENTINEL = "sentinel-model-7d3a"
SPEC = (
    f"""\
service:
  readiness_probe: /health
  replicas: 1
secrets:
  MODEL_NAME: {SENTINEL}
"""
    + SANDBOX_ZONES
)


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    if shutil.which("haproxy") is None:
        pytest.skip("HAProxy is not installed (make setup installs it when run as root)")
    if not (REPO / ".tools" / "bin" / "terraform").exists():
        pytest.skip("the pinned Terraform is not installed: run make setup")
    (tmp_path / "services").mkdir()
    (tmp_path / "services" / "sec.yaml").write_text(SPEC)
    (tmp_path / "terraform").symlink_to(REPO / "terraform")
    (tmp_path / ".tools").symlink_to(REPO / ".tools")
    yield tmp_path
    sandbox = tmp_path / "state" / "sec" / "sandbox"
    if sandbox.exists():
        replicas.stop_all(sandbox)
        HAProxyLB(sandbox).down()
        market_daemon.stop(sandbox)


def test_a_secret_model_name_reaches_no_file_argv_or_response(root: Path) -> None:
    port = free_port()
    env = {"HEDGEFORM_LB_PORT": str(port), "HEDGEFORM_SANDBOX_COLD_START": "0.5"}
    result = CliRunner().invoke(main, ["apply", "sec", "--root", str(root)], env=env)
    assert result.exit_code == 0, result.output
    assert SENTINEL not in result.output
    files = [p for p in (root / "state").rglob("*") if p.is_file()]
    assert files and not [p for p in files if SENTINEL.encode() in p.read_bytes()]
    argv = [p.read_bytes() for p in Path("/proc").glob("[0-9]*/cmdline") if _readable(p)]
    assert not [a for a in argv if SENTINEL.encode() in a]
    models = requests.get(f"http://127.0.0.1:{port}/v1/models", timeout=5).text
    assert SENTINEL not in models and "sandbox-model" in models
    CliRunner().invoke(main, ["destroy", "sec", "--root", str(root)], env=env)


def _readable(path: Path) -> bool:
    try:
        path.read_bytes()
    except OSError:
        return False
    return True
