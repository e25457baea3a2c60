"""The default policy's changes over hedgeform_v1 (issue 14): queue placer, adaptive spare,
spare diversity, readiness-aware scale-down. Each test fails for the policy without it."""

from __future__ import annotations

import numpy as np
import pytest

from reconciler.backtest.runner import BacktestConfig, backtest_spec
from reconciler.backtest.simulator import NoticeModel, simulate_window
from reconciler.policy import (
    POLICIES,
    Market,
    Memory,
    Notice,
    NoticeKind,
    Replica,
    ReplicaState,
    Signals,
    ZoneStatus,
    hedgeform,
)
from reconciler.policy.changes import pick_keeping_spread, pick_ready_aware
from reconciler.policy.memory import Backoff
from reconciler.policy.placement import choose_spot_zone, update_status
from tests.policy.builders import ZONES, make_spec, observe, offers, spot

NOW = 10_000.0
A, P = ZoneStatus.ACTIVE, ZoneStatus.PREEMPTED


def _sim(policy: str, capacity: np.ndarray, *, target: int, warning: int, cold: int = 120):
    spec = backtest_spec(BacktestConfig(target=target, overprovision=1), None)
    zones = [f"a-1{c}" for c in "abcdefgh"[: capacity.shape[0]]]
    return simulate_window(
        POLICIES[policy], spec, zones, capacity, cold_start_s=cold,
        notices=NoticeModel(warning_s=warning), rng=np.random.default_rng(0),
    )  # fmt: skip


# -- the placer without the reset-all deadlock ---------------------------------------------------


def test_the_queue_placer_keeps_preempted_zones_preempted() -> None:
    status = update_status({"za-1a": P}, ZONES, ["za-1b"], [], reset=False)
    assert status == {"za-1a": P, "za-1b": P, "zb-1a": A}
    assert update_status({"za-1a": P}, ZONES, ["za-1b"], []) == dict.fromkeys(ZONES, A)


def test_a_preempted_zone_free_to_ask_is_used_while_every_active_zone_waits() -> None:
    status = {"za-1a": A, "za-1b": A, "zb-1a": P}
    waiting = {"za-1a", "za-1b"}  # both refused capacity a moment ago
    kw = {"spread_by_count": True, "waiting": waiting}
    assert choose_spot_zone(offers(), status, {"zb-1a": 2}, 0, **kw) is None  # hedgeform_v1
    assert choose_spot_zone(offers(), status, {"zb-1a": 2}, 0, queue=True, **kw) == "zb-1a"


def test_spothedges_placer_deadlock_runs_on_demand_where_spot_has_room() -> None:
    """Issue 14: SkyServe's reset-all rule keeps asking empty zones without capacity and never
    adds a replica to the one zone that has room (an AWS1 window ran 5 hours on on-demand
    while us-west-2c had 4 free slots)."""
    capacity = np.zeros((3, 600), dtype=int)
    capacity[2, :] = 4
    capacity[0:2, :100] = 2  # the other zones lose their capacity at tick 100
    stuck = _sim("spothedge", capacity, target=3, warning=120)
    fixed = _sim("hedgeform", capacity, target=3, warning=120)
    assert int(stuck.ready_od[200:].sum()) >= 300  # on-demand serving all along
    assert int(fixed.ready_od[200:].sum()) == 0  # all on spot in the zone with room
    assert fixed.cost_units < stuck.cost_units


# -- the adaptive spare --------------------------------------------------------------------------


def test_no_spare_where_the_documented_notice_covers_the_measured_cold_start() -> None:
    capacity = np.full((3, 400), 3)
    covered = _sim("hedgeform", capacity, target=3, warning=150)
    late = _sim("hedgeform", capacity, target=3, warning=30)
    always = _sim("hedgeform_v1", capacity, target=3, warning=150)
    # after the first cold start is measured (tick 4), only 3 replicas where notices cover it
    assert int(covered.ready_spot[20:].max()) == 3
    assert int(late.ready_spot[20:].min()) == 4  # the spare stays: 30 s cannot cover 120 s
    assert int(always.ready_spot[20:].min()) == 4
    assert covered.cost_units < always.cost_units


def test_a_preemption_with_a_late_notice_brings_the_spare_back() -> None:
    spec = make_spec(min_replicas=2, overprovision=1)
    replicas = (spot("a", "za-1a"), spot("b", "za-1b"))
    memory = Memory(target=2, cold_starts=(100.0,), ready_once=frozenset({"a", "b"}))
    quiet = hedgeform(spec, observe(*replicas), Signals(), memory, NOW)
    assert quiet.launches == ()  # aws's 120 s covers a 100 s cold start: no spare
    # c is reclaimed with only 20 s of warning: 80 s short, so the spare for 80 s / 0.001
    warned = Memory(**{**memory.__dict__, "warned": (("c", NOW - 20),)})
    gone = Signals(notices=(Notice(NoticeKind.PREEMPTED, "c", "zb-1a", NOW),))
    hit = hedgeform(spec, observe(*replicas), gone, warned, NOW)
    assert hit.memory.spare_until == pytest.approx(NOW + 80_000.0)
    assert [launch.market for launch in hit.launches] == [Market.SPOT]
    later = hedgeform(spec, observe(*replicas), Signals(), hit.memory, NOW + 80_001.0)
    assert later.launches == ()


