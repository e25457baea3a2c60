"""Serving metrics on the sandbox: `hedgeform run --metrics-port` exports HAProxy's
per-replica counters, and they move by the load sent through the load balancer: requests
and 2xx by the load, 5xx by what a faulty replica answered."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from reconciler.files import write_json_atomic
from reconciler.sandbox import replicas
from reconciler.sandbox.haproxy import HAProxyLB
from reconciler.sandbox.loadgen import run_load
from reconciler.sandbox.market import SpotMarket
from reconciler.sandbox.replica_server import faults_path
from tests.e2e.conftest import SANDBOX_ZONES, free_port, project_root

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
HEDGEFORM = str(Path(sys.executable).parent / "hedgeform")
SPEC = (
    """\
service:
  readiness_probe:
    path: /health
    initial_delay_seconds: 20
  replicas: 2
"""
    + SANDBOX_ZONES
    + "  use_spot: true\n  accelerators: L4\n"
)
LOAD = 50  # requests: 25/s for 2 s

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def per_replica(samples: Samples, name: str, **match: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for (n, labels), v in samples.items():
        ls = dict(labels)
        if n == name and all(ls.get(k) == want for k, want in match.items()):
            out[ls["replica"]] = out.get(ls["replica"], 0.0) + v
    return out


def ticks(samples: Samples) -> float:
    return sum(v for (n, _), v in samples.items() if n == "hedgeform_tick_duration_seconds_count")


def wait_for_tick(port: int, loop: subprocess.Popen[bytes], timeout: float = 120) -> Samples:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert loop.poll() is None, "hedgeform run exited"
        try:
            samples = scrape(port)
        except requests.RequestException:
            samples = {}
        if ticks(samples) >= 1:
            return samples
        time.sleep(0.5)
    raise AssertionError("no tick within the timeout")


def test_counters_move_under_load(tmp_path: Path) -> None:
    with project_root(tmp_path / "r", {"llama": SPEC}) as root:
        sandbox = root / "state" / "llama" / "sandbox"
        lb_port, metrics_port = free_port(), free_port()
        env = {
            **os.environ,
            "HEDGEFORM_LB_PORT": str(lb_port),
            "HEDGEFORM_SANDBOX_COLD_START": "1",
            "HEDGEFORM_SANDBOX_WARNING": "1",
            "HEDGEFORM_SANDBOX_LATENCY_MS": "20",  # so HAProxy's average times are > 0 ms
        }
        env.pop("HEDGEFORM_CRASH_AT", None)
        SpotMarket.init(sandbox, now=time.time(), warning_seconds=1)
        market = SpotMarket.load(sandbox)
        for zone in market.zones:
            market.set_capacity(zone, 1)
        applied = subprocess.run(
            [HEDGEFORM, "apply", "llama", "--root", str(root)],
            env=env, capture_output=True, text=True, timeout=240,
        )  # fmt: skip
        assert applied.returncode == 0, applied.stdout + applied.stderr
        textfile = tmp_path / "metrics.prom"
        loop = subprocess.Popen(
            [HEDGEFORM, "run", "llama", "--root", str(root), "--interval", "600",
             "--metrics-port", str(metrics_port), "--metrics-textfile", str(textfile)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_for_tick(metrics_port, loop)
            members = set(HAProxyLB(sandbox).members())
            assert len(members) >= 2
            # HAProxy checks each server every 0.5 s: checks are not requests.
            idle = scrape(metrics_port)
            time.sleep(1.5)
            before = scrape(metrics_port)
            assert per_replica(before, "hedgeform_replica_requests_total") == per_replica(
                idle, "hedgeform_replica_requests_total"
            )
            result = run_load(f"http://127.0.0.1:{lb_port}", 25, 2, timeout_s=10, max_tokens=4)
            assert result.sent == LOAD and result.successes == LOAD, result.errors
            after = scrape(metrics_port)
            records = {s.record.replica_id: s.record for s in replicas.list_replicas(sandbox)}
            # One replica answers completions with 500 (its /health stays 200: it stays in).
            broken = sorted(members)[0]
            fault = faults_path(replicas.replicas_dir(sandbox), broken)
            write_json_atomic(fault, {"paths": ["/v1/completions"], "status": 500})
            faulty = run_load(f"http://127.0.0.1:{lb_port}", 10, 2, timeout_s=10, max_tokens=4)
            failed = scrape(metrics_port)
        finally:
            loop.send_signal(signal.SIGTERM)
            loop.wait(60)

    requests_before = per_replica(before, "hedgeform_replica_requests_total")
    requests_after = per_replica(after, "hedgeform_replica_requests_total")
    assert set(requests_after) == members  # one series per replica in the load balancer
    moved = {r: requests_after[r] - requests_before.get(r, 0.0) for r in members}
    extra_ticks = ticks(after) - ticks(before)  # each tick's serving check sends 3 requests
    assert LOAD <= sum(moved.values()) <= LOAD + 3 * extra_ticks, moved
    assert all(n > 0 for n in moved.values()), moved  # round robin reached every member
    ok_before = per_replica(before, "hedgeform_replica_responses_total", code="2xx")
    ok_after = per_replica(after, "hedgeform_replica_responses_total", code="2xx")
    assert sum(ok_after.values()) - sum(ok_before.values()) == sum(moved.values())
    assert sum(per_replica(after, "hedgeform_replica_responses_total", code="5xx").values()) == 0
    latency = per_replica(after, "hedgeform_replica_response_time_seconds")
    assert set(latency) == members and all(v >= 0.015 for v in latency.values()), latency
    # the labels are the replicas' own
    for (name, labels), _ in after.items():
        if name == "hedgeform_replica_requests_total":
            ls = dict(labels)
            record = records[ls["replica"]]
            assert (ls["zone"], ls["market"], ls["accelerator"]) == (
                record.zone,
                record.market,
                "L4",
            )
    assert ("hedgeform_lb_stats_up", frozenset({("service", "llama")})) in after
    # the faulty replica's 500s are its 5xx, and only its
    fivexx = per_replica(failed, "hedgeform_replica_responses_total", code="5xx")
    sent_to = {
        r: per_replica(failed, "hedgeform_replica_requests_total")[r] - requests_after[r]
        for r in members
    }
    assert faulty.failures == fivexx[broken] == sent_to[broken] > 0, (faulty.errors, sent_to)
    assert all(fivexx[r] == 0 for r in members - {broken}), fivexx
    text = textfile.read_text()  # written at the tick, before the load
    assert "hedgeform_replica_requests_total{" in text
    assert "hedgeform_cost_usd_per_hour{" in text
