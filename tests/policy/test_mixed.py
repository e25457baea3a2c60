"""`hedgeform_mix` (policy/mixed.py): several GPU types, a mix hedged per (zone, type) pool."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable

import pytest

from reconciler.errors import MemoryFormatError
from reconciler.policy import (
    Decision,
    Market,
    Memory,
    Notice,
    NoticeKind,
    Observation,
    Replica,
    ReplicaState,
    Signals,
    ZoneOffer,
    ZoneStatus,
)
from reconciler.policy.mixed import _falls_back, hedgeform_mix
from reconciler.policy.signals import FailureKind, LaunchResult
from reconciler.policy.spothedge import hedgeform
from reconciler.spec.model import (
    ReadinessProbe,
    ReplicaPolicy,
    Resources,
    ServiceSection,
    ServiceSpec,
)
from tests.policy.builders import make_spec, observe, spot

# Mélange's head example, size-oblivious (docs/mix.md): an A10G serves 2.5 req/s of its mix
# for $1.01/h, an A100-80GB 26.7 req/s for $3.67/h; spot at a third of on-demand.
SERVES = {"A10G": 2.5, "A100-80GB": 26.7}
OD = {"A10G": 1.01, "A100-80GB": 3.67}
POOLS = {
    "A10G": ("za-1a/A10G", "zb-1a/A10G"),
    "A100-80GB": ("za-1a/A100-80GB", "zb-1a/A100-80GB"),
}


def offers() -> tuple[ZoneOffer, ...]:
    return tuple(
        ZoneOffer(pool, pool[:4], "sim", OD[t] / 3, OD[t], accelerator=t)
        for t, pools in POOLS.items()
        for pool in pools
    )


def mixed_spec(units: int = 3, overprovision: int = 1) -> ServiceSpec:
    """A fixed capacity of `units` A10Gs' worth (7.5 req/s), per-type targets from SERVES."""
    rp = ReplicaPolicy(
        min_replicas=units,
        max_replicas=units,
        target_qps_per_accelerator=SERVES,
        num_overprovision=overprovision,
        dynamic_ondemand_fallback=True,
        spot_placer="dynamic_fallback",
    )
    probe = ReadinessProbe(initial_delay_seconds=86_400)
    return ServiceSpec("mix", ServiceSection(probe, rp), Resources(use_spot=True))


def obs(*replicas: Replica) -> Observation:
    return Observation(tuple(replicas), offers())


def types_of(decision: Decision, market: Market | None = None) -> dict[str, int]:
    found: dict[str, int] = {}
    for launch in decision.launches:
        if market is None or launch.market is market:
            t = launch.zone.split("/")[1]
            found[t] = found.get(t, 0) + 1
    return found


def step(
    spec: ServiceSpec,
    memory: Memory,
    now: float,
    replicas: Iterable[Replica] = (),
    signals: Signals | None = None,
) -> Decision:
    return hedgeform_mix(spec, obs(*replicas), signals or Signals(), memory, now)


def test_with_one_type_it_is_hedgeform() -> None:
    spec = make_spec(min_replicas=3, overprovision=1)
    seen = observe(spot("r-1", "za-1a"), spot("r-2", "za-1b", ready=False))
    signals = Signals(notices=(Notice(NoticeKind.WARNING, "r-1", "za-1a", 5.0),))
    assert hedgeform_mix(spec, seen, signals, Memory(), 10.0) == hedgeform(
        spec, seen, signals, Memory(), 10.0
    )


def test_a_fresh_service_runs_the_cheapest_mix_spread_over_its_pools() -> None:
    """7.5 req/s: three A10Gs at $0.34/h spot ($1.01/h) beat one A100-80GB ($1.22/h)."""
    d = step(mixed_spec(), Memory(), 0.0)
    assert types_of(d, Market.SPOT) == {"A10G": 4}  # three and the spare
    assert {launch.zone for launch in d.launches} == set(POOLS["A10G"])
    ids = [launch.replica_id for launch in d.launches]
    assert len(set(ids)) == len(ids)
    assert dict(d.memory.groups)["A10G"].target == 3
    assert dict(d.memory.groups)["A100-80GB"].target == 0
    # with the spare at the A10G's spot price (it is the largest type the mix runs)
    assert any(r.startswith("mix 3 × A10G + spare A10G ($1.35/h)") for r in d.reasons)


def running_a10g(now: float = 90.0) -> tuple[Memory, list[Replica]]:
    """The fresh service's four A10G spot replicas (three and the spare), all ready, after
    quiet ticks; the on-demand cover bought at the start is gone again."""
    spec = mixed_spec()
    first = step(spec, Memory(), 0.0)
    replicas = [
        Replica(x.replica_id, x.zone, x.market, ReplicaState.READY, 0.0)
        for x in first.launches
        if x.market is Market.SPOT
    ]
    assert len(replicas) == 4 and {r.zone for r in replicas} == set(POOLS["A10G"])
    memory = first.memory
    for t in (30.0, 60.0, now):
        d = step(spec, memory, t, replicas)
        assert not d.launches and not d.terminations, d.reasons
        memory = d.memory
    return memory, replicas


