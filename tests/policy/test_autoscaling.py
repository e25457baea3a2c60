"""The autoscaler: raw target, hysteresis delays, from zero at once, hold on stale metrics."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.policy import Memory, Signals
from reconciler.policy.autoscaling import METRICS_STALE_AFTER_SECONDS, next_target, raw_target
from reconciler.spec.model import ReplicaPolicy

RP = ReplicaPolicy(
    min_replicas=1,
    max_replicas=6,
    target_qps_per_replica=10,
    upscale_delay_seconds=300,
    downscale_delay_seconds=1200,
)


@pytest.mark.parametrize(
    ("qps", "raw"), [(0, 1), (10, 1), (10.5, 2), (30, 3), (59.9, 6), (1000, 6)]
)
def test_raw_target_is_ceil_of_qps_over_target_clamped(qps: float, raw: int) -> None:
    step = next_target(RP, Signals(qps=qps, qps_at=0), Memory(target=raw), 0)
    assert step.target == raw and step.reason == "steady"


def test_upscale_waits_for_the_delay_of_consistent_signal() -> None:
    memory = Memory(target=2)
    t = 0.0
    while t < 300:
        step = next_target(RP, Signals(qps=45, qps_at=t), memory, t)
        assert step.target == 2
        memory = Memory(target=step.target, upscale_since=step.upscale_since)
        t += 30
    step = next_target(RP, Signals(qps=45, qps_at=t), memory, t)
    assert step.target == 5


def test_an_interruption_restarts_the_upscale_delay() -> None:
    step = next_target(RP, Signals(qps=45, qps_at=0), Memory(target=2), 0)
    assert step.upscale_since == 0
    calm = next_target(RP, Signals(qps=15, qps_at=200), Memory(target=2, upscale_since=0), 200)
    assert calm.upscale_since is None
    again = next_target(RP, Signals(qps=45, qps_at=310), Memory(target=2), 310)
    assert again.target == 2 and again.upscale_since == 310


def test_downscale_uses_its_own_longer_delay() -> None:
    mem = Memory(target=5, downscale_since=0)
    assert next_target(RP, Signals(qps=5, qps_at=1199), mem, 1199).target == 5
    assert next_target(RP, Signals(qps=5, qps_at=1200), mem, 1200).target == 1


def test_from_zero_scales_at_once() -> None:
    rp = ReplicaPolicy(min_replicas=0, max_replicas=4, target_qps_per_replica=10)
    assert next_target(rp, Signals(qps=25, qps_at=0), Memory(target=0), 0).target == 3


@pytest.mark.parametrize(
    "signals",
    [Signals(), Signals(qps=100, qps_at=1000 - METRICS_STALE_AFTER_SECONDS - 1)],
    ids=["missing", "stale"],
)
def test_missing_or_stale_metrics_hold_the_target(signals: Signals) -> None:
    step = next_target(RP, signals, Memory(target=4, downscale_since=0), 1000)
    assert step.target == 4
    assert step.downscale_since is None  # no delay accrues on a signal we did not see


def test_fixed_size_without_target_qps_is_min_replicas() -> None:
    rp = ReplicaPolicy(min_replicas=3)
    assert next_target(rp, Signals(qps=1000, qps_at=0), Memory(), 0).target == 3


@given(
    target=st.floats(min_value=1e-320, max_value=1e6, allow_nan=False),
    qps=st.floats(min_value=0, max_value=1e308, allow_nan=False),
    lower=st.integers(0, 10),
    extra=st.integers(0, 1000),
)
def test_the_raw_target_stays_in_bounds_for_any_rate_and_target(
    target: float, qps: float, lower: int, extra: int
) -> None:
    """Issue 9: a target of 1e-320 requests/s made qps / target infinite and math.ceil
    raise OverflowError on every tick; whatever the spec and the load, the target is a
    replica count between the bounds."""
    policy = ReplicaPolicy(
        min_replicas=lower, max_replicas=lower + extra, target_qps_per_replica=target
    )
    assert lower <= raw_target(policy, qps) <= lower + extra
