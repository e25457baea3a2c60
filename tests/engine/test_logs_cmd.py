"""`hedgeform logs` from the state directory alone, as `status`: with the service file moved
away the tick log and a sandbox's replica and load balancer logs are still read; what needs
the spec (a cloud's console hints) says so in one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from click.testing import CliRunner

from reconciler.cli import main

SPEC = """\
service:
  readiness_probe: /health
  replicas: 2
resources:
  use_spot: true
  any_of:
    - {cloud: local, region: local-1, zone: local-1a}
"""


def cli(root: Path, *args: str) -> Any:
    return CliRunner().invoke(main, [*args, "--root", str(root)], env={"HEDGEFORM_LB_PORT": "1"})


def _sandbox_service(root: Path) -> Path:
    (root / "services").mkdir()
    (root / "services" / "svc.yaml").write_text(SPEC)
    state = root / "state" / "svc"
    rdir = state / "sandbox" / "replicas"
    rdir.mkdir(parents=True)
    (rdir / "local-1a-spot-0.log").write_text("serving\npreempted: bye\n")
    (state / "ticks.jsonl").write_text('{"tick": 0}\n{"tick": 1}\n')
    return state


def test_logs_read_the_state_when_the_service_file_is_gone(tmp_path: Path) -> None:
    _sandbox_service(tmp_path)
    (tmp_path / "services" / "svc.yaml").rename(tmp_path / "svc.yaml.away")
    ticks = cli(tmp_path, "logs", "svc", "--tail", "1")
    assert ticks.exit_code == 0, ticks.output
    assert ticks.stdout == '{"tick": 1}\n' and ticks.stderr == ""
    replica = cli(tmp_path, "logs", "svc", "local-1a-spot-0")
    assert replica.exit_code == 0, replica.output
    assert replica.stdout == "serving\npreempted: bye\n"
    unknown = cli(tmp_path, "logs", "svc", "nope")
    assert unknown.exit_code == 1
    assert unknown.stderr == "Error: svc has no replica 'nope'; its replicas: local-1a-spot-0\n"
    lb = cli(tmp_path, "logs", "svc", "--lb")  # none runs here: the usual one line
    assert lb.exit_code == 1 and lb.stderr.count("\n") == 1, lb.output
    assert "load balancer is not running" in lb.stderr


def test_a_broken_service_file_does_not_hide_the_logs(tmp_path: Path) -> None:
    _sandbox_service(tmp_path)
    (tmp_path / "services" / "svc.yaml").write_text("service: [\n")
    result = cli(tmp_path, "logs", "svc", "local-1a-spot-0", "--tail", "1")
    assert result.exit_code == 0, result.output
    assert result.stdout == "preempted: bye\n"


def test_what_needs_the_spec_says_so_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "services").mkdir()
    state = tmp_path / "state" / "web"  # a cloud service: no sandbox directory
    state.mkdir(parents=True)
    (state / "ticks.jsonl").write_text('{"tick": 7}\n')
    ticks = cli(tmp_path, "logs", "web")
    assert ticks.exit_code == 0 and ticks.stdout == '{"tick": 7}\n', ticks.output
    result = cli(tmp_path, "logs", "web", "r-0")
    assert result.exit_code == 1, result.output
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert result.stderr.endswith(
        "web.yaml: no such service file (needed to say where r-0's console is; "
        "`hedgeform logs web`, the tick log, works without it)\n"
    )


def test_a_service_with_neither_file_nor_state_is_the_spec_error(tmp_path: Path) -> None:
    (tmp_path / "services").mkdir()
    result = cli(tmp_path, "logs", "ghost")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and result.stderr.endswith(
        "ghost.yaml: no such service file\n"
    )
