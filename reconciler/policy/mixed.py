"""Several GPU types in one service: the cheapest mix (Mélange) hedged per type (SpotHedge).

Issue 15, item 4. A *pool* is one (zone, GPU type): the observation offers each pool as its
own `ZoneOffer` (unique `zone` name, `accelerator` set), so a zone offering two types is two
pools, each with its own spot prices and placer state (the clouds price spot per instance
type; the sandbox's zones have one market shared by their types, docs/mix.md). Per tick,
`hedgeform_mix`:

1. **Rate**: the autoscaler (policy/autoscaling.py, SkyServe's delays) in units of the
   smallest type's requests/s: `R = target units × unit`. `min_replicas` bounds it below as
   that many replicas of the smallest type, `max_replicas` above as what that many of the
   largest serve; the mix never runs more than `max_replicas` replicas in all (SkyServe's
   cap), so it may run fewer than `min_replicas` when larger types carry that rate.
2. **Prices**: each type's price (policy/mix_choice.py `stepped_prices`): while one of its
   pools may offer spot, its cheapest spot price; once none may, spot for as many replicas
   as its pools hold and on-demand beyond (`solve_mix`'s `beyond`), so a type whose pools
   are merely full keeps the replicas they hold instead of being priced as if its spot were
   gone; with nothing held, on-demand. A pool may offer spot unless its type's placer marked
   it PREEMPTED within the last `PREEMPTION_MEMORY_SECONDS` (a preemption or a capacity
   refusal there); after that, spot may be back, as the placer itself assumes when it
   retries. A marked pool holds its READY spot replicas not under a warning.
3. **Mix**: `choose_mix` from what each type targets now, at the per-type requests/s of the
   sidecar's profile (services/<name>.hedgeform.yaml, spec/sidecar.py: the size-oblivious
   capacity of each type, since no load balancer here routes by size), else of
   `target_qps_per_replica` (SkyServe's per-accelerator map; one number serves every type),
   times the sidecar's headroom (`max_utilization`) and within its per-type caps,
   switching types only when the saving repays the overlap within the downscale delay.
4. **Old types drain last**: a type the new mix shrinks keeps its ready replicas (and
   replaces none) until the ready replicas of the new mix carry `R`: new replicas are in the
   load balancer before old ones stop.
5. **SpotHedge per type**: each type runs the default policy (`hedgeform`) over its own
   pools with a fixed size (its count), its own memory (`Memory.groups`) and the replica
   numbering shared, so each type spreads its spot over its zones with the dynamic fallback
   placer. On-demand covers spot in requests/s: while the ready spot replicas of all types
   carry `R`, no type falls back, nor does a type switching in at spot while the ready
   replicas a draining type keeps carry `R` beside them (`_falls_back`); else each type
   covers its own spot that is not ready with its own on-demand
   (`dynamic_ondemand_fallback`). `base_ondemand_fallback_replicas` go to the
   type the mix gives the most replicas. The spare (`num_overprovision`) must stand in for
   any replica of the mix, so it is of the largest type the mix runs (most requests/s per
   replica), and every mix is priced with it (mix.py `spare`: at that type's open spot
   price while its SpotHedge would run the spare, spare_risk.py): a mix whose largest GPU
   is large pays for a large spare.

With one type (every offer the same `accelerator`) it is exactly `hedgeform`. Pure: no I/O,
no clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from functools import lru_cache
from typing import Any

from reconciler.errors import MixError
from reconciler.policy.autoscaling import next_target
from reconciler.policy.decision import Decision
from reconciler.policy.memory import Memory, ZoneStatus
from reconciler.policy.mix_choice import MixChoice, choose_mix, stepped_prices
from reconciler.policy.observation import Market, Observation, ZoneOffer
from reconciler.policy.placement import update_status
from reconciler.policy.signals import FailureKind, NoticeKind, Signals
from reconciler.policy.spare_risk import spare_needed
from reconciler.policy.spothedge import HEDGEFORM, PREEMPTION_MEMORY_SECONDS, decide_with
from reconciler.spec.model import ReplicaPolicy, ServiceSpec
from reconciler.spec.profile import GpuType, Profile
from reconciler.spec.sidecar import MixSettings


def hedgeform_mix(
    spec: ServiceSpec, observed: Observation, signals: Signals, memory: Memory, now: float
) -> Decision:
    """One tick over several GPU types (module docstring); `hedgeform` with one type."""
    by_type = _offers_by_type(observed.zones)
    if len(by_type) < 2 or "" in by_type or not observed.complete:
        if memory.groups and observed.complete:  # the service left the mix: one type again
            memory = _left_mix(memory, {o.zone for o in observed.zones})
        return decide_with(HEDGEFORM, spec, observed, signals, memory, now)
    rp = spec.service.replica_policy
    types = list(by_type)
    settings = spec.mix or MixSettings()
    serves = {t: _requests_per_replica(rp, settings, t) for t in types}
    caps = tuple((t, c) for t in types if (c := settings.cap(t)) is not None)
    unit = min(serves.values())
    step = next_target(_units_policy(rp, unit, max(serves.values())), signals, memory, now)
    rate = step.target * unit
    groups = dict(memory.groups)
    prev = {t: (groups[t].target or 0) if t in groups else 0 for t in types}
    # Under a warning: known to a type's memory, or announced in this tick's notices.
    warned = frozenset(
        {rid for g in groups.values() for rid, _ in g.warned}
        | {n.replica_id for n in signals.notices if n.kind is NoticeKind.WARNING}
    )
    spot = {
        t: _spot_pools(by_type[t], groups.get(t), observed, warned, signals, now) for t in types
    }
    prices, beyond = stepped_prices(
        {t: min(o.on_demand_price for o in by_type[t]) for t in types},
        {t: spot[t][0] for t in types},
        {t: spot[t][1] for t in types},
        spec.resources.use_spot,
    )
    profile = Profile(tuple(GpuType(t, prices[t], ((serves[t],),)) for t in types), ((1.0,),))
    cold = max((m.cold_start_s or 0.0 for m in groups.values()), default=0.0)
    spare_usd = {
        t: _spare_price(spec, by_type[t], groups.get(t), observed, spot[t][0], cold, now)
        for t in types
    }
    reasons = [f"mix rate {rate:g} req/s: {step.reason}"]
    on_demand = {t: min(o.on_demand_price for o in by_type[t]) for t in types}
    ready = _ready_by_type(observed, by_type, warned)
    if caps and len(caps) == len(types):  # every type capped: serve what the caps can
        ceiling = sum(c * serves[t] for t, c in caps)
        if rate > ceiling + 1e-9:
            rate = ceiling
            reasons.append(f"mix rate held to {rate:g} req/s: the sidecar's caps serve no more")
    # The ready replicas fall short of the rate: a switch has nothing to run beside.
    short = (
        tuple(sorted(ready.items()))
        if sum(n * serves[t] for t, n in ready.items()) < rate - 1e-9
        else None
    )
    try:
        choice = _choose(
            profile,
            rate,
            tuple(prices.items()),
            tuple(prev.items()),
            cold or float(spec.service.readiness_probe.initial_delay_seconds),
            float(rp.downscale_delay_seconds),
            caps,
            rp.upper,
            tuple(sorted(beyond.items())),
            tuple(sorted(spare_usd.items())),
            short,
            tuple(sorted(on_demand.items())) if short is not None else (),
        )
        counts = dict(choice.counts)
        spared = f" + spare {choice.spare_type}" if spare_usd.get(choice.spare_type) else ""
        reasons.append(
            f"mix {_shown(counts)}{spared} (${choice.usd_per_hour:.2f}/h): {choice.reason}"
        )
    except MixError as exc:
        counts = dict(prev)
        reasons.append(f"mix held at {_shown(counts)}: {exc}")
    lead = max(types, key=lambda t: (counts[t], -types.index(t)))
    # The spare stands in for any replica of the mix: it is of the largest type it runs.
    largest = max(
        (t for t in types if counts[t]), key=lambda t: (serves[t], -types.index(t)), default=""
    )
    chosen = counts
    counts = _drain_last(counts, prev, ready, serves, rate, reasons)
    # A type held only until the new mix carries the rate replaces none of its replicas.
    holding = {t for t in types if counts[t] > chosen[t]}
    spot_ready = _ready_by_type(observed, by_type, warned, Market.SPOT)
    falls_back = _falls_back(
        rp.dynamic_ondemand_fallback,
        rate,
        spot_rps=sum(n * serves[t] for t, n in spot_ready.items()),
        kept_rps=sum((ready.get(t, 0) - spot_ready.get(t, 0)) * serves[t] for t in holding),
        at_spot={
            t: prices[t] < on_demand[t] and counts[t] <= beyond.get(t, (counts[t], 0.0))[0]
            for t in types
        },
        holding=holding,
    )
    seq = memory.launch_seq
    parts: list[Decision] = []
    for t in types:
        pools = {o.zone for o in by_type[t]}
        sub_spec = replace(
            spec,
            service=replace(
                spec.service,
                replica_policy=_fixed(
                    rp, counts[t], lead=t == lead, spare=t == largest, fallback=falls_back[t]
                ),
            ),
        )
        sub_observed = Observation(
            tuple(r for r in observed.replicas if r.zone in pools), tuple(by_type[t])
        )
        sub_signals = Signals(
            notices=tuple(n for n in signals.notices if n.zone in pools),
            launch_results=tuple(x for x in signals.launch_results if x.zone in pools),
        )
        sub_memory = replace(groups.get(t, Memory()), launch_seq=seq, **_rollout(memory))
        part = decide_with(HEDGEFORM, sub_spec, sub_observed, sub_signals, sub_memory, now)
        if t in holding and part.launches:
            part = replace(part, launches=())
            reasons.append(f"{t}: launches nothing while it drains")
        seq = part.memory.launch_seq
        groups[t] = part.memory
        parts.append(part)
        reasons.extend(f"{t}: {r}" for r in part.reasons)
    desired: dict[tuple[str, Market], int] = {}
    for part in parts:
        desired.update(part.desired)
    lead_memory = groups[lead]
    return Decision(
        target=sum(counts.values()),
        desired=desired,
        launches=tuple(x for part in parts for x in part.launches),
        terminations=tuple(x for part in parts for x in part.terminations),
        lb_members=tuple(sorted({m for part in parts for m in part.lb_members})),
        memory=replace(
            memory,
            target=step.target,
            upscale_since=step.upscale_since,
            downscale_since=step.downscale_since,
            launch_seq=seq,
            groups=tuple((t, groups[t]) for t in types),
            **_rollout(lead_memory),
            **_replica_view([groups[t] for t in types]),
        ),
        reasons=tuple(reasons),
    )


def _rollout(memory: Memory) -> dict[str, Any]:
    """The service-version fields (policy/rollout.py): one rollout for the whole service, so
    every type starts a tick from the service's and the service keeps the lead type's."""
    return {
        "versions": memory.versions,
        "version": memory.version,
        "stable_version": memory.stable_version,
        "rollout_failures": memory.rollout_failures,
    }


def _left_mix(memory: Memory, places: set[str]) -> Memory:
    """The service's memory once it runs one type again: no type memories, and no spot
    placer, capacity or crash-loop state about pools it no longer has (`places`: its zones)."""
    return replace(
        memory,
        groups=(),
        zone_status={z: s for z, s in memory.zone_status.items() if z in places},
        zone_backoff={z: b for z, b in memory.zone_backoff.items() if z in places},
        crash_backoff={
            k: b for k, b in memory.crash_backoff.items() if k.rsplit("/", 1)[0] in places
        },
    )


def _replica_view(groups: Sequence[Memory]) -> dict[str, Any]:
    """What the types' memories know per replica and per pool, merged for readers of the
    service's memory (the engine's draining and waits, `status`): warned and preempted
    replicas, lifecycle verdicts, measured cold starts, spot capacity and crash-loop retry
    delays. Each type's own memory stays the one the policy reads."""
    return {
        "warned": tuple(sorted({w for g in groups for w in g.warned})),
        "recent_preemptions": tuple(sorted({p for g in groups for p in g.recent_preemptions})),
        "ready_once": frozenset().union(*(g.ready_once for g in groups)),
        "failing_since": {k: v for g in groups for k, v in g.failing_since.items()},
        "ready_since": {k: v for g in groups for k, v in g.ready_since.items()},
        "failed": {k: v for g in groups for k, v in g.failed.items()},
        "cold_starts": max((g.cold_starts for g in groups), key=len, default=()),
        # by pool (each type's own places), for `status`'s retry and crash-loop lines
        "zone_backoff": {k: v for g in groups for k, v in g.zone_backoff.items()},
        "crash_backoff": {k: v for g in groups for k, v in g.crash_backoff.items()},
    }


