"""The load generator: constant rate, success/failure accounting, percentiles, loopback only."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from reconciler.errors import SandboxError
from reconciler.sandbox import processes
from reconciler.sandbox.cli import sandbox
from reconciler.sandbox.loadgen import completions_url, run_load
from reconciler.sandbox.replica_server import ReplicaServer


def _base(server: ReplicaServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_load_against_a_replica_reports_successes_and_percentiles(
    replica_server: ReplicaServer,
) -> None:
    result = run_load(_base(replica_server), qps=40, duration_s=1.0, timeout_s=5)
    assert result.sent == 40
    assert (result.successes, result.failures, result.errors) == (40, 0, {})
    assert result.p50_ms is not None and result.p90_ms is not None and result.p99_ms is not None
    assert 0 < result.p50_ms <= result.p90_ms <= result.p99_ms
    assert 20 <= result.achieved_qps <= 60
    assert sum(ok for ok, _ in result.per_second) == 40
    assert replica_server.state.snapshot()["completions"] == 40


def test_failures_are_counted_by_cause() -> None:
    dead = f"http://127.0.0.1:{processes.free_port()}"
    result = run_load(dead, qps=20, duration_s=0.5, timeout_s=2)
    assert (result.sent, result.successes, result.failures) == (10, 0, 10)
    assert result.errors == {"ConnectionError": 10}
    assert result.p50_ms is None and result.success_rate == 0.0


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/v1/completions",
        "http://10.0.0.1:8080",
        "http://0.0.0.0:8080",
        "http://169.254.169.254/",
        "http://127.0.0.1.example.com/",
        "ftp://127.0.0.1/",
    ],
)
def test_non_loopback_targets_are_refused(url: str) -> None:
    with pytest.raises(SandboxError, match=r"refusing to send load|invalid URL"):
        run_load(url, qps=1, duration_s=1)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/v1/completions"),
        ("http://localhost:8080/", "http://localhost:8080/v1/completions"),
        ("http://127.1.2.3:9/custom", "http://127.1.2.3:9/custom"),
        ("http://[::1]:8080", "http://[::1]:8080/v1/completions"),
    ],
)
def test_loopback_targets_are_accepted(url: str, expected: str) -> None:
    assert completions_url(url) == expected


def test_load_cli_prints_the_summary_and_refuses_remote_hosts(
    replica_server: ReplicaServer,
) -> None:
    runner = CliRunner()
    ok = runner.invoke(
        sandbox, ["load", "--url", _base(replica_server), "--qps", "20", "--duration", "0.5"]
    )
    assert ok.exit_code == 0, ok.output
    assert "successes 10, failures 0" in ok.output and "p50" in ok.output and "p99" in ok.output
    as_json = runner.invoke(
        sandbox,
        ["load", "--url", _base(replica_server), "--qps", "20", "--duration", "0.5", "--json"],
    )
    assert json.loads(as_json.output)["successes"] == 10
    refused = runner.invoke(
        sandbox, ["load", "--url", "http://example.com", "--qps", "1", "--duration", "1"]
    )
    assert refused.exit_code == 1
    assert "refusing to send load to example.com" in refused.output
