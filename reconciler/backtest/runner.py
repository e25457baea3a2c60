"""Run policies over trace sets: seeded 24 h windows, means over repeats, wall time per policy."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from reconciler.backtest.simulator import (
    NoticeModel,
    Pools,
    WindowResult,
    first_scored_tick,
    simulate_window,
)
from reconciler.backtest.workload import Workload
from reconciler.policy import POLICIES, PolicyFn
from reconciler.policy.autoscaling import raw_target
from reconciler.spec.model import (
    ReplicaPolicy,
    Resources,
    ServiceSection,
    ServiceSpec,
)
from reconciler.traces import TraceSet

TICK_SECONDS = 30
WINDOW_TICKS = 2880  # 24 h
OPTIMAL = "optimal"
ALL_POLICIES = (*POLICIES, OPTIMAL)
NOTICE_MODELS = ("perfect", "realistic")


@dataclass(frozen=True)
class BacktestConfig:
    target: int = 3
    overprovision: int = 1
    cold_start_s: int = 120
    repeats: int = 10
    seed: int = 0
    warning_s: int = 120
    workload: str = "constant"
    notice_model: str = "perfect"
    unwarned_share: float = 0.1  # realistic notices only
    lead_jitter_s: float | None = None  # realistic notices only; None: half the warning
    launch_failure_delay_s: int = 60

    @property
    def cold_ticks(self) -> int:
        """Ticks from a launch at a tick to the decision that first observes it READY."""
        return max(1, math.ceil(self.cold_start_s / TICK_SECONDS))

    @property
    def notices(self) -> NoticeModel:
        if self.notice_model == "perfect":
            return NoticeModel(warning_s=self.warning_s)
        jitter = self.warning_s / 2 if self.lead_jitter_s is None else self.lead_jitter_s
        return NoticeModel(self.warning_s, True, self.unwarned_share, jitter)

    def to_json(self) -> dict[str, object]:
        """Every setting that shapes the figures, as the JSON output records them."""
        notices = self.notices
        return {
            "target": self.target,
            "overprovision": self.overprovision,
            "cold_start_s": self.cold_start_s,
            "repeats": self.repeats,
            "seed": self.seed,
            "warning_s": self.warning_s,
            "notice_model": self.notice_model,
            "unwarned_share": notices.unwarned_share if notices.realistic else 0.0,
            "lead_jitter_s": notices.lead_jitter_s if notices.realistic else 0.0,
            "launch_failure_delay_s": self.launch_failure_delay_s,
            "workload": self.workload,
            "tick_s": TICK_SECONDS,
            "window_ticks": WINDOW_TICKS,
        }


@dataclass
class PolicyStats:
    """Means over repeats of one policy on one trace set."""

    cost_pct: float
    availability_pct: float
    preemptions: float
    spot_launches: float
    od_launches: float
    wall_s: float
    repeats: int
    windows: list[WindowResult] = field(default_factory=list, repr=False)

    def to_json(self) -> dict[str, float | int]:
        return {
            "cost_pct": round(self.cost_pct, 2),
            "availability_pct": round(self.availability_pct, 2),
            "preemptions": round(self.preemptions, 2),
            "spot_launches": round(self.spot_launches, 2),
            "od_launches": round(self.od_launches, 2),
            "wall_s": round(self.wall_s, 3),
            "repeats": self.repeats,
        }


def backtest_spec(cfg: BacktestConfig, workload: Workload | None) -> ServiceSpec:
    """The service the backtest serves: SpotHedge settings, fixed or load-driven size."""
    if workload is None:
        rp = ReplicaPolicy(min_replicas=cfg.target, max_replicas=cfg.target)
    else:
        rp = ReplicaPolicy(
            min_replicas=1,
            max_replicas=workload.max_replicas,
            target_qps_per_replica=workload.qps_per_replica,
        )
    rp = ReplicaPolicy(
        **{
            **rp.__dict__,
            "num_overprovision": cfg.overprovision,
            "dynamic_ondemand_fallback": True,
            "spot_placer": "dynamic_fallback",
        }
    )
    return ServiceSpec(
        name="backtest",
        service=ServiceSection(replica_policy=rp),
        resources=Resources(use_spot=True),
    )


def demand(spec: ServiceSpec, qps: np.ndarray) -> np.ndarray:
    """The load's raw need per tick: `ceil(qps / target_qps_per_replica)` clamped to [min, max]
    replicas, the autoscaler's own rule without its up/down delays (what `optimal` serves)."""
    rp = spec.service.replica_policy
    return np.fromiter((raw_target(rp, float(q)) for q in qps), dtype=np.int64, count=len(qps))


