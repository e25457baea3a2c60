"""Run policies over trace sets: seeded 24 h windows, means over repeats, wall time per policy."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from reconciler.backtest.simulator import WindowResult, simulate_window
from reconciler.backtest.workload import Workload
from reconciler.errors import BacktestError
from reconciler.policy import POLICIES
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


@dataclass(frozen=True)
class BacktestConfig:
    target: int = 3
    overprovision: int = 1
    cold_start_s: int = 120
    repeats: int = 10
    seed: int = 0
    warning_s: int = 120
    workload: str = "constant"

    @property
    def cold_ticks(self) -> int:
        return math.ceil(self.cold_start_s / TICK_SECONDS)


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
            results.append(
                simulate_window(
                    POLICIES[name],
                    spec,
                    zones,
                    cap,
                    cold_ticks=cfg.cold_ticks,
                    tick_seconds=TICK_SECONDS,
                    warning_ticks=cfg.warning_s // TICK_SECONDS,
                    qps=qps,
                )
            )
        if progress:
            progress(f"{traces.name} {name}: window {i + 1}/{cfg.repeats}")
    wall = time.perf_counter() - started
    return summarize(results, wall)


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
    from reconciler.backtest.optimal import solve_window

    if qps is not None:
        raise BacktestError("the optimal policy supports only --workload constant")
    plan = solve_window(cap, target=cfg.target, cold_ticks=cfg.cold_ticks)
    ticks = cap.shape[1]
    scored = max(0, ticks - cfg.cold_ticks)
    ready = np.asarray(plan.ready)
    od_ready = _ready_from_alive(np.asarray(plan.od_alive), cfg.cold_ticks)
    return WindowResult(
        cost_units=float(plan.cost_units),
        baseline_units=3.0 * cfg.target * ticks,
        scored_ticks=scored,
        available_ticks=int((ready[cfg.cold_ticks :] >= cfg.target).sum()),
        preemptions=0,
        spot_launches=int(plan.spot_launches),
        od_launches=int(plan.od_launches),
        failed_launches=0,
        ready_spot=(ready - od_ready).astype(np.int32),
        ready_od=od_ready.astype(np.int32),
        targets=np.full(ticks, cfg.target, dtype=np.int32),
    )


def _ready_from_alive(alive: np.ndarray, cold: int) -> np.ndarray:
    """Replicas alive for the whole `cold` ticks before t (the optimal plan keeps the oldest)."""
    ready = np.zeros_like(alive)
    for t in range(len(alive)):
        lo = t - cold
        ready[t] = 0 if lo < 0 else alive[lo : t + 1].min()
    return ready
