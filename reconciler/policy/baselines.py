"""Baseline policies the backtest compares SpotHedge against (docs/backtest.md).

They share `decide`'s signature so the same simulator drives them:
  ondemand     `target` on-demand replicas, no spot.
  even_spread  `target + num_overprovision` spot replicas balanced across zones: each launch
               goes to the zone with the fewest, skipping zones whose launch just failed
               (an autoscaling group's AZ balancing).
  round_robin  `target + num_overprovision` spot replicas; each launch goes to the next zone
               in rotation, whatever happened there.
  static       a fixed split like an autoscaling group with mixed instances: one on-demand
               base replica (or `base_ondemand_fallback_replicas` if larger) and the rest spot,
               placed as even_spread places them. No dynamic fallback.
None of them falls back to on-demand when spot disappears.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from reconciler.policy.autoscaling import next_target
from reconciler.policy.changes import assemble, hold, launch_many, pick_by_order, replica_id
from reconciler.policy.decision import Decision, Launch, PolicyFn
from reconciler.policy.lifecycle import judge
from reconciler.policy.memory import Memory
from reconciler.policy.observation import Market, Observation, Replica
from reconciler.policy.placement import choose_on_demand_zone
from reconciler.policy.signals import Signals
from reconciler.spec.model import ServiceSpec


def _counts(replicas: list[Replica]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in replicas:
        counts[r.zone] = counts.get(r.zone, 0) + 1
    return counts


def _fixed_split(
    name: str,
    spec: ServiceSpec,
    observed: Observation,
    signals: Signals,
    memory: Memory,
    now: float,
    *,
    spot_wanted: int,
    od_wanted: int,
    target: int,
    rotate_all: bool,
    skip_zones: frozenset[str] = frozenset(),
) -> Decision:
    alive = [r for r in observed.replicas if r.alive]
    spot = [r for r in alive if r.market is Market.SPOT]
    od = [r for r in alive if r.market is Market.ON_DEMAND]
    spot_zones = sorted(o.zone for o in observed.zones if o.spot_price is not None)
    seq = memory.launch_seq
    launches: list[Launch] = []
    stopping: list[tuple[Replica, str]] = []
    if len(spot) < spot_wanted and spot_zones:
        counts = _counts(spot)
        need = spot_wanted - len(spot)
        if rotate_all:  # round_robin: next zone in turn, whatever happened there
            for _ in range(need):
                zone = spot_zones[seq % len(spot_zones)]
                launches.append(Launch(replica_id(zone, Market.SPOT, seq), zone, Market.SPOT, name))
                seq += 1
        else:  # balanced across zones, skipping those that just failed
            usable = [z for z in spot_zones if z not in skip_zones] or spot_zones

            def choose(c: dict[str, int], s: int) -> str:
                fewest = min(c.get(z, 0) for z in usable)
                tied = [z for z in usable if c.get(z, 0) == fewest]
                return tied[s % len(tied)]

            new, seq = launch_many(need, Market.SPOT, seq, counts, choose, name)
            launches.extend(new)
    elif len(spot) > spot_wanted:
        stopping.extend((r, name) for r in pick_by_order(spot, len(spot) - spot_wanted))
    if len(od) < od_wanted:
        new, seq = launch_many(
            od_wanted - len(od),
            Market.ON_DEMAND,
            seq,
            _counts(od),
            lambda c, s: choose_on_demand_zone(observed.zones, c, s),
            name,
        )
        launches.extend(new)
    elif len(od) > od_wanted:
        stopping.extend((r, name) for r in pick_by_order(od, len(od) - od_wanted))
    new_memory = replace(memory, target=target, launch_seq=seq)
    return assemble(
        target=target,
        observed=observed,
        launches=launches,
        stopping=stopping,
        memory=new_memory,
        reasons=(name,),
    )


def _failed_zones(signals: Signals) -> frozenset[str]:
    return frozenset(r.zone for r in signals.launch_results if not r.ok)


def _target(spec: ServiceSpec, signals: Signals, memory: Memory, now: float) -> tuple[int, Memory]:
    step = next_target(spec.service.replica_policy, signals, memory, now)
    return step.target, replace(
        memory, upscale_since=step.upscale_since, downscale_since=step.downscale_since
    )


@dataclass(frozen=True)
class Split:
    """What a baseline keeps: spot and on-demand counts and how spot is placed."""

    spot: int
    on_demand: int
    rotate_all: bool = False  # round_robin: next zone in turn, whatever happened there
    skip_failed: bool = True  # even_spread/static: avoid a zone whose launch just failed


SplitFn = Callable[[ServiceSpec, int], Split]


def _baseline(name: str, split: SplitFn) -> PolicyFn:
    """A policy from its fixed split: autoscaler target, then keep the split."""

    def decide(
        spec: ServiceSpec, observed: Observation, signals: Signals, memory: Memory, now: float
    ) -> Decision:
        if not observed.complete:
            return hold(observed, memory, "observation incomplete")
        judged = judge(spec.service.readiness_probe, observed.replicas, memory, now)
        observed, memory = replace(observed, replicas=judged.replicas), judged.memory
        target, memory = _target(spec, signals, memory, now)
        s = split(spec, target)
        decision = _fixed_split(
            name, spec, observed, signals, memory, now,
            spot_wanted=s.spot, od_wanted=s.on_demand, target=target, rotate_all=s.rotate_all,
            skip_zones=_failed_zones(signals) if s.skip_failed else frozenset(),
        )  # fmt: skip
        return replace(decision, reasons=(*decision.reasons, *judged.reasons))

    decide.__name__ = name
    return decide


def _spread(spec: ServiceSpec, target: int) -> int:
    return target + spec.service.replica_policy.num_overprovision


def _static_split(spec: ServiceSpec, target: int) -> Split:
    od = min(target, max(1, spec.service.replica_policy.base_ondemand_fallback_replicas))
    return Split(spot=_spread(spec, target) - od, on_demand=od)


ondemand = _baseline("ondemand", lambda spec, target: Split(spot=0, on_demand=target))
even_spread = _baseline(
    "even_spread", lambda spec, target: Split(spot=_spread(spec, target), on_demand=0)
)
round_robin = _baseline(
    "round_robin",
    lambda spec, target: Split(
        spot=_spread(spec, target), on_demand=0, rotate_all=True, skip_failed=False
    ),
)
static = _baseline("static", _static_split)
