"""Target replica count from the request rate, with SkyServe's hysteresis.

`raw = ceil(qps / target_qps_per_replica)` clamped to [min, max]; the target follows `raw` only
after the load has asked for it continuously for `upscale_delay_seconds` (up) or
`downscale_delay_seconds` (down). From zero it follows at once. Missing or stale metrics hold the
current target: no decision is made on a signal we did not see.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from reconciler.policy.memory import Memory
from reconciler.policy.signals import Signals
from reconciler.spec.model import ReplicaPolicy

QPS_WINDOW_SECONDS = 60
METRICS_STALE_AFTER_SECONDS = 180.0


@dataclass(frozen=True, slots=True)
class TargetStep:
    target: int
    upscale_since: float | None
    downscale_since: float | None
    reason: str


def raw_target(policy: ReplicaPolicy, qps: float) -> int:
    assert policy.target_qps_per_replica is not None
    ratio = qps / policy.target_qps_per_replica - 1e-9
    if not math.isfinite(ratio) or ratio >= policy.upper:  # also a ratio too large for an int
        return max(policy.min_replicas, policy.upper)
    return max(policy.min_replicas, min(policy.upper, math.ceil(ratio)))


def metrics_fresh(signals: Signals, now: float) -> bool:
    if signals.qps is None:
        return False
    return signals.qps_at is None or now - signals.qps_at <= METRICS_STALE_AFTER_SECONDS


def next_target(policy: ReplicaPolicy, signals: Signals, memory: Memory, now: float) -> TargetStep:
    current = memory.target if memory.target is not None else policy.min_replicas
    current = max(policy.min_replicas, min(policy.upper, current))
    if policy.target_qps_per_replica is None:
        return TargetStep(current, None, None, "fixed size")
    if not metrics_fresh(signals, now):
        return TargetStep(current, None, None, "metrics missing or stale: holding target")
    assert signals.qps is not None
    raw = raw_target(policy, signals.qps)
    if current == 0 and raw > 0:
        return TargetStep(raw, None, None, f"scale from zero to {raw} at once")
    if raw > current:
        since = memory.upscale_since if memory.upscale_since is not None else now
        if now - since >= policy.upscale_delay_seconds:
            return TargetStep(raw, None, None, f"load {signals.qps:.1f} qps: up to {raw}")
        return TargetStep(current, since, None, f"load asks for {raw}; waiting upscale delay")
    if raw < current:
        since = memory.downscale_since if memory.downscale_since is not None else now
        if now - since >= policy.downscale_delay_seconds:
            return TargetStep(raw, None, None, f"load {signals.qps:.1f} qps: down to {raw}")
        return TargetStep(current, None, since, f"load asks for {raw}; waiting downscale delay")
    return TargetStep(current, None, None, "steady")