@lru_cache(maxsize=4096)
def _choose(
    profile: Profile,
    rate: float,
    prices: tuple[tuple[str, float], ...],
    prev: tuple[tuple[str, int], ...],
    cold_start_s: float,
    hold_s: float,
    caps: tuple[tuple[str, int], ...] = (),
    max_total: int | None = None,
    beyond: tuple[tuple[str, tuple[int, float]], ...] = (),
    spare: tuple[tuple[str, float], ...] = (),
    ready: tuple[tuple[str, int], ...] | None = None,
    cover: tuple[tuple[str, float], ...] = (),
) -> MixChoice:
    """`choose_mix`, remembered: the same inputs recur tick after tick (a deterministic
    function of them, so caching changes no decision, only the time a tick takes)."""
    return choose_mix(
        profile,
        rate,
        dict(prices),
        dict(prev),
        cold_start_s=cold_start_s,
        hold_s=hold_s,
        caps=dict(caps),
        max_total=max_total,
        beyond=dict(beyond),
        spare=dict(spare),
        ready=None if ready is None else dict(ready),
        cover=dict(cover),
    )


def _offers_by_type(offers: Sequence[ZoneOffer]) -> dict[str, list[ZoneOffer]]:
    found: dict[str, list[ZoneOffer]] = {}
    for offer in offers:
        found.setdefault(offer.accelerator, []).append(offer)
    return found


