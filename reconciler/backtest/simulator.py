"""Replay a spot trace through a policy, tick by tick, with the paper's simulator semantics.

Per 30 s tick t: (1) spot replicas beyond a zone's capacity are preempted (those already warned
first, then the newest); (2) replicas launched `cold_ticks` ago become READY; (3) replicas that
will be preempted within the warning lead time get a WARNING notice; (4) availability is scored
(READY replicas >= target, from the first cold start on); (5) the policy decides; (6) its
terminations and launches apply - a spot launch succeeds only while the zone has capacity left,
on-demand always; (7) every replica alive now costs one tick (spot 1, on-demand 3).

The policy sees only what a live reconciler would: replicas and their states, notices, launch
outcomes and the request rate. It never sees the trace.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from reconciler.policy import (
    FailureKind,
    LaunchResult,
    Market,
    Memory,
    Notice,
    NoticeKind,
    Observation,
    PolicyFn,
    Replica,
    ReplicaState,
    Signals,
    ZoneOffer,
)
from reconciler.spec.model import ServiceSpec

SPOT_COST = 1.0
ON_DEMAND_COST = 3.0


@dataclass(frozen=True)
class WindowResult:
    cost_units: float
    baseline_units: float  # what on-demand-only serving of the same targets would cost
    scored_ticks: int
    available_ticks: int
    preemptions: int
    spot_launches: int
    od_launches: int
    failed_launches: int
    ready_spot: np.ndarray = field(repr=False)
    ready_od: np.ndarray = field(repr=False)
    targets: np.ndarray = field(repr=False)

    @property
    def cost_pct(self) -> float:
        return 100.0 * self.cost_units / self.baseline_units if self.baseline_units else 0.0

    @property
    def availability_pct(self) -> float:
        return 100.0 * self.available_ticks / self.scored_ticks if self.scored_ticks else 100.0


@dataclass
class _SimReplica:
    replica: Replica
    launched_tick: int
    warned: bool = False


def zone_offers(zones: Sequence[str], cloud: str = "sim") -> tuple[ZoneOffer, ...]:
    """Every zone offers spot at 1 and on-demand at 3, as in the paper's simulator."""
    return tuple(ZoneOffer(z, z.rsplit("-", 1)[0], cloud, SPOT_COST, ON_DEMAND_COST) for z in zones)


