"""SpotHedge (SkyServe, EuroSys '25) and Hedgeform's improved variant of it.

Counts, per tick, from the autoscaler's target:
  final = target + num_overprovision;  S = final - base_ondemand_fallback_replicas spot to keep;
  on-demand = base + (dynamic_ondemand_fallback ? max(0, S - ready_spot) : 0), capped at target,
so on-demand covers exactly the spot that is not serving yet, never the overprovisioned part,
and stays until the replacement spot passes readiness. Spot replicas go where the dynamic
fallback placer says (`placement`).

`hedgeform_v1` (Hedgeform's first variant, kept for comparison) differs only where SkyServe
is known to be weak (docs/policy.md):
  - scale-down keeps the spread (stops replicas in the zone holding the most);
  - only capacity failures mark a zone preempted (quota or config errors say nothing about the
    spot market);
  - a replica under a preemption warning counts as not ready: it leaves the load balancer, its
    on-demand cover and its spot replacement launch at once, and its zone is marked preempted;
  - a new spot replica goes to the ACTIVE zone with the fewest replicas;
  - a zone that refused spot capacity is retried after a growing, jittered delay
    (capacity_backoff.py), and a zone/market where replacements keep failing their probes
    waits out a crash-loop backoff (lifecycle.py).
`hedgeform`, the default, adds (issue 14; each measured alone in docs/policy.md):
  - the placer without SkyServe's reset-all deadlock: PREEMPTED zones wait at the back of the
    queue instead (placement.py);
  - the spare (`num_overprovision`) runs only while notices cannot cover the measured cold
    start (spare_risk.py);
  - a spare never joins the zone that alone holds the most of our spot replicas: a spare
    lost with the replicas it protects protects nothing;
  - scale-down stops the replicas furthest from serving first, across zones.
Every variant replaces FAILED_INITIAL_DELAY and FAILED_PROBING replicas (lifecycle.py), as
SkyServe does.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial

from reconciler.policy.autoscaling import next_target
from reconciler.policy.capacity_backoff import capacity_blocked, update_zone_backoff
from reconciler.policy.changes import (
    assemble,
    hold,
    launch_many,
    pick_by_order,
    pick_keeping_spread,
    pick_ready_aware,
)
from reconciler.policy.decision import Decision
from reconciler.policy.lifecycle import crash_blocked, judge
from reconciler.policy.memory import COLD_STARTS_KEPT, Memory
from reconciler.policy.observation import Market, Observation, Replica, ReplicaState
from reconciler.policy.placement import choose_on_demand_zone, choose_spot_zone, update_status
from reconciler.policy.rollout import check_rollback, current_runs
from reconciler.policy.rollout import step as rollout_step
from reconciler.policy.signals import FailureKind, NoticeKind, Signals
from reconciler.policy.spare_risk import extend_hold, spare_needed
from reconciler.spec.model import ServiceSpec

PREEMPTION_MEMORY_SECONDS = 3600.0


@dataclass(frozen=True)
class Variant:
    name: str
    capacity_failures_only: bool
    act_on_warnings: bool
    spread_on_scale_down: bool
    spread_by_count: bool
    backoff: bool  # capacity retry delays per zone and crash-loop backoff
    placer_queue: bool = False  # no reset-all: PREEMPTED zones at the back of the queue
    adaptive_spare: bool = False  # the spare only while at risk (spare_risk.py)
    spare_diversity: bool = False  # a spare never joins the zone alone holding the most
    ready_aware_scale_down: bool = False  # stop starting replicas before ready ones
    documented_prior: bool = True  # adaptive spare: the clouds' documented leads as its prior


SPOTHEDGE = Variant("spothedge", False, False, False, False, False)
HEDGEFORM_V1 = Variant("hedgeform_v1", True, True, True, True, True)
HEDGEFORM = Variant("hedgeform", True, True, True, True, True, True, True, True, True)


def spothedge(
    spec: ServiceSpec, observed: Observation, signals: Signals, memory: Memory, now: float
) -> Decision:
    """SpotHedge as SkyServe implements it (the reference the backtest compares against)."""
    return decide_with(SPOTHEDGE, spec, observed, signals, memory, now)


def hedgeform(
    spec: ServiceSpec, observed: Observation, signals: Signals, memory: Memory, now: float
) -> Decision:
    """SpotHedge with Hedgeform's fixes: the default policy."""
    return decide_with(HEDGEFORM, spec, observed, signals, memory, now)


def hedgeform_v1(
    spec: ServiceSpec, observed: Observation, signals: Signals, memory: Memory, now: float
) -> Decision:
    """Hedgeform's first variant (before issue 14), kept for comparison."""
    return decide_with(HEDGEFORM_V1, spec, observed, signals, memory, now)


def _spare_avoid(counts: dict[str, int]) -> frozenset[str]:
    """The zone that alone holds the most of our spot replicas: no place for a spare."""
    if not counts:
        return frozenset()
    most = max(counts.values())
    top = [z for z, c in counts.items() if c == most]
    return frozenset(top) if len(top) == 1 and most > 0 else frozenset()


