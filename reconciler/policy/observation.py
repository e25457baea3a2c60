"""What the reconciler observed: replicas with their state, and the zones it may place in.

Pure data. Adapters (Terraform state, cloud APIs, the sandbox, the backtest simulator) build it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Market(StrEnum):
    SPOT = "spot"
    ON_DEMAND = "on_demand"


class ReplicaState(StrEnum):
    PENDING = "PENDING"
    PROVISIONING = "PROVISIONING"
    STARTING = "STARTING"
    READY = "READY"
    NOT_READY = "NOT_READY"
    PREEMPTED = "PREEMPTED"
    FAILED = "FAILED"  # it ran, and died without a preemption (a crash, a stopped VM)
    FAILED_PROVISION = "FAILED_PROVISION"  # the launch itself failed (capacity, quota, config)
    # Decided by the policy (policy/lifecycle.py), never observed: SkyServe's names for a
    # replica that never passed readiness within `initial_delay_seconds`, and for one that was
    # READY and then failed its probes for `consecutive_failure_threshold_timeout`.
    FAILED_INITIAL_DELAY = "FAILED_INITIAL_DELAY"
    FAILED_PROBING = "FAILED_PROBING"
    SHUTTING_DOWN = "SHUTTING_DOWN"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset(
    {
        ReplicaState.PREEMPTED,
        ReplicaState.FAILED,
        ReplicaState.FAILED_PROVISION,
        ReplicaState.FAILED_INITIAL_DELAY,
        ReplicaState.FAILED_PROBING,
        ReplicaState.SHUTTING_DOWN,
    }
)

# Which replicas go first when scaling down: those furthest from serving (SkyServe's order).
SCALE_DOWN_ORDER: dict[ReplicaState, int] = {
    ReplicaState.PENDING: 0,
    ReplicaState.PROVISIONING: 1,
    ReplicaState.STARTING: 2,
    ReplicaState.NOT_READY: 3,
    ReplicaState.READY: 4,
}


@dataclass(frozen=True, slots=True)
class Replica:
    id: str
    zone: str
    market: Market
    state: ReplicaState
    launched_at: float
    version: int = 1  # the service version it runs (policy/rollout.py: Version.runs)

    @property
    def alive(self) -> bool:
        return not self.state.terminal

    @property
    def ready(self) -> bool:
        return self.state is ReplicaState.READY


@dataclass(frozen=True, slots=True)
class ZoneOffer:
    """A zone the service may run in, with hourly prices (relative units are fine)."""

    zone: str
    region: str
    cloud: str
    spot_price: float | None  # None: no spot offered here
    on_demand_price: float
    # Seconds of warning the cloud gives before it reclaims a spot replica here; None: the
    # cloud's documented lead (policy/spare_risk.py). The backtest sets its simulated one.
    notice_lead_s: float | None = None
    # The GPU type this place offers ("" when the service runs one type). With several types
    # each (zone, type) is its own *pool* with its own `zone` name (policy/mixed.py).
    accelerator: str = ""


@dataclass(frozen=True, slots=True)
class Observation:
    replicas: tuple[Replica, ...]
    zones: tuple[ZoneOffer, ...]
    # False when an adapter could not see everything (an API failed): the policy then holds.
    complete: bool = True