def _requests_per_replica(policy: ReplicaPolicy, mix: MixSettings, accelerator: str) -> float:
    """What one replica of `accelerator` serves: its capacity in the sidecar's profile (the
    size-oblivious one, spec/sidecar.py), else its per-accelerator target, else the one
    target, else 1 (every type alike: the mix then runs the cheapest per replica); times the
    sidecar's headroom (`max_utilization`)."""
    capacity = mix.serves(accelerator) or policy.target_for(accelerator) or 1.0
    return capacity * mix.max_utilization


def _units_policy(policy: ReplicaPolicy, unit: float, largest: float) -> ReplicaPolicy:
    """The autoscaler over units of `unit` requests/s (module docstring, step 1): at most
    what `max_replicas` replicas of the largest type serve, so the mix always fits in
    `max_replicas` (the total cap the mix is solved with)."""
    widest = math.floor(policy.upper * largest / unit + 1e-9)
    sized = policy.target_qps_per_replica is not None or bool(policy.target_qps_per_accelerator)
    return replace(
        policy,
        target_qps_per_replica=unit if sized else None,
        target_qps_per_accelerator={},
        max_replicas=max(widest, policy.min_replicas),
    )


def _spot_pools(
    offers: Sequence[ZoneOffer],
    group: Memory | None,
    observed: Observation,
    warned: frozenset[str],
    signals: Signals,
    now: float,
) -> tuple[list[float], list[tuple[float, int]]]:
    """A type's spot pools (module docstring, step 2): the prices of those that may offer
    spot now, and (price, replicas held) of those that refused or lost spot lately, this
    tick's signals included: a preemption or a capacity refusal now marks its pool, a spot
    launch that succeeded clears it. A warning alone does not: it says one replica will go,
    not that the pool holds no spot (the type's placer still avoids the pool). A marked
    pool holds its READY spot replicas not under a warning or preempted: what it was seen
    to hold (a replica still starting there may yet be refused)."""
    hit: dict[str, float] = {}
    if group is not None:
        for _, zone, at in group.recent_preemptions:
            hit[zone] = max(hit.get(zone, at), at)
        for zone, backoff in group.zone_backoff.items():
            hit[zone] = max(hit.get(zone, backoff.last_at), backoff.last_at)
    fresh = [n.zone for n in signals.notices if n.kind is NoticeKind.PREEMPTED]
    fresh += [
        x.zone
        for x in signals.launch_results
        if x.market is Market.SPOT and not x.ok and x.failure is FailureKind.CAPACITY
    ]
    hit.update(dict.fromkeys(fresh, now))
    # The placer's own rule (placement.update_status), as the type's SpotHedge will apply it.
    status = update_status(
        group.zone_status if group is not None else {},
        [o.zone for o in offers],
        fresh,
        (x.zone for x in signals.launch_results if x.market is Market.SPOT and x.ok),
        reset=False,
    )
    gone = {n.replica_id for n in signals.notices if n.kind is NoticeKind.PREEMPTED} | warned
    open_prices: list[float] = []
    held: list[tuple[float, int]] = []
    for offer in offers:
        if offer.spot_price is None:
            continue
        recent = now - hit.get(offer.zone, -math.inf) < PREEMPTION_MEMORY_SECONDS
        if status.get(offer.zone) is ZoneStatus.PREEMPTED and recent:
            holds = sum(
                1
                for r in observed.replicas
                if r.zone == offer.zone and r.market is Market.SPOT and r.ready
                and r.id not in gone
            )  # fmt: skip
            held.append((offer.spot_price, holds))
        else:
            open_prices.append(offer.spot_price)
    return open_prices, held


