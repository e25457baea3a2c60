"""Builders for policy inputs, so each test states only what matters to it."""

from __future__ import annotations

from collections.abc import Iterable

from reconciler.policy import Market, Observation, Replica, ReplicaState, ZoneOffer
from reconciler.spec.model import (
    ReadinessProbe,
    ReplicaPolicy,
    Resources,
    ServiceSection,
    ServiceSpec,
)

ZONES = ("za-1a", "za-1b", "zb-1a")


def offers(zones: Iterable[str] = ZONES, spot_price: float = 1.0) -> tuple[ZoneOffer, ...]:
    return tuple(ZoneOffer(z, z[:-1], "aws", spot_price, 3.0) for z in zones)


def make_spec(
    *,
    min_replicas: int = 3,
    max_replicas: int | None = None,
    target_qps: float | None = None,
    overprovision: int = 1,
    base_od: int = 0,
    dynamic: bool = True,
    use_spot: bool = True,
    up: int = 300,
    down: int = 1200,
    initial_delay: int = 86_400,
    failure_threshold: int = 180,
) -> ServiceSpec:
    """A spec for policy tests. `initial_delay` defaults to a day so that replicas these tests
    build as STARTING stay starting; the lifecycle tests set it (policy/lifecycle.py)."""
    rp = ReplicaPolicy(
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        target_qps_per_replica=target_qps,
        upscale_delay_seconds=up,
        downscale_delay_seconds=down,
        num_overprovision=overprovision,
        base_ondemand_fallback_replicas=base_od,
        dynamic_ondemand_fallback=dynamic,
        spot_placer="dynamic_fallback" if use_spot else None,
    )
    probe = ReadinessProbe(
        initial_delay_seconds=initial_delay,
        consecutive_failure_threshold_timeout=failure_threshold,
    )
    section = ServiceSection(readiness_probe=probe, replica_policy=rp)
    return ServiceSpec("svc", section, Resources(use_spot=use_spot))


def spot(rid: str, zone: str, ready: bool = True, at: float = 0.0) -> Replica:
    state = ReplicaState.READY if ready else ReplicaState.STARTING
    return Replica(rid, zone, Market.SPOT, state, at)


def od(rid: str, zone: str = "za-1a", ready: bool = True, at: float = 0.0) -> Replica:
    state = ReplicaState.READY if ready else ReplicaState.STARTING
    return Replica(rid, zone, Market.ON_DEMAND, state, at)


def observe(*replicas: Replica, zones: Iterable[str] = ZONES) -> Observation:
    return Observation(tuple(replicas), offers(zones))