def test_when_a_types_spot_vanishes_the_mix_moves_and_the_old_type_serves_until_then() -> None:
    spec = mixed_spec()
    memory, replicas = running_a10g(90.0)
    # One replica preempted in each A10G pool: every pool is marked, but they still hold two.
    lost = list({r.zone: r for r in replicas}.values())
    assert {r.zone for r in lost} == set(POOLS["A10G"])
    kept = [r for r in replicas if r not in lost]
    notices = tuple(Notice(NoticeKind.PREEMPTED, r.id, r.zone, 100.0) for r in lost)
    d = step(spec, memory, 120.0, kept, Signals(notices=notices))
    groups = dict(d.memory.groups)
    assert all(groups["A10G"].zone_status[p] is ZoneStatus.PREEMPTED for p in POOLS["A10G"])
    # Spot for the two A10Gs its pools hold, on-demand for a third ($1.68/h): cheaper than
    # one A100-80GB and the spare that must stand in for it ($2.45/h). The mix stays.
    assert any(r.startswith("mix 3 × A10G ($1.68/h): what runs carries") for r in d.reasons)
    assert types_of(d, Market.ON_DEMAND) == {"A10G": 1}
    # Then those two go too, and the spot launches into the full pools are refused (gone):
    # A10G is on-demand only ($3.03/h), and the mix moves to the A100-80GB and its spare.
    cover = [
        Replica(x.replica_id, x.zone, x.market, ReplicaState.READY, 120.0)
        for x in d.launches
        if x.market is Market.ON_DEMAND
    ]
    notices = tuple(Notice(NoticeKind.PREEMPTED, r.id, r.zone, 140.0) for r in kept)
    d = step(spec, d.memory, 150.0, cover, Signals(notices=notices))
    assert any(
        r.startswith("mix 1 × A100-80GB + spare A100-80GB ($2.45/h): switch") for r in d.reasons
    )
    assert types_of(d, Market.SPOT)["A100-80GB"] == 2  # the one and the spare
    # The A10G still ready keeps serving while the A100-80GB starts: none is stopped.
    assert not d.terminations
    assert any(r.startswith("keeping 1 ready × A10G until the new mix carries") for r in d.reasons)
    # ...and nothing replaces it (its type's SpotHedge wanted spot for the on-demand one).
    assert types_of(d).get("A10G", 0) == 0
    # Once the A100-80GB is ready, the A10G stops.
    a100 = [
        Replica(x.replica_id, x.zone, x.market, ReplicaState.READY, 150.0)
        for x in d.launches
        if x.zone.endswith("/A100-80GB")
    ]
    later = step(spec, d.memory, 400.0, [*cover, *a100])
    stopped = {t.replica_id for t in later.terminations}
    assert {r.id for r in cover} <= stopped
    assert not any(t.zone.endswith("/A100-80GB") and t.market is Market.SPOT
                   for t in later.terminations)  # fmt: skip


def test_an_incoming_type_buys_no_on_demand_while_ready_spot_carries_the_rate() -> None:
    spec = mixed_spec()
    memory, replicas = running_a10g(90.0)
    d = step(spec, memory, 120.0, replicas)
    assert types_of(d, Market.ON_DEMAND) == {}


def a100_lost_without_warning() -> tuple[ServiceSpec, Decision]:
    """20 req/s (eight A10Gs' worth): one A100-80GB and its spare on spot, ready after a
    120 s cold start; then both are preempted without warning, so nothing ready is left and
    every A100-80GB pool is marked."""
    spec = mixed_spec(units=8)
    d = step(spec, Memory(), 0.0)
    assert types_of(d, Market.SPOT) == {"A100-80GB": 2}
    starting = [
        Replica(x.replica_id, x.zone, x.market, ReplicaState.STARTING, 0.0)
        for x in d.launches
        if x.market is Market.SPOT
    ]
    memory = step(spec, d.memory, 60.0, starting).memory
    ready = [dataclasses.replace(r, state=ReplicaState.READY) for r in starting]
    for t in (120.0, 150.0):
        d = step(spec, memory, t, ready)
        assert not d.launches and not d.terminations, d.reasons
        memory = d.memory
    notices = tuple(Notice(NoticeKind.PREEMPTED, r.id, r.zone, 200.0) for r in ready)
    return spec, step(spec, memory, 210.0, [], Signals(notices=notices))


def test_with_nothing_ready_a_switch_pays_for_the_on_demand_cover_it_starts() -> None:
    """Reproduction (backtest set A, 20 req/s, no warning): with nothing ready, a switch to
    eight A10Gs on spot ($3.03/h with the spare, against the A100-80GB on-demand at $3.67/h)
    also starts eight on-demand A10Gs beside them as cover while they start ($8.08/h), where
    staying starts one on-demand A100-80GB. Over a 120 s start that costs more than 1200 s of
    the saving: the mix stays (before: it switched, and came back minutes later)."""
    _, d = a100_lost_without_warning()
    assert any(r.startswith("mix 1 × A100-80GB ($3.67/h): what runs") for r in d.reasons)
    assert types_of(d).keys() == {"A100-80GB"}
    assert types_of(d, Market.ON_DEMAND) == {"A100-80GB": 1}