def window_starts(ticks: int, cfg: BacktestConfig) -> list[int]:
    """Seeded offsets of the scored windows; the same for every policy, so they compare.

    Drawn as the paper's simulator draws them (numpy's legacy `RandomState(seed).randint(0,
    ticks - window)` per repeat): with the same seed the windows are the same, which is what
    makes our figures comparable to the reference ones (docs/backtest.md).
    """
    window = min(WINDOW_TICKS, ticks)
    if ticks <= window:
        return [0] * cfg.repeats
    rng = np.random.RandomState(cfg.seed)
    return [int(rng.randint(0, ticks - window)) for _ in range(cfg.repeats)]


def run_policy(
    name: str,
    traces: TraceSet,
    cfg: BacktestConfig,
    workload: Workload | None = None,
    progress: Callable[[str], None] | None = None,
) -> PolicyStats:
    capacity = traces.capacity(TICK_SECONDS)
    ticks = capacity.shape[1]
    window = min(WINDOW_TICKS, ticks)
    zones = [z.zone for z in traces.zones]
    spec = backtest_spec(cfg, workload)
    started = time.perf_counter()
    results: list[WindowResult] = []
    for i, start in enumerate(window_starts(ticks, cfg)):
        cap = capacity[:, start : start + window]
        qps = workload.qps_per_tick(start, window, TICK_SECONDS) if workload else None
        if name == OPTIMAL:
            results.append(_optimal_window(cap, cfg, spec, qps))
        else:
            result = replay_window(POLICIES[name], spec, zones, cap, cfg, i, qps=qps)
            if qps is not None:
                result = replace(result, demand=demand(spec, qps))
            results.append(result)
        if progress:
            progress(f"{traces.name} {name}: window {i + 1}/{cfg.repeats}")
    wall = time.perf_counter() - started
    return summarize(results, wall)


def replay_window(
    policy: PolicyFn,
    spec: ServiceSpec,
    zones: Sequence[str],
    cap: np.ndarray,
    cfg: BacktestConfig,
    index: int,
    *,
    qps: np.ndarray | None = None,
    pools: Pools | None = None,
) -> WindowResult:
    """Window `index` of a run with `cfg`'s cold start, notices and refusal delay; its
    realistic notices are seeded by (seed, index), so every policy sees the same ones."""
    return simulate_window(
        policy,
        spec,
        zones,
        cap,
        cold_start_s=cfg.cold_start_s,
        tick_seconds=TICK_SECONDS,
        notices=cfg.notices,
        launch_failure_delay_s=cfg.launch_failure_delay_s,
        rng=np.random.default_rng((cfg.seed, index)),
        qps=qps,
        pools=pools,
    )


def summarize(results: Sequence[WindowResult], wall_s: float) -> PolicyStats:
    n = len(results)
    return PolicyStats(
        cost_pct=sum(r.cost_pct for r in results) / n,
        availability_pct=sum(r.availability_pct for r in results) / n,
        preemptions=sum(r.preemptions for r in results) / n,
        spot_launches=sum(r.spot_launches for r in results) / n,
        od_launches=sum(r.od_launches for r in results) / n,
        wall_s=wall_s,
        repeats=n,
        windows=list(results),
    )


def _optimal_window(
    cap: np.ndarray, cfg: BacktestConfig, spec: ServiceSpec, qps: np.ndarray | None
) -> WindowResult:
    """The omniscient plan for one window: the target at every tick, or under a request-rate
    workload the demand per tick (its requirement and its `targets`)."""
    from reconciler.backtest.optimal import ready_counts, solve_window

    ticks = cap.shape[1]
    need = np.full(ticks, cfg.target, dtype=np.int64) if qps is None else demand(spec, qps)
    plan = solve_window(cap, target=need, cold_ticks=cfg.cold_ticks)
    first = first_scored_tick(cfg.cold_start_s, TICK_SECONDS)  # = cold_ticks + 1, as the ILP's
    ready = np.asarray(plan.ready)
    od_ready = ready_counts(np.asarray(plan.od_alive), cfg.cold_ticks)
    return WindowResult(
        cost_units=float(plan.cost_units),
        baseline_units=3.0 * float(need.sum()),
        scored_ticks=max(0, ticks - first),
        available_ticks=int((ready[first:] >= need[first:]).sum()),
        preemptions=0,
        spot_launches=int(plan.spot_launches),
        od_launches=int(plan.od_launches),
        failed_launches=0,
        ready_spot=(ready - od_ready).astype(np.int32),
        ready_od=od_ready.astype(np.int32),
        targets=need.astype(np.int32),
        demand=None if qps is None else need,
    )
