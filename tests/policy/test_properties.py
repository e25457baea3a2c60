"""Invariants of the SpotHedge policies on arbitrary observed states (hypothesis)."""

from __future__ import annotations

import json

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
from tests.policy.builders import ZONES, make_spec, observe

STATES = [s for s in ReplicaState]
NOW = 50_000.0


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

    # spread: no new spot replica shares a zone while an ACTIVE zone is still empty
    status = decision.memory.zone_status
    per_zone: dict[str, int] = {}
    for r in kept:
        if r.market is Market.SPOT:
            per_zone[r.zone] = per_zone.get(r.zone, 0) + 1
    for launch in decision.launches:
        if launch.market is not Market.SPOT:
            continue
        if per_zone.get(launch.zone, 0) > 0:
            empty_active = [
                z for z in ZONES if status[z] is ZoneStatus.ACTIVE and per_zone.get(z, 0) == 0
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
