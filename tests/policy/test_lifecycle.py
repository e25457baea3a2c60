"""Replica lifecycle: FAILED_INITIAL_DELAY / FAILED_PROBING replaced, crash loops back off."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from reconciler.policy import (
    POLICIES,
    Market,
    Memory,
    Observation,
    Replica,
    ReplicaState,
    Signals,
    hedgeform,
    spothedge,
)
from reconciler.policy.decision import Decision, PolicyFn
from reconciler.policy.lifecycle import crash_delay, judge
from reconciler.spec.model import ReadinessProbe, ServiceSection, ServiceSpec
from tests.policy.builders import make_spec, observe

T0 = 100_000.0


def on_demand_spec(replicas: int = 1, initial_delay: int = 10, threshold: int = 180) -> ServiceSpec:
    return make_spec(
        min_replicas=replicas,
        overprovision=0,
        use_spot=False,
        initial_delay=initial_delay,
        failure_threshold=threshold,
    )


def od(rid: str, state: ReplicaState, zone: str = "za-1a", at: float = T0) -> Replica:
    return Replica(rid, zone, Market.ON_DEMAND, state, at)


def run(
    policy: PolicyFn | Callable[..., Decision],
    spec: ServiceSpec,
    ticks: Sequence[tuple[float, Sequence[Replica]]],
) -> list[Decision]:
    """Feed (now, replicas) ticks through a policy, carrying memory; return the decisions."""
    memory, decisions = Memory(), []
    for now, replicas in ticks:
        d = policy(spec, observe(*replicas), Signals(), memory, now)
        memory = d.memory
        decisions.append(d)
    return decisions


@pytest.mark.parametrize("name", ["hedgeform", "spothedge", "ondemand"])
def test_a_lone_on_demand_replica_hung_past_the_threshold_is_replaced(name: str) -> None:
    """The issue's policy-level reproduction: READY once, then NOT_READY past the threshold."""
    spec = on_demand_spec(replicas=1)
    ticks = [
        (T0 + 30, [od("a", ReplicaState.READY)]),
        (T0 + 60, [od("a", ReplicaState.NOT_READY)]),  # probes start failing here
        (T0 + 200, [od("a", ReplicaState.NOT_READY)]),  # 140 s: under the 180 s threshold
        (T0 + 241, [od("a", ReplicaState.NOT_READY)]),  # 181 s
    ]
    _, failing, under, over = run(POLICIES[name], spec, ticks)
    assert failing.terminations == () and failing.launches == ()
    assert under.terminations == () and under.launches == ()
    assert [t.replica_id for t in over.terminations] == ["a"]
    assert len(over.launches) == 1 and over.launches[0].market is Market.ON_DEMAND
    assert "a" not in over.lb_members
    assert any("FAILED_PROBING" in r for r in over.reasons)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_every_policy_terminates_a_failed_replica_and_keeps_it_out_of_the_lb(name: str) -> None:
    spec = on_demand_spec(replicas=1, threshold=30)
    ticks = [
        (T0 + 30, [od("a", ReplicaState.READY)]),
        (T0 + 40, [od("a", ReplicaState.NOT_READY)]),
        (T0 + 70, [od("a", ReplicaState.NOT_READY)]),
    ]
    last = run(POLICIES[name], spec, ticks)[-1]
    assert "a" in {t.replica_id for t in last.terminations}
    assert "a" not in last.lb_members


def test_probes_that_recover_before_the_threshold_reset_the_clock() -> None:
    spec = on_demand_spec(replicas=1, threshold=60)
    ticks = [
        (T0 + 30, [od("a", ReplicaState.READY)]),
        (T0 + 40, [od("a", ReplicaState.NOT_READY)]),
        (T0 + 90, [od("a", ReplicaState.READY)]),  # back before 60 s
        (T0 + 100, [od("a", ReplicaState.NOT_READY)]),
        (T0 + 150, [od("a", ReplicaState.NOT_READY)]),  # 50 s since the new failure
    ]
    decisions = run(hedgeform, spec, ticks)
    assert all(d.terminations == () for d in decisions)
    assert decisions[-1].memory.failing_since == {"a": T0 + 100}


