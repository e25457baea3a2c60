"""The backtest's baseline policies keep their defining counts and placements."""

from __future__ import annotations

from reconciler.policy import (
    LaunchResult,
    Market,
    Memory,
    Signals,
    even_spread,
    ondemand,
    round_robin,
    static,
)
from tests.policy.builders import ZONES, make_spec, observe, spot

NOW = 100.0


def test_ondemand_runs_the_target_on_demand_only() -> None:
    d = ondemand(make_spec(min_replicas=3), observe(spot("s", "za-1a")), Signals(), Memory(), NOW)
    assert d.count(Market.ON_DEMAND) == 3 and d.count(Market.SPOT) == 0


def test_round_robin_rotates_whatever_happened() -> None:
    spec = make_spec(min_replicas=5, overprovision=1)
    d = round_robin(spec, observe(), Signals(), Memory(), NOW)
    zones = [launch.zone for launch in d.launches]
    assert zones == [ZONES[i % 3] for i in range(6)]
    assert d.count(Market.ON_DEMAND) == 0


def test_even_spread_balances_and_skips_a_zone_that_just_failed() -> None:
    spec = make_spec(min_replicas=3, overprovision=0)
    failed = LaunchResult("za-1a", Market.SPOT, ok=False)
    d = even_spread(spec, observe(), Signals(launch_results=(failed,)), Memory(), NOW)
    assert sorted(launch.zone for launch in d.launches) == ["za-1b", "zb-1a", "zb-1a"] or sorted(
        launch.zone for launch in d.launches
    ) == ["za-1b", "za-1b", "zb-1a"]
    assert all(launch.zone != "za-1a" for launch in d.launches)


def test_static_keeps_one_on_demand_base_and_no_fallback() -> None:
    spec = make_spec(min_replicas=3, overprovision=1)
    d = static(spec, observe(), Signals(), Memory(), NOW)
    assert d.count(Market.ON_DEMAND) == 1 and d.count(Market.SPOT) == 3
    # spot gone: still one on-demand, no dynamic cover
    d2 = static(spec, observe(), Signals(), d.memory, NOW + 30)
    assert d2.count(Market.ON_DEMAND) == 1
