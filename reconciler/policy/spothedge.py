"""SpotHedge (SkyServe, EuroSys '25) and Hedgeform's improved variant of it.

Counts, per tick, from the autoscaler's target:
  final = target + num_overprovision;  S = final - base_ondemand_fallback_replicas spot to keep;
  on-demand = base + (dynamic_ondemand_fallback ? max(0, S - ready_spot) : 0), capped at target,
so on-demand covers exactly the spot that is not serving yet, never the overprovisioned part,
and stays until the replacement spot passes readiness. Spot replicas go where the dynamic
fallback placer says (`placement`).

`hedgeform` differs only where SkyServe is known to be weak (docs/policy.md):
  - scale-down keeps the spread (stops replicas in the zone holding the most);
  - only capacity failures mark a zone preempted (quota or config errors say nothing about the
    spot market);
  - a replica under a preemption warning counts as not ready: it leaves the load balancer, its
    on-demand cover and its spot replacement launch at once, and its zone is marked preempted;
  - a new spot replica goes to the ACTIVE zone with the fewest replicas;
  - a zone that refused spot capacity is retried after a growing, jittered delay
    (capacity_backoff.py), and a zone/market where replacements keep failing their probes
    waits out a crash-loop backoff (lifecycle.py).
Both variants replace FAILED_INITIAL_DELAY and FAILED_PROBING replicas (lifecycle.py), as
SkyServe does.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from reconciler.policy.autoscaling import next_target
from reconciler.policy.capacity_backoff import capacity_blocked, update_zone_backoff
from reconciler.policy.changes import (
    assemble,
    hold,
    launch_many,
    pick_by_order,
    pick_keeping_spread,
)
from reconciler.policy.decision import Decision
from reconciler.policy.lifecycle import crash_blocked, judge
from reconciler.policy.memory import Memory
from reconciler.policy.observation import Market, Observation, Replica, ReplicaState
from reconciler.policy.placement import choose_on_demand_zone, choose_spot_zone, update_status
from reconciler.policy.rollout import check_rollback, current_runs
from reconciler.policy.rollout import step as rollout_step
from reconciler.policy.signals import FailureKind, NoticeKind, Signals
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


SPOTHEDGE = Variant("spothedge", False, False, False, False, False)
HEDGEFORM = Variant("hedgeform", True, True, True, True, True)


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
    judged = judge(spec.service.readiness_probe, observed.replicas, memory, now)
    observed, memory = replace(observed, replicas=judged.replicas), judged.memory
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
    for notice in signals.notices:
        if notice.kind is NoticeKind.PREEMPTED and notice.replica_id not in seen:
            recent.append((notice.replica_id, notice.zone, notice.at))
            seen.add(notice.replica_id)
            hit.append(notice.zone)
    for r in observed.replicas:
        if r.state is ReplicaState.PREEMPTED and r.id not in seen:
            recent.append((r.id, r.zone, now))
            seen.add(r.id)
            hit.append(r.zone)
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
    status = update_status(memory.zone_status, zone_names, hit, launched)
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
    final = target + rp.num_overprovision
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
        new, seq = launch_many(
            spot_to_keep - len(serving_spot),
            Market.SPOT,
            seq,
            counts,
            lambda c, s: choose_spot_zone(
                observed.zones,
                status,
                c,
                s,
                spread_by_count=variant.spread_by_count,
                waiting=spot_blocked,
            ),
            f"spot {len(serving_spot)} < {spot_to_keep} wanted",
        )
        launches.extend(new)
    elif len(serving_spot) > spot_to_keep:
        extra = len(serving_spot) - spot_to_keep
        pick = pick_keeping_spread if variant.spread_on_scale_down else pick_by_order
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
        stopping.extend((r, why) for r in pick_by_order(od, len(od) - od_to_keep))

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
    )
    rolled = rollout_step(
        new_memory,
        target=target,
        final=final,
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