def test_never_ready_past_the_initial_delay_is_failed_initial_delay() -> None:
    spec = on_demand_spec(replicas=1, initial_delay=10)
    starting = run(hedgeform, spec, [(T0 + 9, [od("a", ReplicaState.STARTING)])])[0]
    assert starting.terminations == ()
    failed = run(hedgeform, spec, [(T0 + 10, [od("a", ReplicaState.NOT_READY)])])[0]
    assert [t.reason for t in failed.terminations] == ["clean up FAILED_INITIAL_DELAY"]
    assert len(failed.launches) == 1
    assert failed.memory.failed == {"a": "FAILED_INITIAL_DELAY"}


def test_a_verdict_is_sticky_until_the_replica_is_gone() -> None:
    spec = on_demand_spec(replicas=1, initial_delay=10)
    memory = Memory(failed={"a": "FAILED_PROBING"})
    d = hedgeform(spec, observe(od("a", ReplicaState.READY)), Signals(), memory, T0 + 20)
    assert "a" not in d.lb_members and [t.replica_id for t in d.terminations] == ["a"]
    gone = hedgeform(spec, observe(), Signals(), d.memory, T0 + 30)
    assert gone.memory.failed == {}


def test_pending_and_provisioning_replicas_are_not_judged_by_probes() -> None:
    spec = on_demand_spec(replicas=1, initial_delay=10)
    d = hedgeform(spec, observe(od("a", ReplicaState.PROVISIONING)), Signals(), Memory(), T0 + 99)
    assert d.terminations == ()


def test_a_replacement_failing_the_same_way_backs_off_in_that_zone_and_market() -> None:
    spec = on_demand_spec(replicas=1, initial_delay=10)
    zones = ("za-1a",)
    first = hedgeform(
        spec, observe(od("a", ReplicaState.NOT_READY), zones=zones), Signals(), Memory(), T0 + 10
    )
    (launch,) = first.launches  # one failure is not a loop: replaced at once
    second_at = T0 + 25
    replacement = od(launch.replica_id, ReplicaState.NOT_READY, at=T0 + 11)
    again = hedgeform(spec, observe(replacement, zones=zones), Signals(), first.memory, second_at)
    assert [t.replica_id for t in again.terminations] == [launch.replica_id]
    assert again.launches == ()  # the only on-demand zone waits out the backoff
    assert any("crash loop in za-1a (on_demand): 2 replicas" in r for r in again.reasons)
    backoff = again.memory.crash_backoff["za-1a/on_demand"]
    assert backoff.count == 2 and backoff.retry_at == second_at + crash_delay(2)
    later = hedgeform(spec, observe(zones=zones), Signals(), again.memory, backoff.retry_at)
    assert len(later.launches) == 1


def test_a_crash_loop_in_one_zone_sends_the_replacement_to_another() -> None:
    spec = on_demand_spec(replicas=1, initial_delay=10)
    memory = Memory(crash_backoff={})
    first = hedgeform(spec, observe(od("a", ReplicaState.NOT_READY)), Signals(), memory, T0 + 10)
    zone = first.launches[0].zone
    failing = od(first.launches[0].replica_id, ReplicaState.NOT_READY, zone=zone, at=T0 + 10)
    again = hedgeform(spec, observe(failing), Signals(), first.memory, T0 + 21)
    assert len(again.launches) == 1 and again.launches[0].zone != zone


def test_replicas_failing_together_count_as_one_event() -> None:
    spec = on_demand_spec(replicas=2, initial_delay=10)
    both = [od("a", ReplicaState.NOT_READY), od("b", ReplicaState.NOT_READY)]
    d = hedgeform(spec, observe(*both, zones=("za-1a",)), Signals(), Memory(), T0 + 10)
    assert {t.replica_id for t in d.terminations} == {"a", "b"}
    assert len(d.launches) == 2  # both replaced at once: no crash loop yet
    assert d.memory.crash_backoff["za-1a/on_demand"].count == 1


