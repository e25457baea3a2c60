"""End to end on the sandbox: real Terraform, real replica processes, real HAProxy."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from reconciler.cli import main
from reconciler.sandbox import market_daemon, replicas
from reconciler.sandbox.haproxy import HAProxyLB
from reconciler.sandbox.market import SpotMarket
from tests.e2e.conftest import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ZONES = ("local-1a", "local-1b", "local-2a")


@pytest.fixture(scope="module")
def env(sandbox_root: Path) -> dict[str, str]:
    return {
        "HEDGEFORM_LB_PORT": str(free_port()),
        "HEDGEFORM_SANDBOX_COLD_START": "1",
        "HEDGEFORM_SANDBOX_WARNING": "1",
        "HEDGEFORM_SANDBOX_LATENCY_MS": "1",
    }


def hedgeform(root: Path, env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(main, [*args, "--root", str(root)], env=env)
    assert result.exit_code == 0, result.output
    return result.output


def sandbox(root: Path) -> Path:
    return root / "state" / "llama" / "sandbox"


def completions(port: str) -> int:
    reply = requests.post(
        f"http://127.0.0.1:{port}/v1/completions", json={"prompt": "hello"}, timeout=5
    )
    if reply.status_code == 200:  # the replicas serve the spec's MODEL_NAME
        assert reply.json()["model"] == "meta-llama/Llama-3.1-8B-Instruct"
    return reply.status_code


def lb_members(root: Path) -> set[str]:
    return set(HAProxyLB(sandbox(root)).members())


def test_apply_gives_an_endpoint_that_answers_through_haproxy(
    sandbox_root: Path, env: dict[str, str]
) -> None:
    # one spot replica fits in each zone: SpotHedge spreads 2 + 1 overprovisioned across them
    SpotMarket.init(sandbox(sandbox_root), now=time.time(), warning_seconds=1)
    market = SpotMarket.load(sandbox(sandbox_root))
    for zone in ZONES:
        market.set_capacity(zone, 1)
    out = hedgeform(sandbox_root, env, "apply", "llama")
    assert f"endpoint: http://127.0.0.1:{env['HEDGEFORM_LB_PORT']}" in out
    assert completions(env["HEDGEFORM_LB_PORT"]) == 200
    live = {s.record.replica_id: s.record for s in replicas.list_replicas(sandbox(sandbox_root))}
    spot_zones = sorted(r.zone for r in live.values() if r.market == "spot")
    assert spot_zones == sorted(ZONES)  # spread: one per zone
    assert lb_members(sandbox_root) == set(live)  # exactly the ready replicas
    assert all(r.market == "spot" for r in live.values())  # the fallback was shrunk again


def test_a_second_apply_with_nothing_changed_applies_nothing(
    sandbox_root: Path, env: dict[str, str]
) -> None:
    plans_before = set((sandbox_root / "state" / "llama" / "plans").iterdir())
    out = hedgeform(sandbox_root, env, "apply", "llama")
    assert "(no changes)" in out
    assert set((sandbox_root / "state" / "llama" / "plans").iterdir()) == plans_before


def test_lost_capacity_preempts_and_the_next_reconcile_falls_back_to_on_demand(
    sandbox_root: Path, env: dict[str, str]
) -> None:
    market = SpotMarket.load(sandbox(sandbox_root))
    before = {s.record.replica_id for s in replicas.list_replicas(sandbox(sandbox_root))}
    market.set_capacity("local-1a", 0)
    market.set_capacity("local-1b", 0)
    deadline = time.time() + 20
    while time.time() < deadline:
        alive = {s.record.replica_id for s in replicas.list_replicas(sandbox(sandbox_root))
                 if s.alive}  # fmt: skip
        if len(alive) == 1:
            break
        time.sleep(0.2)
    assert len(alive) == 1, "the market daemon should preempt the two spot replicas"
    hedgeform(sandbox_root, env, "apply", "llama")
    live = [s.record for s in replicas.list_replicas(sandbox(sandbox_root)) if s.alive]
    on_demand = [r.replica_id for r in live if r.market == "on_demand"]
    assert on_demand, "on-demand must cover the lost spot replicas"
    members = lb_members(sandbox_root)
    assert set(on_demand) <= members
    assert not (before - alive) & members  # preempted replicas left the target group
    assert completions(env["HEDGEFORM_LB_PORT"]) == 200
    notices = (sandbox(sandbox_root) / "notices.jsonl").read_text().splitlines()
    assert {json.loads(n)["kind"] for n in notices} == {"warning", "preempted"}


def test_haproxy_killed_is_restarted_with_its_members_by_the_next_reconcile(
    sandbox_root: Path, env: dict[str, str]
) -> None:
    balancer = HAProxyLB(sandbox(sandbox_root))
    members = lb_members(sandbox_root)
    pid = balancer.pid()
    assert members and pid is not None
    os.kill(pid, signal.SIGKILL)  # runtime-added servers die with it
    deadline = time.time() + 5
    while balancer.is_running() and time.time() < deadline:
        time.sleep(0.05)
    assert not balancer.is_running()
    hedgeform(sandbox_root, env, "apply", "llama")
    assert balancer.is_running()
    assert lb_members(sandbox_root) == members
    assert completions(env["HEDGEFORM_LB_PORT"]) == 200


def test_destroy_leaves_no_process_and_no_haproxy_server(
    sandbox_root: Path, env: dict[str, str]
) -> None:
    balancer = HAProxyLB(sandbox(sandbox_root))
    assert balancer.is_running()
    out = hedgeform(sandbox_root, env, "destroy", "llama")
    assert "nothing left running" in out
    assert not any(s.alive for s in replicas.list_replicas(sandbox(sandbox_root)))
    assert not balancer.is_running()
    assert market_daemon.running_pid(sandbox(sandbox_root)) is None
