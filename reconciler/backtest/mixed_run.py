"""Backtests of several GPU types (issue 15): the mix (`hedgeform_mix`) against each type alone.

A trace directory holding several GPU types (`<zone>_<gpu>_<count>.json`; two types of one
zone are two pools) is replayed three ways or more over the same windows: `hedgeform_mix`
over every pool, and the default policy (`hedgeform`) over each type's pools alone, sized to
serve the same rate with that type only. `--types FILE` gives, per type, its on-demand $/h
and the requests/s one replica serves within the SLO (the profile shape of `hedgeform mix`,
one bucket); spot costs a third of on-demand, the ratio the single-type backtest uses (the
SkyServe paper's simulator). Every run is scored the same way:

- availability: the share of scored ticks whose READY replicas serve at least the rate;
- cost: $/h x time, as a percentage of the cheapest on-demand-only way to serve the rate
  (the size-oblivious mix at on-demand prices, `policy/mix.py`).

Every run names a pool as the mix does (`<zone>/<type>`): common random numbers, so the
seeded draws keyed by a pool's name (the retry jitter after a capacity refusal,
policy/capacity_backoff.py) are the same in every run, and a difference between two rows is
the policies', not the draws'.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from reconciler.backtest.runner import (
    TICK_SECONDS,
    WINDOW_TICKS,
    BacktestConfig,
    PolicyStats,
    backtest_spec,
    replay_window,
    summarize,
    window_starts,
)
from reconciler.backtest.simulator import ON_DEMAND_COST, SPOT_COST, Pools
from reconciler.errors import BacktestError
from reconciler.policy import POLICIES, PolicyFn, ZoneOffer
from reconciler.policy.mix import solve_mix
from reconciler.policy.mixed import hedgeform_mix
from reconciler.spec.model import ReplicaPolicy, Resources, ServiceSection, ServiceSpec
from reconciler.spec.profile import Profile
from reconciler.spec.service import MAX_REPLICAS
from reconciler.traces import TraceSet

SPOT_SHARE = SPOT_COST / ON_DEMAND_COST  # spot costs a third of on-demand (module docstring)
MIXED = "hedgeform_mix"


@dataclass(frozen=True)
class MixedSetup:
    """Per type: on-demand $/h and requests/s per replica (one bucket); the rate to serve."""

    profile: Profile
    rate_rps: float

    def serves(self, accelerator: str) -> float:
        gpu = next(g for g in self.profile.gpus if g.name == accelerator)
        return gpu.max_rps[0][0]

    def on_demand(self, accelerator: str) -> float:
        return next(g.usd_per_hour for g in self.profile.gpus if g.name == accelerator)

    @property
    def baseline_usd_per_hour(self) -> float:
        """The cheapest on-demand-only way to serve the rate."""
        return solve_mix(self.profile, self.rate_rps, size_aware=False).usd_per_hour


def for_traces(traces: TraceSet, setup: MixedSetup) -> MixedSetup:
    """`setup` checked against one trace set and named as its files name the types (a types
    file may write `a10g` or `A10G`); BacktestError, one line, unless the set holds several
    named GPU types, each in the types file and none without traces there."""
    unnamed = [z.source.name for z in traces.zones if not z.accelerator]
    if unnamed:
        raise BacktestError(
            f"{traces.name}: {unnamed[0]} names no GPU type (`<zone>_<gpu>_<count>.json`, "
            "count from 1); with --types every file must"
        )
    types = traces.accelerators
    if len(types) < 2:
        raise BacktestError(
            f"{traces.name}: --types needs a directory of several GPU types "
            f"(`<zone>_<gpu>_<count>.json`); it holds {', '.join(types) or 'unnamed ones'}"
        )
    given = {_canonical(g.name): g for g in setup.profile.gpus}
    missing = [t for t in types if t not in given]
    if missing:
        raise BacktestError(
            f"{traces.name}: GPU type {missing[0]} has traces but no entry in --types "
            f"(it has {', '.join(g.name for g in setup.profile.gpus)})"
        )
    extra = [g.name for key, g in given.items() if key not in types]
    if extra:
        raise BacktestError(
            f"{traces.name}: --types gives {extra[0]}, which has no traces there (it holds "
            f"{', '.join(types)}); the mix may only use types it can replay"
        )
    for gpu in setup.profile.gpus:
        if len(gpu.max_rps) != 1 or len(gpu.max_rps[0]) != 1 or gpu.max_rps[0][0] <= 0:
            raise BacktestError(
                f"--types: gpus.{gpu.name}.max_rps must be one number above 0 (requests/s one "
                "replica serves within the SLO)"
            )
    named = MixedSetup(
        Profile(tuple(replace(given[t], name=t) for t in types), setup.profile.distribution),
        setup.rate_rps,
    )
    for t in types:
        need = replicas_for(setup.rate_rps, named.serves(t))
        if need > MAX_REPLICAS:
            raise BacktestError(
                f"--rate {setup.rate_rps:g} needs {need} replicas of {t} alone, more than the "
                f"{MAX_REPLICAS} a service may have; give a lower rate"
            )
    return named


def _canonical(name: str) -> str:
    """A type as trace file names give it (traces.accelerator_of): upper case, `_` as `-`."""
    return name.upper().replace("_", "-")


def pools_of(traces: TraceSet, setup: MixedSetup, names: tuple[str, ...] | None = None) -> Pools:
    """The replay's pools: one offer per trace, priced from the setup, named `names` (one
    per trace; default `traces.pools`)."""
    offers = tuple(
        ZoneOffer(
            pool,
            z.zone.rsplit("-", 1)[0],
            "sim",
            setup.on_demand(z.accelerator) * SPOT_SHARE,
            setup.on_demand(z.accelerator),
            accelerator=z.accelerator if len(traces.accelerators) > 1 else "",
        )
        for pool, z in zip(names or traces.pools, traces.zones, strict=True)
    )
    return Pools(
        offers=offers,
        serve_rps=tuple(setup.serves(z.accelerator) for z in traces.zones),
        demand_rps=setup.rate_rps,
        baseline_per_tick=setup.baseline_usd_per_hour,
    )


def replicas_for(rate_rps: float, serves_rps: float) -> int:
    """Replicas of `serves_rps` requests/s each that carry `rate_rps`: at least one for any
    rate above 0, however small beside a replica; a rate within a billionth (relative) of a
    whole number of replicas is that number (float rounding, not demand)."""
    if rate_rps <= 0:
        return 0
    return max(1, math.ceil(rate_rps / serves_rps * (1 - 1e-9)))


def mixed_spec(setup: MixedSetup, cfg: BacktestConfig) -> ServiceSpec:
    """The mixed service: a fixed capacity of the rate (in units of the smallest type's
    requests/s), per-accelerator targets from the setup, SpotHedge's settings."""
    serves = {g.name: g.max_rps[0][0] for g in setup.profile.gpus}
    units = replicas_for(setup.rate_rps, min(serves.values()))
    rp = ReplicaPolicy(
        min_replicas=units,
        max_replicas=units,
        target_qps_per_accelerator=serves,
        num_overprovision=cfg.overprovision,
        dynamic_ondemand_fallback=True,
        spot_placer="dynamic_fallback",
    )
    return ServiceSpec(
        name="backtest-mix",
        service=ServiceSection(replica_policy=rp),
        resources=Resources(use_spot=True),
    )