def _measured_cold_start(
    replicas: tuple[Replica, ...], before: frozenset[str], after: frozenset[str], now: float
) -> float | None:
    """Seconds from launch to this decision for the replicas first seen READY now."""
    fresh = [now - r.launched_at for r in replicas if r.id in after and r.id not in before]
    return max(fresh) if fresh else None


def decide_with(
    variant: Variant,
    spec: ServiceSpec,
    observed: Observation,
    signals: Signals,
    memory: Memory,
    now: float,
) -> Decision:
    if not observed.complete:
        return hold(observed, memory, "observation incomplete: holding the current layout")
    failed_before = set(memory.failed)
    ready_before = memory.ready_once
    judged = judge(spec.service.readiness_probe, observed.replicas, memory, now)
    observed, memory = replace(observed, replicas=judged.replicas), judged.memory
    if variant.adaptive_spare:
        cold = _measured_cold_start(observed.replicas, ready_before, memory.ready_once, now)
        if cold is not None:
            kept = (*memory.cold_starts, cold)[-COLD_STARTS_KEPT:]
            memory = replace(memory, cold_starts=kept)
    memory, rollout_notes = check_rollback(memory, judged.replicas, failed_before)
    rp = spec.service.replica_policy
    step = next_target(rp, signals, memory, now)
    target = step.target
    reasons = [f"target {target}: {step.reason}", *judged.reasons, *rollout_notes]
    # SpotHedge's counts are over the replicas of the current version; the others are the
    # rollout's (policy/rollout.py).
    runs = current_runs(memory)
    every_alive = [r for r in observed.replicas if r.alive]
    alive = [r for r in every_alive if r.version == runs]
    old = [r for r in every_alive if r.version != runs]

    # Absorb this tick's signals into the placer's zone statuses.
    recent = [p for p in memory.recent_preemptions if now - p[2] <= PREEMPTION_MEMORY_SECONDS]
    seen = {p[0] for p in recent}
    hit: list[str] = []
    losses: list[tuple[str, float]] = []  # (replica, when) of preemptions first seen now
    for notice in signals.notices:
        if notice.kind is NoticeKind.PREEMPTED and notice.replica_id not in seen:
            recent.append((notice.replica_id, notice.zone, notice.at))
            seen.add(notice.replica_id)
            hit.append(notice.zone)
            losses.append((notice.replica_id, notice.at))
    for r in observed.replicas:
        if r.state is ReplicaState.PREEMPTED and r.id not in seen:
            recent.append((r.id, r.zone, now))
            seen.add(r.id)
            hit.append(r.zone)
            losses.append((r.id, now))
    alive_spot_ids = {r.id for r in every_alive if r.market is Market.SPOT}
    warned: dict[str, float] = {}
    if variant.act_on_warnings:
        warned = {rid: at for rid, at in memory.warned if rid in alive_spot_ids}
        for notice in signals.notices:
            if (
                notice.kind is NoticeKind.WARNING
                and notice.replica_id in alive_spot_ids
                and notice.replica_id not in warned
            ):
                warned[notice.replica_id] = notice.at
                hit.append(notice.zone)
    launched: list[str] = []
    for result in signals.launch_results:
        if result.market is not Market.SPOT:
            continue
        if result.ok:
            launched.append(result.zone)
        elif not variant.capacity_failures_only or result.failure is FailureKind.CAPACITY:
            hit.append(result.zone)
    zone_names = [o.zone for o in observed.zones]
    status = update_status(
        memory.zone_status, zone_names, hit, launched, reset=not variant.placer_queue
    )
    zone_backoff = dict(memory.zone_backoff)
    od_offers = observed.zones
    spot_blocked: frozenset[str] = frozenset()
    if variant.backoff:
        zone_backoff = update_zone_backoff(
            memory.zone_backoff, signals.launch_results, now, memory.launch_seq
        )
        waiting = capacity_blocked(zone_backoff, now)
        if waiting:
            zones = ", ".join(sorted(waiting))
            reasons.append(f"spot retry delayed after capacity refusals: {zones}")
        spot_blocked = waiting | crash_blocked(memory, Market.SPOT, now)
        od_blocked = crash_blocked(memory, Market.ON_DEMAND, now)
        od_offers = tuple(o for o in observed.zones if o.zone not in od_blocked)

    # Counts.
    spot = [r for r in alive if r.market is Market.SPOT]
    od = [r for r in alive if r.market is Market.ON_DEMAND]
    serving_spot = [r for r in spot if r.id not in warned]
    ready_spot = sum(1 for r in serving_spot if r.ready)
    spare = rp.num_overprovision
    spare_until = memory.spare_until
    if variant.adaptive_spare and spec.resources.use_spot:
        warned_at = dict(memory.warned)
        for n in signals.notices:
            if n.kind is NoticeKind.WARNING:
                warned_at.setdefault(n.replica_id, n.at)
        leads = [
            (at, max(0.0, at - warned_at[rid]) if rid in warned_at else 0.0) for rid, at in losses
        ]
        spare_until = extend_hold(spare_until, leads, memory.cold_start_s)
        needed, why = spare_needed(
            observed.zones,
            (r.zone for r in spot),
            memory.cold_start_s,
            spare_until,
            now,
            documented_prior=variant.documented_prior,
        )
        if spare and not needed:
            spare = 0
        if rp.num_overprovision:
            reasons.append(why)
    final = target + spare
    if spec.resources.use_spot:
        base = rp.base_ondemand_fallback_replicas
        spot_to_keep = max(0, final - base)
        # Cover only the part of the target that spot does not serve: the overprovisioned
        # replicas are a spot-only safeguard and never fall back to on-demand.
        spot_share = max(0, target - base)
        fallback = max(0, spot_share - ready_spot) if rp.dynamic_ondemand_fallback else 0
        od_to_keep = min(target, base + fallback)
    else:
        spot_to_keep, od_to_keep = 0, target

    seq = memory.launch_seq
    launches = []
    stopping: list[tuple[Replica, str]] = []
    if len(serving_spot) < spot_to_keep:
        counts: dict[str, int] = {}
        for r in spot:  # warned replicas still occupy their zone
            counts[r.zone] = counts.get(r.zone, 0) + 1
        missing = spot_to_keep - len(serving_spot)
        # With spare diversity, the part of the target first, then the spares elsewhere.
        serving_part = missing
        if variant.spare_diversity:
            serving_part = min(missing, max(0, spot_to_keep - spare - len(serving_spot)))
        why = f"spot {len(serving_spot)} < {spot_to_keep} wanted"

        def place_spot(c: dict[str, int], s: int, *, diverse: bool) -> str | None:
            return choose_spot_zone(
                observed.zones,
                status,
                c,
                s,
                spread_by_count=variant.spread_by_count,
                waiting=spot_blocked,
                queue=variant.placer_queue,
                avoid=_spare_avoid(c) if diverse else frozenset(),
            )

        for count, diverse in ((serving_part, False), (missing - serving_part, True)):
            new, seq = launch_many(
                count,
                Market.SPOT,
                seq,
                counts,
                partial(place_spot, diverse=diverse),
                why,
            )
            launches.extend(new)
    elif len(serving_spot) > spot_to_keep:
        extra = len(serving_spot) - spot_to_keep
        pick = pick_keeping_spread if variant.spread_on_scale_down else pick_by_order
        if variant.ready_aware_scale_down:
            pick = pick_ready_aware
        why = f"spot {len(serving_spot)} > {spot_to_keep} wanted"
        stopping.extend((r, why) for r in pick(serving_spot, extra))

    if len(od) < od_to_keep:
        counts = {}
        for r in od:
            counts[r.zone] = counts.get(r.zone, 0) + 1
        new, seq = launch_many(
            od_to_keep - len(od),
            Market.ON_DEMAND,
            seq,
            counts,
            lambda c, s: choose_on_demand_zone(od_offers, c, s),
            f"on-demand fallback: {ready_spot} ready spot of {spot_to_keep}",
        )
        launches.extend(new)
    elif len(od) > od_to_keep:
        why = f"on-demand {len(od)} > {od_to_keep} needed ({ready_spot} spot ready)"
        pick_od = pick_ready_aware if variant.ready_aware_scale_down else pick_by_order
        stopping.extend((r, why) for r in pick_od(od, len(od) - od_to_keep))

    # Drain warned replicas from the load balancer only when the others can carry the target:
    # the last servers keep serving until the cloud takes them (or cover is ready).
    serving_ready = sum(1 for r in every_alive if r.ready and r.id not in warned)
    drain_warned = variant.act_on_warnings and serving_ready >= target
    if warned and not drain_warned:
        reasons.append("warned replicas stay in the load balancer until cover is ready")
    new_memory = replace(
        memory,
        target=target,
        upscale_since=step.upscale_since,
        downscale_since=step.downscale_since,
        zone_status=status,
        launch_seq=seq,
        recent_preemptions=tuple(recent),
        warned=tuple(sorted(warned.items())),
        zone_backoff=zone_backoff,
        spare_until=spare_until,
    )
    rolled = rollout_step(
        new_memory,
        target=target,
        final=target + rp.num_overprovision,  # the rollout's room is the user's, spare or not
        current=alive,
        old=old,
        launches=launches,
        stopping_current={r.id for r, _ in stopping},
        warned=warned,
        now=now,
    )
    excluded = set(warned if drain_warned else ()) | rolled.lb_excluded
    return assemble(
        target=target,
        observed=observed,
        launches=rolled.launches,
        stopping=[*stopping, *rolled.stopping],
        memory=rolled.memory,
        reasons=[*reasons, *rolled.reasons],
        excluded_from_lb=excluded,
    )