def test_a_spot_type_switching_in_buys_no_on_demand_while_the_old_type_serves() -> None:
    """Reproduction: once the on-demand A100-80GB is ready and carries the rate, the mix
    moves to eight A10Gs on spot; they start beside it with no on-demand cover of their own
    (before: eight on-demand A10Gs were bought too, since only ready *spot* counted)."""
    spec, d = a100_lost_without_warning()
    od = [
        Replica(x.replica_id, x.zone, x.market, ReplicaState.READY, 210.0)
        for x in d.launches
        if x.market is Market.ON_DEMAND
    ]
    refused = tuple(
        LaunchResult(x.zone, Market.SPOT, False, FailureKind.CAPACITY)
        for x in d.launches
        if x.market is Market.SPOT
    )
    d = step(spec, d.memory, 330.0, od, Signals(launch_results=refused))
    assert any(r.startswith("mix 8 × A10G + spare A10G ($3.03/h): switch") for r in d.reasons)
    assert types_of(d, Market.SPOT) == {"A10G": 9}
    assert types_of(d, Market.ON_DEMAND) == {}
    assert not d.terminations  # the A100-80GB serves until the A10Gs carry the rate


def test_a_warning_counts_at_once_for_the_on_demand_cover() -> None:
    """A replica warned in this tick's notices no longer counts as ready spot: its on-demand
    cover is bought now, a cold start before the preemption (before: only once the type's
    memory knew the warning, a tick later, with spot still counted as carrying the rate)."""
    spec = mixed_spec(overprovision=0)
    memory, replicas = running_a10g(90.0)
    three = replicas[:3]
    notice = Notice(NoticeKind.WARNING, three[0].id, three[0].zone, 110.0)
    d = step(spec, memory, 120.0, three, Signals(notices=(notice,)))
    assert types_of(d, Market.ON_DEMAND) == {"A10G": 1}
    assert types_of(d, Market.SPOT) == {"A10G": 1}


def test_memory_with_groups_round_trips_and_a_bad_group_is_refused() -> None:
    _, _ = running_a10g()
    d = step(mixed_spec(), Memory(), 0.0)
    raw = json.loads(json.dumps(d.memory.to_json()))
    assert Memory.from_json(raw) == d.memory
    assert "groups" not in Memory().to_json()  # one type: the record it always had
    bad = dict(raw, groups={"A10G": {"version": 3}})
    with pytest.raises(MemoryFormatError, match=r"groups\.A10G: malformed memory: missing"):
        Memory.from_json(bad)
    nested = dict(raw, groups={"A10G": dict(raw["groups"]["A10G"], groups={"x": {}})})
    with pytest.raises(MemoryFormatError, match="holds no groups"):
        Memory.from_json(nested)
    with pytest.raises(MemoryFormatError, match="is not a GPU type name"):
        Memory.from_json(dict(raw, groups={"../x": raw["groups"]["A10G"]}))


def test_replica_numbers_are_shared_across_types() -> None:
    d = step(mixed_spec(units=12), Memory(), 0.0)  # 30 req/s: A100-80GB
    later = step(mixed_spec(units=12), d.memory, 30.0)
    seqs = [x.replica_id for x in (*d.launches, *later.launches)]
    assert len(set(seqs)) == len(seqs)
    assert dataclasses.asdict(d.memory)["launch_seq"] == sum(1 for _ in d.launches)


def test_only_a_spot_type_switching_in_counts_a_draining_types_on_demand_as_cover() -> None:
    """Eight A10Gs (20 req/s) switch in at spot beside a draining A100-80GB whose on-demand
    replica carries the rate: the A10Gs buy no cover. An A100-80GB switching in at its
    on-demand price (its spot gone) buys the on-demand it was chosen for, and a draining
    type keeps SkyServe's rule (only ready spot counts)."""
    at_spot = {"A10G": True, "A100-80GB": False}
    carried = _falls_back(
        True, 20.0, spot_rps=0.0, kept_rps=26.7, at_spot=at_spot, holding={"A100-80GB"}
    )
    assert carried == {"A10G": False, "A100-80GB": True}
    back = _falls_back(True, 20.0, spot_rps=0.0, kept_rps=20.0, at_spot=at_spot, holding={"A10G"})
    assert back == {"A10G": True, "A100-80GB": True}
    # Ready spot that carries the rate: nobody falls back; the flag off: nobody ever does.
    assert not any(_falls_back(True, 20.0, spot_rps=20.0, kept_rps=0.0, at_spot=at_spot,
                               holding=set()).values())  # fmt: skip
    assert not any(_falls_back(False, 20.0, spot_rps=0.0, kept_rps=0.0, at_spot=at_spot,
                               holding=set()).values())  # fmt: skip
    # Kept on-demand short of the rate: the spot type covers too.
    short = _falls_back(
        True, 20.0, spot_rps=5.0, kept_rps=10.0, at_spot=at_spot, holding={"A100-80GB"}
    )
    assert short["A10G"]
