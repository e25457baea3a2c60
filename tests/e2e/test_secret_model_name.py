"""A secret named MODEL_NAME reaches no file, no argv and no response (issue "Hardening",
item 2): the sandbox read envs["MODEL_NAME"] without checking whether it was a secret."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from reconciler.cli import main
from tests.e2e.conftest import SANDBOX_ZONES, free_port, project_root

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
    with project_root(tmp_path, {"sec": SPEC}) as path:
        yield path


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
