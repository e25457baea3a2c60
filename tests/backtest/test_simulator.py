"""The simulator on tiny synthetic traces, checked against figures computed by hand."""

from __future__ import annotations

import numpy as np

from reconciler.backtest.runner import BacktestConfig, backtest_spec
from reconciler.backtest.simulator import simulate_window
from reconciler.policy import POLICIES


def test_hand_computed_spothedge_window() -> None:
    """target 1, no overprovisioning, cold start 1 tick, two zones; z-1b never has capacity.

    t0  launch spot z-1a (ok) + on-demand cover             cost 1+3  ready 0 (not scored)
    t1  both ready; cover no longer needed -> stop it       cost 1    ready 2  available
    t2  z-1a drops to 0: spot preempted; relaunch in z-1a
        fails (capacity); on-demand cover launched          cost 3    ready 0  unavailable
    t3  cover ready; spot retry z-1a fails again            cost 3    ready 1  available
    t4  retry rotates to z-1b: fails                        cost 3    ready 1  available
    t5  retry z-1a: capacity back, succeeds                 cost 3+1  ready 1  available
    """
    capacity = np.array([[1, 1, 0, 0, 1, 1], [0, 0, 0, 0, 0, 0]])
    spec = backtest_spec(BacktestConfig(target=1, overprovision=0), None)
    result = simulate_window(POLICIES["spothedge"], spec, ["z-1a", "z-1b"], capacity, cold_ticks=1)
    assert result.cost_units == 18
    assert result.baseline_units == 18
    assert result.cost_pct == 100.0
    assert result.scored_ticks == 5
    assert result.available_ticks == 4
    assert result.availability_pct == 80.0
    assert result.preemptions == 1
    assert result.spot_launches == 2
    assert result.od_launches == 2
    assert result.failed_launches == 3
    assert result.ready_spot.tolist() == [0, 1, 0, 0, 0, 0]
    assert result.ready_od.tolist() == [0, 1, 0, 1, 1, 1]


def test_plentiful_spot_costs_a_third_plus_the_overprovisioned_replica() -> None:
    ticks = 200
    capacity = np.full((3, ticks), 10)
    spec = backtest_spec(BacktestConfig(target=3, overprovision=1), None)
    result = simulate_window(
        POLICIES["hedgeform"], spec, ["a-1a", "a-1b", "b-1a"], capacity, cold_ticks=4
    )
    # 4 spot all along + 3 on-demand for the first 4 ticks (until spot is ready)
    assert result.cost_units == 4 * ticks + 3 * 3 * 4
    assert result.availability_pct == 100.0
    assert result.preemptions == 0


def test_warnings_let_hedgeform_cover_a_preemption_before_it_happens() -> None:
    """Capacity in one of three zones drops for an hour; with a 2-minute warning hedgeform
    brings cover in time, SkyServe's SpotHedge (which ignores warnings) does not."""
    ticks = 400
    capacity = np.full((3, ticks), 1)
    capacity[0, 200:320] = 0
    spec = backtest_spec(BacktestConfig(target=3, overprovision=0), None)
    zones = ["a-1a", "a-1b", "b-1a"]
    kw = {"cold_ticks": 4, "warning_ticks": 4}
    h = simulate_window(POLICIES["hedgeform"], spec, zones, capacity, **kw)  # type: ignore[arg-type]
    s = simulate_window(POLICIES["spothedge"], spec, zones, capacity, **kw)  # type: ignore[arg-type]
    assert h.availability_pct == 100.0
    assert s.availability_pct < 100.0
    assert s.scored_ticks - s.available_ticks == 4  # one cold start without enough replicas


def test_ondemand_costs_exactly_on_demand() -> None:
    capacity = np.zeros((2, 50), dtype=int)
    spec = backtest_spec(BacktestConfig(target=2), None)
    r = simulate_window(POLICIES["ondemand"], spec, ["a-1a", "b-1a"], capacity, cold_ticks=2)
    assert r.cost_pct == 100.0 and r.availability_pct == 100.0
