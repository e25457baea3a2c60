"""Per-zone spot retry delays after capacity refusals."""

from __future__ import annotations

from reconciler.policy import (
    FailureKind,
    LaunchResult,
    Market,
    Memory,
    Signals,
    hedgeform,
    spothedge,
)
from reconciler.policy.capacity_backoff import (
    CAPACITY_RETRY_BASE_S,
    CAPACITY_RETRY_CAP_S,
    capacity_delay,
    update_zone_backoff,
)
from reconciler.policy.memory import Backoff
from tests.policy.builders import make_spec, observe

NOW = 100_000.0


def refused(zone: str) -> LaunchResult:
    return LaunchResult(zone, Market.SPOT, False, FailureKind.CAPACITY, "no capacity")


def test_delays_double_with_equal_jitter_and_are_capped() -> None:
    for count in range(1, 12):
        full = min(CAPACITY_RETRY_CAP_S, CAPACITY_RETRY_BASE_S * 2 ** (count - 1))
        for seed in range(20):
            assert full / 2 <= capacity_delay("za-1a", count, seed) < full
    assert capacity_delay("za-1a", 30, 0) < CAPACITY_RETRY_CAP_S
    assert capacity_delay("za-1a", 10**300, 0) < CAPACITY_RETRY_CAP_S  # no float overflow
    spread = {round(capacity_delay("za-1a", 3, seed), 3) for seed in range(20)}
    assert len(spread) > 10  # jittered, yet a pure function of its inputs
    assert capacity_delay("za-1a", 3, 7) == capacity_delay("za-1a", 3, 7)


def test_a_refusal_counts_once_per_zone_and_apply_and_a_success_clears_it() -> None:
    table = update_zone_backoff({}, [refused("za-1a"), refused("za-1a")], NOW, 0)
    assert table["za-1a"].count == 1
    table = update_zone_backoff(table, [refused("za-1a")], NOW + 100, 0)
    assert table["za-1a"].count == 2
    ok = LaunchResult("za-1a", Market.SPOT, True)
    assert update_zone_backoff(table, [ok], NOW + 200, 0) == {}


def test_on_demand_results_do_not_touch_spot_backoff() -> None:
    od_fail = LaunchResult("za-1a", Market.ON_DEMAND, False, FailureKind.CAPACITY, "x")
    assert update_zone_backoff({}, [od_fail], NOW, 0) == {}


def test_a_backoff_is_forgotten_an_hour_after_the_last_refusal() -> None:
    table = {"za-1a": Backoff("capacity", 5, NOW, NOW + 300)}
    assert update_zone_backoff(table, [], NOW + 3599, 0) == table
    assert update_zone_backoff(table, [], NOW + 3600, 0) == {}


def test_a_refused_zone_is_not_asked_again_before_its_retry_time() -> None:
    """The issue's loop ran 24 refused spot launches in 18 s; each refusal now waits."""
    spec = make_spec(min_replicas=1, overprovision=0)
    first = hedgeform(spec, observe(), Signals(), Memory(), NOW)
    zones = {x.zone for x in first.launches if x.market is Market.SPOT}
    results = tuple(refused(z) for z in zones)
    memory = first.memory
    now = NOW + 5
    d = hedgeform(spec, observe(), Signals(launch_results=results), memory, now)
    spot_zones = {x.zone for x in d.launches if x.market is Market.SPOT}
    assert not spot_zones & zones
    for zone in zones:
        assert d.memory.zone_backoff[zone].retry_at >= now + CAPACITY_RETRY_BASE_S / 2


def test_when_every_zone_waits_no_spot_is_launched_and_on_demand_covers() -> None:
    spec = make_spec(min_replicas=2, overprovision=1)
    zones = ("za-1a", "za-1b", "zb-1a")
    results = tuple(refused(z) for z in zones)
    d = hedgeform(spec, observe(), Signals(launch_results=results), Memory(target=2), NOW)
    assert [x for x in d.launches if x.market is Market.SPOT] == []
    assert sum(1 for x in d.launches if x.market is Market.ON_DEMAND) == 2
    assert any("spot retry delayed" in r for r in d.reasons)


def test_spothedge_keeps_skyserves_retry_behaviour() -> None:
    spec = make_spec(min_replicas=2, overprovision=1)
    zones = ("za-1a", "za-1b", "zb-1a")
    results = tuple(refused(z) for z in zones)
    d = spothedge(spec, observe(), Signals(launch_results=results), Memory(target=2), NOW)
    assert sum(1 for x in d.launches if x.market is Market.SPOT) == 3
    assert d.memory.zone_backoff == {}


def test_the_backoff_survives_a_json_round_trip() -> None:
    memory = Memory(zone_backoff={"za-1a": Backoff("capacity", 2, NOW, NOW + 90.5)})
    assert Memory.from_json(memory.to_json()) == memory