def simulate_window(
    policy: PolicyFn,
    spec: ServiceSpec,
    zones: Sequence[str],
    capacity: np.ndarray,
    *,
    cold_ticks: int,
    tick_seconds: int = 30,
    warning_ticks: int = 0,
    qps: np.ndarray | None = None,
) -> WindowResult:
    """Run one window. `capacity` is (zones x ticks); `qps`, if given, is per tick."""
    n_zones, ticks = capacity.shape
    offers = zone_offers(zones)
    zone_index = {z: i for i, z in enumerate(zones)}
    cap = capacity.tolist()  # python ints: much faster to index than numpy scalars
    qps_list = qps.tolist() if qps is not None else None
    replicas: dict[str, _SimReplica] = {}
    spot_in_zone = [0] * n_zones
    memory = Memory()
    launch_results: tuple[LaunchResult, ...] = ()
    observation: Observation | None = None
    ready_spot = np.zeros(ticks, dtype=np.int32)
    ready_od = np.zeros(ticks, dtype=np.int32)
    targets = np.zeros(ticks, dtype=np.int32)
    cost = baseline = 0.0
    scored = available = preemptions = spot_launches = od_launches = failed = 0
    target = spec.service.replica_policy.min_replicas

    for t in range(ticks):
        now = float(t * tick_seconds)
        notices: list[Notice] = []
        # (1) preemptions
        for zi in range(n_zones):
            over = spot_in_zone[zi] - cap[zi][t]
            if over > 0:
                for sim in _preemption_order(replicas, zones[zi])[:over]:
                    del replicas[sim.replica.id]
                    notices.append(
                        Notice(NoticeKind.PREEMPTED, sim.replica.id, sim.replica.zone, now)
                    )
                spot_in_zone[zi] -= over
                preemptions += over
                observation = None
        # (2) cold starts complete
        for sim in replicas.values():
            r = sim.replica
            if r.state is ReplicaState.STARTING and t - sim.launched_tick >= cold_ticks:
                sim.replica = Replica(r.id, r.zone, r.market, ReplicaState.READY, r.launched_at)
                observation = None
        # (3) advance warnings for replicas the trace will take within the lead time
        if warning_ticks:
            for zi in range(n_zones):
                if not spot_in_zone[zi]:
                    continue
                horizon = cap[zi][t + 1 : t + 1 + warning_ticks]
                if not horizon:
                    continue
                doomed = spot_in_zone[zi] - min(horizon)
                if doomed <= 0:
                    continue
                for sim in _preemption_order(replicas, zones[zi])[:doomed]:
                    if not sim.warned:
                        sim.warned = True
                        notices.append(
                            Notice(NoticeKind.WARNING, sim.replica.id, sim.replica.zone, now)
                        )
        # (4) score
        n_spot = n_od = 0
        for sim in replicas.values():
            if sim.replica.state is ReplicaState.READY:
                if sim.replica.market is Market.SPOT:
                    n_spot += 1
                else:
                    n_od += 1
        ready_spot[t] = n_spot
        ready_od[t] = n_od
        # (5) decide
        if observation is None:
            observation = Observation(tuple(s.replica for s in replicas.values()), offers)
        signals = Signals(
            qps=qps_list[t] if qps_list is not None else None,
            qps_at=now,
            notices=tuple(notices),
            launch_results=launch_results,
        )
        decision = policy(spec, observation, signals, memory, now)
        memory = decision.memory
        target = decision.target
        targets[t] = target
        if t >= cold_ticks:
            scored += 1
            available += n_spot + n_od >= target
        # (6) apply
        results: list[LaunchResult] = []
        for term in decision.terminations:
            gone = replicas.pop(term.replica_id, None)
            if gone is not None and gone.replica.market is Market.SPOT:
                spot_in_zone[zone_index[gone.replica.zone]] -= 1
            observation = None
        for launch in decision.launches:
            if launch.market is Market.SPOT:
                zi = zone_index[launch.zone]
                if spot_in_zone[zi] >= cap[zi][t]:
                    failed += 1
                    results.append(
                        LaunchResult(
                            launch.zone,
                            Market.SPOT,
                            ok=False,
                            failure=FailureKind.CAPACITY,
                            message="InsufficientInstanceCapacity",
                        )
                    )
                    continue
                spot_in_zone[zi] += 1
                spot_launches += 1
            else:
                od_launches += 1
            results.append(LaunchResult(launch.zone, launch.market, ok=True))
            replicas[launch.replica_id] = _SimReplica(
                Replica(launch.replica_id, launch.zone, launch.market, ReplicaState.STARTING, now),
                t,
            )
            observation = None
        launch_results = tuple(results)
        # (7) cost
        for sim in replicas.values():
            cost += SPOT_COST if sim.replica.market is Market.SPOT else ON_DEMAND_COST
        baseline += ON_DEMAND_COST * target

    return WindowResult(
        cost_units=cost,
        baseline_units=baseline,
        scored_ticks=scored,
        available_ticks=available,
        preemptions=preemptions,
        spot_launches=spot_launches,
        od_launches=od_launches,
        failed_launches=failed,
        ready_spot=ready_spot,
        ready_od=ready_od,
        targets=targets,
    )


def _preemption_order(replicas: dict[str, _SimReplica], zone: str) -> list[_SimReplica]:
    """Who the cloud takes first in a zone: replicas already warned, then the newest."""
    in_zone = [
        s for s in replicas.values() if s.replica.market is Market.SPOT and s.replica.zone == zone
    ]
    in_zone.sort(key=lambda s: (not s.warned, -s.launched_tick, s.replica.id))
    return in_zone