def test_the_cold_start_is_measured_when_a_replica_is_first_seen_ready() -> None:
    spec = make_spec(min_replicas=1, overprovision=1, initial_delay=600)
    starting = Replica("a", "za-1a", Market.SPOT, ReplicaState.STARTING, NOW - 200)
    d = hedgeform(spec, observe(starting), Signals(), Memory(target=1), NOW - 10)
    assert d.memory.cold_start_s is None
    ready = Replica("a", "za-1a", Market.SPOT, ReplicaState.READY, NOW - 200)
    d = hedgeform(spec, observe(ready), Signals(), d.memory, NOW)
    assert d.memory.cold_starts == (200.0,)
    # a later fast start does not lower the cold start the spare is judged against
    fast = Replica("b", "za-1b", Market.SPOT, ReplicaState.READY, NOW + 20)
    d = hedgeform(spec, observe(ready, fast), Signals(), d.memory, NOW + 30)
    assert d.memory.cold_starts == (200.0, 10.0) and d.memory.cold_start_s == 200.0


def test_memory_keeps_the_spare_fields_and_reads_older_records() -> None:
    m = Memory(cold_starts=(95.5, 120.0), spare_until=12_345.0)
    assert Memory.from_json(m.to_json()) == m
    old = m.to_json()
    del old["cold_starts"], old["spare_until"]
    assert Memory.from_json(old).cold_start_s is None


# -- spare diversity -----------------------------------------------------------------------------


def test_a_spare_does_not_join_the_zone_that_alone_holds_the_target() -> None:
    spec = make_spec(min_replicas=1, overprovision=1)
    memory = Memory(target=1, ready_once=frozenset({"a"}))  # cold start unknown: spare wanted
    backoff = {z: Backoff("capacity", 1, NOW, NOW + 300) for z in ("za-1b", "zb-1a")}
    waiting = Memory(**{**memory.__dict__, "zone_backoff": backoff})
    d = hedgeform(spec, observe(spot("a", "za-1a")), Signals(), waiting, NOW)
    assert d.launches == ()  # the only zone free to ask holds the replica it would protect
    v1 = POLICIES["hedgeform_v1"](spec, observe(spot("a", "za-1a")), Signals(), waiting, NOW)
    assert [launch.zone for launch in v1.launches] == ["za-1a"]
    d = hedgeform(spec, observe(spot("a", "za-1a")), Signals(), memory, NOW)
    assert [launch.zone for launch in d.launches] in (["za-1b"], ["zb-1a"])


# -- readiness-aware scale-down ------------------------------------------------------------------


def test_scale_down_stops_starting_replicas_before_ready_ones_across_zones() -> None:
    replicas = [
        spot("a1", "za-1a", at=1),
        spot("a2", "za-1a", at=2),
        spot("b1", "za-1b", ready=False, at=3),
    ]
    assert [r.id for r in pick_ready_aware(replicas, 1)] == ["b1"]
    assert [r.id for r in pick_keeping_spread(replicas, 1)] == ["a2"]  # hedgeform_v1
    # among equals, the zone holding the most, newest first
    ready = [spot("a1", "za-1a", at=1), spot("a2", "za-1a", at=2), spot("b1", "za-1b", at=3)]
    assert [r.id for r in pick_ready_aware(ready, 2)] == ["a2", "b1"]


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("cold_starts", [-1.0], "cold_starts: -1.0 is not from 0 to 86400 s"),
        ("cold_starts", ["120"], "cold_starts: '120' is not a number"),
        ("cold_starts", [True], "cold_starts: True is not a number"),
        ("cold_starts", [float("inf")], "cold_starts: inf is not from 0"),
        ("cold_starts", 120, "cold_starts: expected a list of at most 5 numbers"),
        ("spare_until", -5, "spare_until: -5 is not a finite time since the epoch"),
        ("spare_until", 1e300, "spare_until: 1e\\+300 is not a finite time"),
        ("spare_until", "soon", "spare_until: 'soon' is not a number"),
        ("spare_until", float("nan"), "spare_until: nan is not a finite time"),
    ],
)
def test_a_malformed_spare_field_is_refused_naming_it(key: str, value: object, says: str) -> None:
    from reconciler.errors import MemoryFormatError

    with pytest.raises(MemoryFormatError, match=f"malformed memory: {says}"):
        Memory.from_json({**Memory().to_json(), key: value})
