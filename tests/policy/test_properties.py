"""Invariants of the SpotHedge policies on arbitrary observed states (hypothesis)."""

from __future__ import annotations

import json
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.policy import (
    FailureKind,
    LaunchResult,
    Market,
    Memory,
    Notice,
    NoticeKind,
    Replica,
    ReplicaState,
    Signals,
    ZoneStatus,
    hedgeform,
    spothedge,
)
from reconciler.policy.capacity_backoff import capacity_blocked
from reconciler.policy.lifecycle import crash_blocked
from reconciler.policy.memory import Backoff
from tests.policy.builders import ZONES, make_spec, observe

STATES = [s for s in ReplicaState]
NOW = 50_000.0
backoff_s = st.sampled_from([-10.0, 30.0, 300.0])  # retry time passed, or still ahead


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[object, ...]:
    min_r = draw(st.integers(0, 4))
    max_r = draw(st.integers(min_r, 6))
    spec = make_spec(
        min_replicas=min_r,
        max_replicas=max_r,
        target_qps=draw(st.sampled_from([None, 5.0])) if max_r > min_r else None,
        overprovision=draw(st.integers(0, 2)),
        base_od=draw(st.integers(0, min_r)),
        dynamic=True,
        up=draw(st.sampled_from([0, 300])),
        down=draw(st.sampled_from([0, 1200])),
        initial_delay=draw(st.sampled_from([10, 1200, 86_400])),
        failure_threshold=draw(st.sampled_from([30, 180])),
    )
    if spec.service.replica_policy.target_qps_per_replica is None and max_r > min_r:
        spec = make_spec(min_replicas=min_r, max_replicas=min_r)
    n = draw(st.integers(0, 8))
    replicas = tuple(
        Replica(
            f"r{i}",
            draw(st.sampled_from(ZONES)),
            draw(st.sampled_from(list(Market))),
            draw(st.sampled_from(STATES)),
            float(draw(st.integers(0, 40_000))),
        )
        for i in range(n)
    )
    notices = tuple(
        Notice(draw(st.sampled_from(list(NoticeKind))), r.id, r.zone, NOW)
        for r in replicas
        if r.market is Market.SPOT and draw(st.booleans())
    )
    results = tuple(
        LaunchResult(z, Market.SPOT, ok, None if ok else draw(st.sampled_from(list(FailureKind))))
        for z in draw(st.lists(st.sampled_from(ZONES), max_size=3))
        for ok in [draw(st.booleans())]
    )
    memory = Memory(
        target=draw(st.one_of(st.none(), st.integers(0, 6))),
        upscale_since=draw(st.one_of(st.none(), st.floats(0, NOW))),
        zone_status={z: draw(st.sampled_from(list(ZoneStatus))) for z in ZONES},
        launch_seq=draw(st.integers(0, 1000)),
        warned=tuple(
            (r.id, NOW - 10) for r in replicas if r.market is Market.SPOT and draw(st.booleans())
        ),
        ready_once=frozenset(r.id for r in replicas if draw(st.booleans())),
        failing_since={r.id: NOW - draw(st.sampled_from([0, 60, 600])) for r in replicas[:3]},
        zone_backoff={
            z: Backoff("capacity", draw(st.integers(1, 5)), NOW - 30, NOW + draw(backoff_s))
            for z in draw(st.lists(st.sampled_from(ZONES), max_size=3, unique=True))
        },
        crash_backoff={
            f"{z}/{m.value}": Backoff("FAILED_PROBING", 2, NOW - 30, NOW + draw(backoff_s))
            for z in draw(st.lists(st.sampled_from(ZONES), max_size=2, unique=True))
            for m in [draw(st.sampled_from(list(Market)))]
        },
    )
    qps = draw(st.one_of(st.none(), st.floats(0, 100)))
    signals = Signals(qps=qps, qps_at=NOW, notices=notices, launch_results=results)
    policy = draw(st.sampled_from([spothedge, hedgeform]))
    return policy, spec, observe(*replicas), signals, memory