def _spare_price(
    spec: ServiceSpec,
    offers: Sequence[ZoneOffer],
    group: Memory | None,
    observed: Observation,
    open_spot: Sequence[float],
    cold: float,
    now: float,
) -> float:
    """$/h the spare (`num_overprovision`) adds when it is of this type: its cheapest open
    spot price per spare, if the type's SpotHedge would run it now (spare_risk.py, with the
    service's measured cold start where the type has none yet); 0 if not, or if no pool of
    the type may offer spot (a spare is spot only: it would not be launched)."""
    count = spec.service.replica_policy.num_overprovision
    if not count or not spec.resources.use_spot or not open_spot:
        return 0.0
    memory = group or Memory()
    if HEDGEFORM.adaptive_spare:
        pools = {o.zone for o in offers}
        needed, _ = spare_needed(
            offers,
            (r.zone for r in observed.replicas if r.zone in pools and r.market is Market.SPOT),
            memory.cold_start_s or cold or None,
            memory.spare_until,
            now,
            documented_prior=HEDGEFORM.documented_prior,
        )
        if not needed:
            return 0.0
    return count * min(open_spot)


def _drain_last(
    counts: dict[str, int],
    prev: Mapping[str, int],
    ready: Mapping[str, int],
    serves: Mapping[str, float],
    rate: float,
    reasons: list[str],
) -> dict[str, int]:
    """Shrink a type only once the new mix's ready replicas carry `rate` (step 4); until
    then a shrinking type keeps the replicas of it that are ready, and replaces none."""
    shrinking = [t for t in counts if counts[t] < prev.get(t, 0)]
    if not shrinking:
        return counts
    carried = sum(min(ready.get(t, 0), n) * serves[t] for t, n in counts.items())
    if carried >= rate - 1e-9:
        return counts
    held = {
        t: max(n, min(prev.get(t, 0), ready.get(t, 0))) if t in shrinking else n
        for t, n in counts.items()
    }
    reasons.append(
        f"keeping {', '.join(f'{held[t]} ready × {t}' for t in shrinking)} until the new mix "
        f"carries {rate:g} req/s ({carried:g} ready)"
    )
    return held


