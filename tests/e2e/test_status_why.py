"""`hedgeform status` answers "why did replica X go away and what did that cost?" (issue 17):
on the sandbox, a spot replica is preempted (the market takes its zone's capacity), another
hangs (SIGSTOP: its probes time out until FAILED_PROBING), and the loop falls back to
on-demand; `status` names each with its reason and prices the fallback."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.sandbox import replicas
from reconciler.sandbox.market import SpotMarket
from tests.e2e.conftest import SANDBOX_ZONES, free_port, hedgeform_keeping_signals, project_root

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SERVICE = "why"
SPEC = (
    """\
service:
  readiness_probe:
    path: /health
    initial_delay_seconds: 30
    timeout_seconds: 1
    consecutive_failure_threshold_timeout: 3
  replica_policy:
    min_replicas: 2
    max_replicas: 2
    dynamic_ondemand_fallback: true
"""
    + SANDBOX_ZONES
    + "  use_spot: true\n"
)
ZONES = ("local-1a", "local-1b", "local-2a")


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    with project_root(tmp_path, {SERVICE: SPEC}) as path:
        yield path


hedgeform = hedgeform_keeping_signals


def tick(root: Path, env: dict[str, str]) -> None:
    hedgeform(root, env, "run", SERVICE, "--max-ticks", "1", "--interval", "1")


def live(sandbox: Path) -> dict[str, replicas.ReplicaRecord]:
    return {s.record.replica_id: s.record for s in replicas.list_replicas(sandbox) if s.alive}


def test_status_names_the_preemption_the_failed_probe_and_the_fallback(root: Path) -> None:
    env = {
        "HEDGEFORM_LB_PORT": str(free_port()),
        "HEDGEFORM_SANDBOX_COLD_START": "1",
        "HEDGEFORM_SANDBOX_WARNING": "1",
    }
    sandbox = root / "state" / SERVICE / "sandbox"
    sandbox.mkdir(parents=True)
    SpotMarket.init(sandbox, now=time.time(), warning_seconds=1)
    market = SpotMarket.load(sandbox)
    for zone in ZONES:
        market.set_capacity(zone, 1)
    hedgeform(root, env, "apply", SERVICE)
    tick(root, env)  # the tick log starts: both spot replicas ready, in the load balancer
    spot = live(sandbox)
    assert len(spot) == 2 and {r.market for r in spot.values()} == {"spot"}, spot
    gone, hung = sorted(spot)

    market.set_capacity(spot[gone].zone, 0)  # the market warns, then kills `gone`
    deadline = time.time() + 20
    while gone in live(sandbox) and time.time() < deadline:
        time.sleep(0.2)
    assert gone not in live(sandbox), "the market daemon should preempt it"
    os.kill(spot[hung].pid, signal.SIGSTOP)  # its probes time out from now on
    tick(root, env)  # sees the preemption, starts counting the hung replica's failures
    time.sleep(4)  # past consecutive_failure_threshold_timeout (3 s)
    tick(root, env)  # FAILED_PROBING, replaced

    out = hedgeform(root, env, "status", SERVICE, "--events", "50")
    print(out)  # shown when an assertion below fails
    lines = out.splitlines()
    preemption = [ln for ln in lines if " preemption " in ln and gone in ln]
    assert preemption, out
    failed = [ln for ln in lines if " failed " in ln and hung in ln]
    assert any("FAILED_PROBING" in ln and "probe" in ln.lower() for ln in failed), out
    # the fallback still running (the first apply's passes are logged too: it fell back to
    # on-demand until the spot replicas were ready, then removed those)
    running = {rid for rid, r in live(sandbox).items() if r.market == "on_demand"}
    fallback = [ln for ln in lines if " fallback " in ln and ln.split()[2] in running]
    assert fallback and "on-demand fallback: 0 ready spot of 2" in fallback[0], out
    assert "(covers " in fallback[0], out  # the replica it was launched for
    # what the fallback costs, per hour and so far, in the sandbox's nominal units (never `$`)
    assert "3.00 (nominal)/h; running for " in fallback[0] and "so far" in fallback[0], out
    assert "$" not in out, out
    assert "availability 1h" in lines[0] and "(nominal)/h now" in lines[0], lines[0]
    assert any(" preemption " in ln and "on-demand cover " in ln for ln in lines), out

    view = json.loads(hedgeform(root, env, "status", SERVICE, "--json", "--events", "50"))
    kinds = {(e["kind"], e["replica"]) for e in view["events"]}
    assert ("preemption", gone) in kinds and ("failed", hung) in kinds, view["events"]
    assert view["unit"] == "nominal (sandbox)"
    covered = [e for e in view["events"] if e["kind"] == "preemption" and e["covered_by"]]
    assert covered and covered[0]["cost"] is not None and covered[0]["cost"] > 0, view["events"]
    od = [r for r in view["replicas"] if r["market"] == "on_demand"]
    assert od and all(r["reason"].startswith("fallback: on-demand fallback") for r in od), od
    assert all(r["usd_per_hour"] and r["usd_per_hour"] > 0 for r in od), od
    assert view["usd_per_hour"] is not None and view["usd_per_hour"] > 0
    assert 0.0 <= view["availability_1h"] < 1.0  # a tick with nothing ready counted as down

    listed = hedgeform(root, env, "status")
    assert listed.startswith(f"{SERVICE}  v1  ready "), listed
    replica_log = hedgeform(root, env, "logs", SERVICE, gone, "--tail", "5")
    assert replica_log.strip(), "the preempted replica's output stays readable"
    lb_log = hedgeform(root, env, "logs", SERVICE, "--lb", "--tail", "1000").splitlines()
    assert any(f"Server replicas/{hung} is DOWN" in ln for ln in lb_log), lb_log
    ticks = hedgeform(root, env, "logs", SERVICE, "--tail", "2").splitlines()
    assert len(ticks) == 2 and json.loads(ticks[-1])["message"] == "loop stopped"