def test_crash_delay_doubles_from_the_second_failure_and_is_capped() -> None:
    assert [crash_delay(n) for n in (1, 2, 3, 4)] == [0.0, 10.0, 20.0, 40.0]
    assert crash_delay(50) == 300.0
    assert crash_delay(10**300) == 300.0  # no float overflow, whatever memory held


def test_spothedge_replaces_failed_replicas_but_has_no_crash_backoff() -> None:
    spec = on_demand_spec(replicas=1, initial_delay=10)
    memory = Memory(failed={}, crash_backoff={})
    first = spothedge(
        spec, observe(od("a", ReplicaState.NOT_READY), zones=("za-1a",)), Signals(), memory, T0 + 10
    )
    rid = first.launches[0].replica_id
    again = spothedge(
        spec,
        observe(od(rid, ReplicaState.NOT_READY, at=T0 + 11), zones=("za-1a",)),
        Signals(),
        first.memory,
        T0 + 25,
    )
    assert len(again.launches) == 1  # SkyServe relaunches at once


def test_judge_forgets_replicas_that_are_gone() -> None:
    probe = ReadinessProbe(initial_delay_seconds=10, consecutive_failure_threshold_timeout=60)
    memory = Memory(ready_once=frozenset({"a", "gone"}), failing_since={"gone": 1.0})
    judged = judge(probe, (od("a", ReplicaState.READY),), memory, T0)
    assert judged.memory.ready_once == frozenset({"a"})
    assert judged.memory.failing_since == {}


def test_an_incomplete_observation_judges_nothing() -> None:
    spec = on_demand_spec(replicas=1, initial_delay=10)
    observed = Observation(observe(od("a", ReplicaState.NOT_READY)).replicas, (), complete=False)
    d = hedgeform(spec, observed, Signals(), Memory(), T0 + 999)
    assert d.held and d.terminations == () and d.memory.failed == {}


def test_the_spec_default_threshold_is_skyserves() -> None:
    assert ReadinessProbe().consecutive_failure_threshold_timeout == 180
    assert ServiceSection().readiness_probe.initial_delay_seconds == 1200


@pytest.mark.parametrize(
    "field",
    [
        {"failed": {"r-1": "BOGUS"}},
        {"failed": {"r-1": 5}},
        {"crash_backoff": {"nozone": ["FAILED_PROBING", 2, 0, 10]}},
        {"crash_backoff": {"z/ondemand": ["FAILED_PROBING", 2, 0, 10]}},
        {"crash_backoff": {"z/spot": ["FAILED_PROBING", 2, 0, 1e300]}},
        {"zone_backoff": {"z": ["capacity", 1, 0, float("inf")]}},
        {"zone_backoff": {"z": ["capacity", 0, 0, 10]}},
        {"failing_since": {"r-1": float("nan")}},
        {"failing_since": {"r-1": -1e308}},
        {"crash_backoff": {"z/spot": ["FAILED_PROBING", float("inf"), 0, 10]}},
        {"crash_backoff": {"z/spot": ["FAILED_PROBING", 1e300, 0, 10]}},
        {"launch_seq": float("inf")},
        {"target": float("inf")},
        # found by the user-eye check: status printed "target: -5" and "target: 10**30"
        {"target": -5},
        {"target": 10**30},
        {"target": 1.5},
        {"target": True},
        {"launch_seq": 10**60},
        {"launch_seq": -3},
    ],
)
def test_memory_with_impossible_lifecycle_values_is_refused(field: dict[str, object]) -> None:
    """An edited reconciler.json used to load and then crash apply (ValueError traceback) or
    keep a zone blocked forever; it is refused in one line instead."""
    from reconciler.errors import MemoryFormatError

    raw = {**Memory().to_json(), **field}
    with pytest.raises(MemoryFormatError, match="malformed memory"):
        Memory.from_json(raw)