@given(scenarios())
@settings(max_examples=300, deadline=None)
def test_invariants(scenario: tuple[object, ...]) -> None:
    policy, spec, observed, signals, memory = scenario
    decision = policy(spec, observed, signals, memory, NOW)  # type: ignore[operator]
    target = decision.target
    stopped = {t.replica_id for t in decision.terminations}
    warned = dict(decision.memory.warned)
    kept = [r for r in observed.replicas if r.alive and r.id not in stopped]  # type: ignore[attr-defined]

    # on-demand never exceeds the target
    assert decision.count(Market.ON_DEMAND) <= target

    # with dynamic fallback, ready + launching replicas (not under warning) cover the target
    serving = sum(1 for r in kept if r.id not in warned) + len(decision.launches)
    assert serving >= target

    # spread: no new spot replica shares a zone while an ACTIVE zone open to launches is empty
    status = decision.memory.zone_status
    waiting = capacity_blocked(decision.memory.zone_backoff, NOW) | crash_blocked(
        decision.memory, Market.SPOT, NOW
    )
    per_zone: dict[str, int] = {}
    for r in kept:
        if r.market is Market.SPOT:
            per_zone[r.zone] = per_zone.get(r.zone, 0) + 1
    for launch in decision.launches:
        if launch.market is not Market.SPOT:
            continue
        if per_zone.get(launch.zone, 0) > 0:
            empty_active = [
                z
                for z in ZONES
                if status[z] is ZoneStatus.ACTIVE and per_zone.get(z, 0) == 0 and z not in waiting
            ]
            assert empty_active == [], (launch, per_zone, status)
        per_zone[launch.zone] = per_zone.get(launch.zone, 0) + 1

    # memory survives JSON exactly
    text = json.dumps(decision.memory.to_json())
    assert Memory.from_json(json.loads(text)) == decision.memory

    # deterministic: the same inputs give the same decision
    again = policy(spec, observed, signals, memory, NOW)  # type: ignore[operator]
    assert again == decision

    # desired counts agree with the launches and terminations
    assert sum(decision.desired.values()) == len(kept) + len(decision.launches)
    # terminal replicas are always cleaned up
    assert {r.id for r in observed.replicas if not r.alive} <= stopped  # type: ignore[attr-defined]

    # a replica judged FAILED_* is never in the load balancer and is always replaced
    failed = set(decision.memory.failed)
    assert failed <= stopped
    assert not failed & set(decision.lb_members)

    # hedgeform: no launch goes where a backoff still waits (SkyServe's spothedge has none)
    for launch in decision.launches if policy is hedgeform else ():
        if launch.market is Market.ON_DEMAND:
            assert launch.zone not in crash_blocked(decision.memory, Market.ON_DEMAND, NOW)
        else:
            assert launch.zone not in waiting


@given(scenarios())
@settings(max_examples=200, deadline=None)
def test_capacity_backoff_never_delays_on_demand_cover(scenario: tuple[object, ...]) -> None:
    policy, spec, observed, signals, memory = scenario
    without = replace(memory, zone_backoff={})  # type: ignore[type-var]
    with_backoff = policy(spec, observed, signals, memory, NOW)  # type: ignore[operator]
    free = policy(spec, observed, signals, without, NOW)  # type: ignore[operator]
    assert with_backoff.count(Market.ON_DEMAND) == free.count(Market.ON_DEMAND)


@given(scenarios())
@settings(max_examples=200, deadline=None)
def test_a_failed_replica_is_replaced(scenario: tuple[object, ...]) -> None:
    """Replacing failed replicas keeps the layout at its size: what a FAILED_* replica held is
    launched again, unless a backoff holds that market everywhere."""
    policy, spec, observed, signals, memory = scenario
    decision = policy(spec, observed, signals, memory, NOW)  # type: ignore[operator]
    stopped = {t.replica_id for t in decision.terminations}
    kept = [r for r in observed.replicas if r.alive and r.id not in stopped]  # type: ignore[attr-defined]
    warned = dict(decision.memory.warned)
    serving = sum(1 for r in kept if r.id not in warned) + len(decision.launches)
    blocked_everywhere = crash_blocked(decision.memory, Market.ON_DEMAND, NOW) >= set(ZONES)
    if not blocked_everywhere:
        assert serving >= decision.target