def run_mixed(
    traces: TraceSet,
    setup: MixedSetup,
    cfg: BacktestConfig,
    progress: Callable[[str], None] | None = None,
) -> dict[str, PolicyStats]:
    """`hedgeform_mix` over every pool, then `hedgeform` over each type alone (module
    docstring); rows named `hedgeform_mix` and `hedgeform <TYPE> only`. `setup` as
    `for_traces` returns it for `traces`."""
    capacity = traces.capacity(TICK_SECONDS)
    ticks = capacity.shape[1]
    starts = window_starts(ticks, cfg)
    window = min(WINDOW_TICKS, ticks)
    rows: dict[str, PolicyStats] = {}
    runs: list[tuple[str, TraceSet, tuple[int, ...], ServiceSpec, PolicyFn]] = [
        (MIXED, traces, tuple(range(len(traces.zones))), mixed_spec(setup, cfg), hedgeform_mix)
    ]
    for t in traces.accelerators:
        alone = traces.only(t)
        rows_of = tuple(i for i, z in enumerate(traces.zones) if z.accelerator == t)
        need = replicas_for(setup.rate_rps, setup.serves(t))
        spec = backtest_spec(replace(cfg, target=need), None)
        runs.append((f"hedgeform {t} only", alone, rows_of, spec, POLICIES["hedgeform"]))
    for label, subset, rows_of, spec, policy in runs:
        # Common random numbers: a pool keeps the mix's name (`<zone>/<type>`) in every run,
        # so the seeded draws keyed by it (capacity_backoff's retry jitter) are the same.
        pools = pools_of(subset, setup, tuple(traces.pools[i] for i in rows_of))
        cap = capacity[list(rows_of)]
        started = time.perf_counter()
        results = []
        for i, start in enumerate(starts):
            results.append(
                replay_window(
                    policy,
                    spec,
                    [o.zone for o in pools.offers],
                    cap[:, start : start + window],
                    cfg,
                    i,
                    pools=pools,
                )
            )
            if progress:
                progress(f"{traces.name} {label}: window {i + 1}/{cfg.repeats}")
        rows[label] = summarize(results, time.perf_counter() - started)
    return rows
