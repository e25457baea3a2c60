"""Every number from the environment, a flag or a template has a range, refused in one line
(issue "Hardening", item 3)."""

from __future__ import annotations

import math
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.backends.sandbox import SandboxSettings
from reconciler.cli import main
from reconciler.errors import RenderError, SandboxError
from reconciler.rendering import render_tfvars
from reconciler.sandbox import market_daemon

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("HEDGEFORM_SANDBOX_COLD_START", "inf"),  # rendered `Infinity` into tfvars JSON
        ("HEDGEFORM_SANDBOX_COLD_START", "nan"),
        ("HEDGEFORM_SANDBOX_SPEED", "abc"),
        ("HEDGEFORM_SANDBOX_SPEED", "0"),
        ("HEDGEFORM_SANDBOX_WARNING", "-1"),
        ("HEDGEFORM_SANDBOX_LATENCY_MS", "1e400"),
        ("HEDGEFORM_LB_PORT", "70000"),
        ("HEDGEFORM_LB_PORT", "1.5"),
        ("HEDGEFORM_SANDBOX_OFFSET_HOURS", "9" * 5000),
        # found by the second user-eye check: read as 10 and as port 31000
        ("HEDGEFORM_SANDBOX_COLD_START", "1_0"),
        ("HEDGEFORM_LB_PORT", "3.1e4"),
        ("HEDGEFORM_LB_PORT", "\u0663\u0661\u0669\u0660\u0666"),  # Arabic-Indic digits
        ("HEDGEFORM_SANDBOX_COLD_START", "\u0661"),
    ],
)
def test_a_sandbox_setting_outside_its_range_is_one_line(variable: str, value: str) -> None:
    with pytest.raises(SandboxError) as err:
        SandboxSettings.from_env({variable: value})
    assert str(err.value).startswith(f"{variable} must be a number from ")
    assert len(str(err.value)) < 120


def test_settings_in_range_are_read() -> None:
    s = SandboxSettings.from_env(
        {"HEDGEFORM_SANDBOX_COLD_START": "2.5", "HEDGEFORM_LB_PORT": "31000"}
    )
    assert (s.cold_start_s, s.lb_port) == (2.5, 31000)


def test_json_rendering_refuses_non_finite_numbers(tmp_path: Path) -> None:
    (tmp_path / "t.j2").write_text('{"x": {{ x | tojson }}}')
    with pytest.raises(RenderError, match="not a finite number"):
        render_tfvars("t.j2", {"x": math.inf}, tmp_path)


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "services").mkdir()
    shutil.copy(REPO / "services" / "llama.yaml", tmp_path / "services" / "llama.yaml")
    (tmp_path / "terraform").symlink_to(REPO / "terraform")
    yield tmp_path
    market_daemon.stop(tmp_path / "state" / "llama" / "sandbox")  # a tick that ran starts it


@pytest.mark.parametrize(
    "args",
    [
        ["run", "llama", "--max-ticks", "-1"],
        ["run", "llama", "--max-ticks", "0"],
        ["run", "llama", "--metrics-port", "70000"],
        ["run", "llama", "--interval", "nan"],
        ["run", "llama", "--interval", "inf"],
        ["apply", "llama", "--timeout", "nan"],
        ["apply", "llama", "--timeout", "-1"],
        ["apply", "llama", "--timeout", "0"],
        ["status", "llama", "--lb-port", "0"],
        ["apply", "llama", "--mode", "foo"],
        ["apply", "llama", "--max-surge", "50%"],
        ["apply", "llama", "--max-surge", "-1"],
        ["rollback", "llama", "0"],
    ],
)
def test_a_flag_outside_its_range_is_a_usage_error(root: Path, args: list[str]) -> None:
    result = CliRunner().invoke(main, [*args, "--root", str(root)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "Invalid value for" in result.output
    # One line, saying where to read more (click's own form is usage, hint and error).
    line = result.output.strip()
    assert "\n" not in line, result.output
    assert line.endswith(f" {args[0]} --help')") and "(see '" in line, line


def test_metrics_on_the_load_balancers_port_is_refused(root: Path) -> None:
    env = {"HEDGEFORM_LB_PORT": "31555"}
    args = ["run", "llama", "--metrics-port", "31555", "--max-ticks", "1", "--root", str(root)]
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 1
    assert "--metrics-port 31555 is the load balancer's port" in result.output


@pytest.mark.parametrize("where", ["a-file/x.prom", "a-file/sub/x.prom"])
def test_a_metrics_textfile_that_cannot_be_written_is_one_line(
    root: Path, tmp_path: Path, where: str
) -> None:
    """Found by the user-eye check: a traceback on every tick, exit 0."""
    (tmp_path / "a-file").write_text("not a directory")
    path = tmp_path / where
    args = ["run", "llama", "--metrics-textfile", str(path), "--max-ticks", "1"]
    result = CliRunner().invoke(main, [*args, "--root", str(root)])
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"Error: --metrics-textfile {path}: cannot write it")
    assert len(result.output.splitlines()) == 1


def test_a_metrics_textfile_that_is_not_a_regular_file_is_refused(
    root: Path, tmp_path: Path
) -> None:
    """Found by the second user-eye check: `--metrics-textfile /dev/null` (as root) replaced
    /dev/null with a regular file (prometheus-client renames its temp file over the path).
    A FIFO and a symlink stand in for the device here; the path must be left as it was."""
    fifo = tmp_path / "fifo.prom"
    os.mkfifo(fifo)
    link = tmp_path / "link.prom"
    link.symlink_to(tmp_path / "target.prom")
    for path in (fifo, link):
        args = ["run", "llama", "--metrics-textfile", str(path), "--max-ticks", "1"]
        result = CliRunner().invoke(main, [*args, "--root", str(root)])
        assert result.exit_code == 1, result.output
        assert "not a regular file" in result.output
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and link.is_symlink()


def test_run_with_max_ticks_exits_1_when_its_last_tick_failed(root: Path) -> None:
    """Found by the third user-eye check: `run --max-ticks 1` exited 0 after its only tick
    failed (here: no Terraform installed in the root)."""
    args = ["run", "llama", "--max-ticks", "1", "--interval", "1", "--root", str(root)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert "the last of 1 tick(s) failed" in result.output
