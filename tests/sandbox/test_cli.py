"""The `sandbox` command group end to end: replicas, market and LB through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from reconciler.sandbox import processes, replicas
from reconciler.sandbox.cli import sandbox
from reconciler.sandbox.haproxy import HAProxyLB
from tests.sandbox.conftest import requires_haproxy


@pytest.mark.parametrize(
    "command",
    [[], ["replica"], ["replica", "launch"], ["replica", "fault"], ["market", "run"],
     ["market", "set-capacity"], ["lb", "up"], ["lb", "set-members"], ["load"]],
)  # fmt: skip
def test_every_command_explains_itself(command: list[str]) -> None:
    result = CliRunner().invoke(sandbox, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output and len(result.output) > 200


def test_set_capacity_needs_exactly_one_choice(state_dir: Path, trace_dir: Path) -> None:
    runner = CliRunner()
    base = ["--state-dir", str(state_dir)]
    run = runner.invoke(sandbox, ["market", "run", *base, "--traces", str(trace_dir)])
    assert run.exit_code == 0, run.output
    bad = runner.invoke(sandbox, ["market", "set-capacity", *base, "--zone", "local-1a"])
    assert bad.exit_code == 2
    good = runner.invoke(
        sandbox, ["market", "set-capacity", *base, "--zone", "local-1a", "--capacity", "3"]
    )
    assert good.exit_code == 0 and "capacity 3" in good.output
    unknown = runner.invoke(
        sandbox, ["market", "set-capacity", *base, "--zone", "local-7c", "--capacity", "3"]
    )
    assert unknown.exit_code == 1 and "not a sandbox zone" in unknown.output


def test_spot_launch_without_a_market_says_how_to_start_one(state_dir: Path) -> None:
    result = CliRunner().invoke(
        sandbox,
        ["replica", "launch", "--state-dir", str(state_dir), "--id", "s1",
         "--zone", "local-1a", "--market", "spot"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "hedgeform sandbox market run" in result.output


@requires_haproxy
def test_replicas_behind_the_lb_through_the_cli(state_dir: Path, trace_dir: Path) -> None:
    runner = CliRunner()
    base = ["--state-dir", str(state_dir)]

    def ok(*args: str) -> str:
        result = runner.invoke(sandbox, list(args))
        assert result.exit_code == 0, result.output
        return result.stdout

    ok("market", "run", *base, "--traces", str(trace_dir))
    ok("market", "set-capacity", *base, "--zone", "local-1b", "--capacity", "1")
    launched = json.loads(
        ok("replica", "launch", *base, "--id", "s1", "--zone", "local-1b", "--market", "spot")
    )
    full = runner.invoke(
        sandbox,
        ["replica", "launch", *base, "--id", "s2", "--zone", "local-1b", "--market", "spot"],
    )
    assert full.exit_code == 3
    ok("replica", "launch", *base, "--id", "d1", "--zone", "local-1b", "--market", "on_demand")
    listed = json.loads(ok("replica", "list", *base, "--json"))
    assert [(r["replica_id"], r["alive"]) for r in listed] == [("s1", True), ("d1", True)]

    port = processes.free_port()
    ok("lb", "up", *base, "--port", str(port))
    members = json.loads(ok("lb", "set-members", *base, "s1", "d1", "gone"))
    assert members["members"] == ["d1", "s1"]
    balancer = HAProxyLB(state_dir)
    assert balancer.wait_until_up(["s1", "d1"])
    resp = requests.post(f"http://127.0.0.1:{port}/v1/completions", json={}, timeout=5)
    assert resp.status_code == 200
    status = json.loads(ok("lb", "status", *base, "--json"))
    assert status["running"] and set(status["servers"]) == {"s1", "d1"}
    assert status["servers"]["s1"]["address"] == f"127.0.0.1:{launched['port']}"

    ok("lb", "set-members", *base, "d1")
    assert set(balancer.members()) == {"d1"}
    ok("replica", "stop", *base, "--id", "s1")
    assert "load balancer stopped" in ok("lb", "down", *base)
    assert json.loads(ok("lb", "status", *base, "--json"))["running"] is False


def test_replica_fault_writes_clears_and_explains(state_dir: Path) -> None:
    runner = CliRunner()
    base = ["replica", "fault", "--state-dir", str(state_dir), "--id", "r1"]
    path = state_dir / "replicas" / "faults" / "r1.json"
    set_ = runner.invoke(sandbox, [*base, "--delay-ms", "2500", "--path", "/v1/models"])
    assert set_.exit_code == 0, set_.output
    assert set_.output == "r1: 2500 ms late on /v1/models\n"
    assert json.loads(path.read_text()) == {"delay_ms": 2500, "paths": ["/v1/models"]}
    both = runner.invoke(sandbox, [*base, "--status", "500", "--delay-ms", "10"])
    assert both.exit_code == 0, both.output
    assert json.loads(path.read_text()) == {
        "delay_ms": 10,
        "status": 500,
        "paths": ["/health", "/v1/models", "/v1/completions"],
    }
    assert replicas.list_replicas(state_dir) == []  # not mistaken for a replica record
    cleared = runner.invoke(sandbox, [*base, "--clear"])
    assert cleared.exit_code == 0 and cleared.output == "r1: faults cleared\n"
    assert not path.exists()
    again = runner.invoke(sandbox, [*base, "--clear"])
    assert again.exit_code == 0  # idempotent


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        ([], 2, "give --delay-ms, --status (or both), or --clear"),
        (["--clear", "--status", "500"], 2, "--clear takes no --delay-ms, --status or --path"),
        (["--status", "700"], 2, "700 is out of range: a whole number (100 to 599)"),
        (["--status", "500", "--path", "health"], 2, "paths must be a non-empty list"),
    ],
)
def test_replica_fault_usage_errors(
    state_dir: Path, args: list[str], code: int, message: str
) -> None:
    base = ["replica", "fault", "--state-dir", str(state_dir), "--id", "r1"]
    result = CliRunner().invoke(sandbox, [*base, *args])
    assert result.exit_code == code
    assert message in result.output
    assert not (state_dir / "replicas" / "faults" / "r1.json").exists()


def test_replica_fault_checks_the_id(state_dir: Path) -> None:
    result = CliRunner().invoke(
        sandbox,
        ["replica", "fault", "--state-dir", str(state_dir), "--id", "../x", "--status", "500"],
    )
    assert result.exit_code == 1
    assert result.output.startswith("Error: invalid replica id '../x'")
    assert len(result.output.strip().splitlines()) == 1


def test_a_launched_replica_obeys_the_fault_command(state_dir: Path) -> None:
    """End to end through the real process: the replica finds faults/<id>.json by itself."""
    runner = CliRunner()
    launch = runner.invoke(
        sandbox,
        ["replica", "launch", "--state-dir", str(state_dir), "--id", "f1",
         "--zone", "local-1a", "--market", "on_demand"],
    )  # fmt: skip
    assert launch.exit_code == 0, launch.output
    url = f"http://127.0.0.1:{json.loads(launch.output)['port']}"
    assert requests.get(f"{url}/health", timeout=5).status_code == 200
    base = ["replica", "fault", "--state-dir", str(state_dir), "--id", "f1"]
    assert runner.invoke(sandbox, [*base, "--status", "503"]).exit_code == 0
    assert requests.get(f"{url}/health", timeout=5).status_code == 503
    assert runner.invoke(sandbox, [*base, "--clear"]).exit_code == 0
    assert requests.get(f"{url}/health", timeout=5).status_code == 200


@requires_haproxy
def test_set_members_starts_a_load_balancer_whose_record_is_gone(state_dir: Path) -> None:
    """What the front stack runs after HAProxy was killed and `lb.json` lost: the port and
    check it passes start HAProxy again (before: "no load balancer recorded here")."""
    server = replicas.launch(state_dir, "d1", "local-1a", "on_demand")
    port = processes.free_port()
    result = CliRunner().invoke(
        sandbox,
        ["lb", "set-members", "--state-dir", str(state_dir), "--port", str(port),
         "--check-path", "/health", "--check-timeout", "3", "--member", f"extra={server.port}",
         "d1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    balancer = HAProxyLB(state_dir)
    assert balancer.port == port and balancer.check.timeout_s == 3
    assert set(balancer.members()) == {"d1", "extra"}
    assert balancer.wait_until_up(["d1", "extra"])
