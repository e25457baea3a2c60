"""Replay a spot trace through a policy: exact times in seconds, scored on a grid of 30 s ticks.

Capacity. `capacity[z, t]` is the zone's trace value in force at tick t (time t * tick). Spot
replicas beyond it are preempted at that tick's time: those announced for this tick first,
then the newest. A spot launch succeeds only while the zone holds fewer than the value in
force when it is made; on-demand always succeeds.

Notices. Each potential preemption (the k-th replica over a zone's new value at tick t) is
announced `lead` seconds before it, at t * tick - lead (`NoticeModel`: perfect, every lead is
the warning; realistic, some come with no warning and the others a little late). At that time
the newest replica of the zone not yet announced is warned, if the zone holds more than the new
value allows; if it does not, the notice waits and is issued at the first decision where it
does (a replica launched after the notice went out), until the preemption time. A notice
between two ticks wakes the policy, as it wakes the live loop: one extra decision at that exact
time, whose launches start then.

Readiness. A replica launched at time s is READY at s + cold_start; the policy observes it READY
at its first decision at or after that time (never at the decision that launched it). Tick t's
availability counts only the replicas the policy had observed READY at a decision before tick t
and that are still alive at t (not preempted at t, not terminated before it).

Refused launches. A spot launch the zone cannot hold is seen by the policy as a STARTING replica
until `launch_failure_delay_s` has passed; at its first decision after that, the replica is gone
and a failed `LaunchResult` (FailureKind.CAPACITY) arrives. It costs nothing. Results of the
launches that succeeded arrive at the next decision.

Per tick t, in order: (1) preemptions at t; (2) score availability (from the first tick a
replica launched at 0 could count, `first_scored_tick`); (3) notices due at t; (4) the policy
decides with `now` = t * tick, and its terminations and launches apply; (5) notices due before
the next tick, each distinct time with one extra decision. Cost is exact: a replica costs its
price (spot 1, on-demand 3 per 30 s) from launch to preemption, termination or window end.

The policy sees only what a live reconciler would: replicas and their states, notices, launch
outcomes and the request rate. It never sees the trace.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from reconciler.policy import (
    Decision,
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
    warned_preemptions: int = 0  # preemptions whose replica had a notice first
    extra_decisions: int = 0  # decisions between ticks, woken by a notice
    # Under a request-rate workload, the raw need per tick (runner.demand); else None.
    demand: np.ndarray | None = field(default=None, repr=False)

    @property
    def cost_pct(self) -> float:
        return 100.0 * self.cost_units / self.baseline_units if self.baseline_units else 0.0

    @property
    def availability_pct(self) -> float:
        return 100.0 * self.available_ticks / self.scored_ticks if self.scored_ticks else 100.0


@dataclass(frozen=True)
class NoticeModel:
    """How the cloud announces preemptions.

    perfect (`realistic=False`): every preemption exactly `warning_s` ahead (0: none).
    realistic: each preemption independently comes with no warning with probability
    `unwarned_share`, else `warning_s - U(0, lead_jitter_s)` ahead.
    """

    warning_s: float = 0.0
    realistic: bool = False
    unwarned_share: float = 0.0
    lead_jitter_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Slot:
    """One potential preemption: the zone's k-th replica over its new value at `tick`,
    announced at `at` seconds."""

    at: float
    zone: int
    tick: int


def first_scored_tick(cold_start_s: float, tick_seconds: int) -> int:
    """The first tick a replica launched at time 0 can count: observed READY at tick
    max(1, ceil(cold / tick)), counted from the tick after."""
    return max(1, math.ceil(cold_start_s / tick_seconds)) + 1


def notice_schedule(
    capacity: np.ndarray,
    *,
    tick_seconds: int,
    notices: NoticeModel,
    rng: np.random.Generator | None = None,
) -> list[Slot]:
    """The announced potential preemptions of a window, in time order.

    One per unit a zone's value drops at a tick; unannounced ones (no warning, a lead of 0 or
    a notice time before the window) are left out. The realistic model draws two numbers per
    potential preemption, zone by zone and tick by tick, from `rng`.
    """
    if capacity.shape[1] < 2 or notices.warning_s <= 0:
        return []
    drop = capacity[:, :-1] - capacity[:, 1:]
    zones, before = np.nonzero(drop > 0)
    units = drop[zones, before]
    zone_of = np.repeat(zones, units)
    tick_of = np.repeat(before + 1, units)
    lead = np.full(zone_of.size, float(notices.warning_s))
    warned = np.ones(zone_of.size, dtype=bool)
    if notices.realistic:
        gen = rng if rng is not None else np.random.default_rng(0)
        warned = gen.random(zone_of.size) >= notices.unwarned_share
        lead -= gen.random(zone_of.size) * notices.lead_jitter_s
    at = tick_of * float(tick_seconds) - lead
    keep = warned & (lead > 0) & (at >= 0)
    order = np.lexsort((zone_of[keep], tick_of[keep], at[keep]))
    return [
        Slot(float(a), int(z), int(t))
        for a, z, t in zip(at[keep][order], zone_of[keep][order], tick_of[keep][order], strict=True)
    ]


def zone_offers(
    zones: Sequence[str], cloud: str = "sim", notice_lead_s: float = 0.0
) -> tuple[ZoneOffer, ...]:
    """Every zone offers spot at 1 and on-demand at 3, as in the paper's simulator; the
    simulated cloud documents its nominal warning as its notice lead."""
    return tuple(
        ZoneOffer(z, z.rsplit("-", 1)[0], cloud, SPOT_COST, ON_DEMAND_COST, notice_lead_s)
        for z in zones
    )


def simulate_window(
    policy: PolicyFn,
    spec: ServiceSpec,
    zones: Sequence[str],
    capacity: np.ndarray,
    *,
    cold_start_s: float,
    tick_seconds: int = 30,
    notices: NoticeModel = NoticeModel(),  # frozen, so one shared default is safe
    launch_failure_delay_s: float = 0.0,
    rng: np.random.Generator | None = None,
    qps: np.ndarray | None = None,
    pools: Pools | None = None,
) -> WindowResult:
    """Run one window. `capacity` is (zones x ticks); `qps`, if given, is per tick; `rng`
    draws the realistic notices (module docstring); `pools` prices and sizes the zones as
    GPU-type pools and scores served requests/s instead of replica counts."""
    replay = _Replay(
        policy,
        spec,
        zones,
        capacity,
        cold_start_s=cold_start_s,
        tick_seconds=tick_seconds,
        launch_failure_delay_s=launch_failure_delay_s,
        qps=qps,
        notice_lead_s=notices.warning_s,
        pools=pools,
    )
    schedule = notice_schedule(capacity, tick_seconds=tick_seconds, notices=notices, rng=rng)
    return replay.run(schedule)


@dataclass(frozen=True)
class Pools:
    """Several GPU types (issue 15): each zone of the replay is a pool with its own offer
    (`accelerator`, spot and on-demand $/h) and the requests/s one replica there serves.
    Cost is then in $/h x ticks; a tick is available when the READY replicas serve at least
    `demand_rps`; `baseline_per_tick` is what the cost is a percentage of."""

    offers: tuple[ZoneOffer, ...]  # one per zone, in the replay's zone order
    serve_rps: tuple[float, ...]
    demand_rps: float
    baseline_per_tick: float


@dataclass(slots=True)
class _SimReplica:
    replica: Replica
    ready_at: float
    warned_for: int | None = None  # the tick whose preemption was announced to it


@dataclass(slots=True)
class _Refused:
    """A spot launch the zone could not hold: STARTING to the policy until `known_at`."""

    replica: Replica
    known_at: float
    terminated: bool = False  # the policy stopped it; its failure is still reported


class _Replay:
    """One window's state; `run` is the loop of the module docstring."""

    def __init__(
        self,
        policy: PolicyFn,
        spec: ServiceSpec,
        zones: Sequence[str],
        capacity: np.ndarray,
        *,
        cold_start_s: float,
        tick_seconds: int,
        launch_failure_delay_s: float,
        qps: np.ndarray | None,
        notice_lead_s: float = 0.0,
        pools: Pools | None = None,
    ) -> None:
        self.policy = policy
        self.spec = spec
        self.zones = list(zones)
        self.zone_index = {z: i for i, z in enumerate(zones)}
        self.pools = pools
        if pools is not None:
            assert [o.zone for o in pools.offers] == self.zones
            self.offers = tuple(replace(o, notice_lead_s=notice_lead_s) for o in pools.offers)
        else:
            self.offers = zone_offers(zones, notice_lead_s=notice_lead_s)
        self.price = {
            (o.zone, market): (o.spot_price if market is Market.SPOT else o.on_demand_price) or 0.0
            for o in self.offers
            for market in Market
        }
        self.cap: list[list[int]] = capacity.tolist()  # python ints: faster than numpy scalars
        self.ticks = int(capacity.shape[1])
        self.tick = tick_seconds
        self.cold = float(cold_start_s)
        self.failure_delay = float(launch_failure_delay_s)
        self.qps: list[float] | None = qps.tolist() if qps is not None else None
        self.replicas: dict[str, _SimReplica] = {}
        self.refused: dict[str, _Refused] = {}
        self.spot_in_zone = [0] * len(self.zones)
        self.starting = 0  # replicas not yet observed READY
        self.memory = Memory()
        self.notices: list[Notice] = []  # to deliver at the next decision
        self.results: list[LaunchResult] = []  # ditto
        self.observation: Observation | None = None  # cached until something changes
        self.cost = 0.0
        self.preemptions = self.warned_preemptions = 0
        self.spot_launches = self.od_launches = self.failed = 0

    def run(self, schedule: Sequence[Slot]) -> WindowResult:
        ticks, tick = self.ticks, self.tick
        ready_spot = np.zeros(ticks, dtype=np.int32)
        ready_od = np.zeros(ticks, dtype=np.int32)
        targets = np.zeros(ticks, dtype=np.int32)
        first_scored = first_scored_tick(self.cold, tick)
        baseline = 0.0
        scored = available = extra = 0
        armed: list[Slot] = []  # announced, waiting for a replica to warn or for their tick
        nxt, n_slots = 0, len(schedule)
        for t in range(ticks):
            now = float(t * tick)
            self._preempt(t, now)
            n_spot = n_od = 0
            served = 0.0
            for sim in self.replicas.values():
                if sim.replica.state is ReplicaState.READY:
                    if sim.replica.market is Market.SPOT:
                        n_spot += 1
                    else:
                        n_od += 1
                    if self.pools is not None:
                        served += self.pools.serve_rps[self.zone_index[sim.replica.zone]]
            ready_spot[t] = n_spot
            ready_od[t] = n_od
            while nxt < n_slots and schedule[nxt].at <= now:
                armed.append(schedule[nxt])
                nxt += 1
            if armed:
                self._announce(armed, now)
            decision = self._decide(now, t)
            targets[t] = decision.target
            if self.pools is None:
                baseline += ON_DEMAND_COST * decision.target
                enough = n_spot + n_od >= decision.target
            else:
                baseline += self.pools.baseline_per_tick
                enough = served >= self.pools.demand_rps * (1 - 1e-9)  # relative: any rate
            if t >= first_scored:
                scored += 1
                available += enough
            end = now + tick
            while nxt < n_slots and schedule[nxt].at < end:
                at = schedule[nxt].at
                while nxt < n_slots and schedule[nxt].at == at:
                    armed.append(schedule[nxt])
                    nxt += 1
                if self._announce(armed, at):
                    self._decide(at, t)
                    extra += 1
        end_of_window = float(ticks * tick)
        for sim in self.replicas.values():
            self._charge(sim.replica, end_of_window)
        return WindowResult(
            cost_units=self.cost,
            baseline_units=baseline,
            scored_ticks=scored,
            available_ticks=available,
            preemptions=self.preemptions,
            spot_launches=self.spot_launches,
            od_launches=self.od_launches,
            failed_launches=self.failed,
            ready_spot=ready_spot,
            ready_od=ready_od,
            targets=targets,
            warned_preemptions=self.warned_preemptions,
            extra_decisions=extra,
        )

    def _charge(self, replica: Replica, until: float) -> None:
        price = self.price[(replica.zone, replica.market)]
        self.cost += price * (until - replica.launched_at) / self.tick

    def _in_zone(self, zi: int) -> list[_SimReplica]:
        zone = self.zones[zi]
        return [
            s
            for s in self.replicas.values()
            if s.replica.market is Market.SPOT and s.replica.zone == zone
        ]

    def _preempt(self, t: int, now: float) -> None:
        """The trace takes what the zone's value at tick t no longer holds."""
        for zi, held in enumerate(self.spot_in_zone):
            over = held - self.cap[zi][t]
            if over <= 0:
                continue
            # Announced for this tick (or an earlier one) first, then the newest unannounced,
            # then those announced for a later tick.
            victims = sorted(
                self._in_zone(zi),
                key=lambda s: (
                    1 if s.warned_for is None else (0 if s.warned_for <= t else 2),
                    -s.replica.launched_at,
                    s.replica.id,
                ),
            )[:over]
            for sim in victims:
                r = sim.replica
                del self.replicas[r.id]
                self._charge(r, now)
                if r.state is not ReplicaState.READY:
                    self.starting -= 1
                if sim.warned_for is not None:
                    self.warned_preemptions += 1
                self.notices.append(Notice(NoticeKind.PREEMPTED, r.id, r.zone, now))
            self.spot_in_zone[zi] -= over
            self.preemptions += over
            self.observation = None

    def _announce(self, armed: list[Slot], now: float) -> bool:
        """Issue the armed notices that have a replica to warn; True if any was issued."""
        issued = False
        keep: list[Slot] = []
        for slot in armed:
            due = slot.tick * self.tick
            if due <= now:
                continue  # its preemption time has come: nothing was there to warn
            in_zone = self._in_zone(slot.zone)
            # Replicas announced for an earlier tick still to come are gone by then.
            rest = [
                s
                for s in in_zone
                if s.warned_for is None or not (now < s.warned_for * self.tick < due)
            ]
            covered = sum(1 for s in rest if s.warned_for is not None and s.warned_for <= slot.tick)
            fresh = [s for s in rest if s.warned_for is None]
            if len(rest) - self.cap[slot.zone][slot.tick] <= covered or not fresh:
                keep.append(slot)
                continue
            victim = min(fresh, key=lambda s: (-s.replica.launched_at, s.replica.id))
            victim.warned_for = slot.tick
            r = victim.replica
            self.notices.append(Notice(NoticeKind.WARNING, r.id, r.zone, now))
            issued = True
        armed[:] = keep
        return issued

    def _decide(self, now: float, t: int) -> Decision:
        """One policy decision at `now` (within tick t), and its effects."""
        if self.starting:
            for sim in self.replicas.values():
                r = sim.replica
                if r.state is ReplicaState.STARTING and sim.ready_at <= now:
                    sim.replica = Replica(r.id, r.zone, r.market, ReplicaState.READY, r.launched_at)
                    self.starting -= 1
                    self.observation = None
        results = self.results
        if self.refused:
            for rid in [rid for rid, ref in self.refused.items() if ref.known_at <= now]:
                ref = self.refused.pop(rid)
                results.append(
                    LaunchResult(
                        ref.replica.zone,
                        Market.SPOT,
                        ok=False,
                        failure=FailureKind.CAPACITY,
                        message="InsufficientInstanceCapacity",
                    )
                )
                if not ref.terminated:
                    self.observation = None
        if self.observation is None:
            seen = [s.replica for s in self.replicas.values()]
            seen.extend(ref.replica for ref in self.refused.values() if not ref.terminated)
            self.observation = Observation(tuple(seen), self.offers)
        signals = Signals(
            qps=self.qps[t] if self.qps is not None else None,
            qps_at=now,
            notices=tuple(self.notices),
            launch_results=tuple(results),
        )
        self.notices = []
        self.results = []
        decision = self.policy(self.spec, self.observation, signals, self.memory, now)
        self.memory = decision.memory
        self._apply(decision, now, t)
        return decision

    def _apply(self, decision: Decision, now: float, t: int) -> None:
        for term in decision.terminations:
            gone = self.replicas.pop(term.replica_id, None)
            if gone is not None:
                self._charge(gone.replica, now)
                if gone.replica.state is not ReplicaState.READY:
                    self.starting -= 1
                if gone.replica.market is Market.SPOT:
                    self.spot_in_zone[self.zone_index[gone.replica.zone]] -= 1
                self.observation = None
            elif term.replica_id in self.refused:
                self.refused[term.replica_id].terminated = True
                self.observation = None
        for launch in decision.launches:
            replica = Replica(
                launch.replica_id, launch.zone, launch.market, ReplicaState.STARTING, now
            )
            self.observation = None
            if launch.market is Market.SPOT:
                zi = self.zone_index[launch.zone]
                if self.spot_in_zone[zi] >= self.cap[zi][t]:
                    self.failed += 1
                    self.refused[launch.replica_id] = _Refused(replica, now + self.failure_delay)
                    continue
                self.spot_in_zone[zi] += 1
                self.spot_launches += 1
            else:
                self.od_launches += 1
            self.results.append(LaunchResult(launch.zone, launch.market, ok=True))
            self.replicas[launch.replica_id] = _SimReplica(replica, now + self.cold)
            self.starting += 1