def _ready_by_type(
    observed: Observation,
    by_type: Mapping[str, list[ZoneOffer]],
    warned: frozenset[str],
    market: Market | None = None,
) -> dict[str, int]:
    """READY replicas per type (of `market` only, if given), leaving out those under a
    preemption warning (`warned`)."""
    pool_type = {o.zone: t for t, offers in by_type.items() for o in offers}
    ready: dict[str, int] = {}
    for r in observed.replicas:
        t = pool_type.get(r.zone)
        if t is None or not r.ready or r.id in warned:
            continue
        if market is not None and r.market is not market:
            continue
        ready[t] = ready.get(t, 0) + 1
    return ready


def _falls_back(
    dynamic: bool,
    rate: float,
    *,
    spot_rps: float,
    kept_rps: float,
    at_spot: Mapping[str, bool],
    holding: set[str],
) -> dict[str, bool]:
    """Per type, whether its SpotHedge covers its spot that is not ready with on-demand
    (`dynamic_ondemand_fallback`; module docstring, step 5). SkyServe's rule in requests/s:
    no type falls back while the ready spot of every type (`spot_rps`) carries `rate`. A
    type switching in at spot (`at_spot`, not `holding`) also counts the ready on-demand
    replicas a draining type keeps (`kept_rps`): they serve until the new type is ready,
    so buying on-demand beside its spot would pay twice for the same cover. A type the mix
    priced at on-demand (its spot gone) falls back as before: on-demand is what it was
    chosen for."""
    return {
        t: dynamic and spot_rps + (kept_rps if spot and t not in holding else 0.0) < rate - 1e-9
        for t, spot in at_spot.items()
    }


def _fixed(
    policy: ReplicaPolicy, count: int, *, lead: bool, spare: bool, fallback: bool
) -> ReplicaPolicy:
    """One type's share as a fixed-size SpotHedge service (step 5)."""
    return ReplicaPolicy(
        min_replicas=count,
        max_replicas=count,
        upscale_delay_seconds=policy.upscale_delay_seconds,
        downscale_delay_seconds=policy.downscale_delay_seconds,
        num_overprovision=policy.num_overprovision if spare and count else 0,
        base_ondemand_fallback_replicas=min(count, policy.base_ondemand_fallback_replicas)
        if lead
        else 0,
        dynamic_ondemand_fallback=fallback,
        spot_placer=policy.spot_placer,
    )


def _shown(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} × {t}" for t, n in counts.items() if n) or "nothing"
