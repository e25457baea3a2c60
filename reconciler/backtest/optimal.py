"""The omniscient `optimal` baseline: the cheapest spot/on-demand plan that knows the whole trace.

Semantics (the backtest simulator's, simulator.py): a tick is 30 s; a replica costs from its
launch tick (spot `spot_cost`, on-demand `od_cost` per replica-tick). A replica launched at tick
s is observed READY `cold` ticks later (at the decision of tick s + cold) and, like every
readiness in the simulator, counts for availability from the tick after that: it is *ready* at
tick t when it was launched at or before `t - lag`, with `lag = cold + 1`, and is still alive at
t. Spot replicas in zone z never exceed `capacity[z, t]` (an omniscient planner never holds what
would be preempted); on-demand is always available. Ready replicas must be >= `R[t]` at every
tick t >= `lag` (the simulator's `first_scored_tick`); before that nothing launched at 0 can
count, so nothing is required (R[t] = 0 for t < lag). At window start nothing exists. `R` is
the target, or under a request-rate workload the demand per tick: `ceil(qps / qps per replica)`
clamped to [min, max] replicas, the autoscaler's raw need without its delays (`demand`).

The plan launches on ticks only (it needs no notices). With a cold start of a whole number of
ticks a launch between two ticks is never better than one at the next tick, so the plan is a
lower bound for every policy the simulator runs. With any other cold start, a policy woken
between ticks by a notice can get a replica counted at the same tick and pay up to one
replica-tick less for it than a plan on ticks (seen on random small traces: 162 vs 163 units,
45 s cold start, 20 s notices); the plan is still exact on the tick grid.

Model (solved by HiGHS). On-demand is one more "pool" besides the zones. Per pool p and tick t:
integer `x[p, t]` alive, launches `a[p, t] >= max(0, x[p, t] - x[p, t-1])` (`x[p, -1] = 0`),
and for every t >= lag the cover

    sum_p ( x[p, t] - sum_{s = t-lag+1 .. t} a[p, s] )  >=  R[t],

minimising `spot_cost * sum(spot x) + od_cost * sum(od x)`.

Why the launch form is exact (same optimum as "ready = min(x[t-lag .. t])", which is what a
planner that keeps its oldest replicas gets; it picks which replica to stop, and never exceeds
capacity, so it always can keep the oldest):

* Never optimistic: `x[t] <= x[t-k] + (launches in (t-k, t])` for k <= lag, so each pool's term
  is <= min(x[t-lag .. t]) and the cover implies the real ready count meets the target.
* Loses nothing: given an optimal plan with ready counts r (lowered to sum to `R[t]`),
  `x'[t] = max(r[t .. t+lag])` is no dearer (x' <= x: a replica ready at t+k <= t+lag was
  alive at t), so equal to x when costs are positive. If x' rises at s to v, it stays >= v
  until s+lag, so no replica is stopped before it is ready and exactly `x'[t] - (launches in
  (t-lag, t])` replicas are ready. The same fact gives x <= max(R) in every pool, a valid bound
  that tightens the LP.

Exact time compression. Let B be the ticks where any zone's capacity changes and C the ticks
where the requirement changes (R[t] != R[t-1], with R = 0 before `lag`; a constant target has
C ⊆ {lag}). Some optimal plan launches only at ticks in {0} ∪ B ∪ (B - lag) ∪ (C - lag) and
stops replicas (its alive count falls) only at ticks in {lag} ∪ B ∪ (B + lag) ∪ C. Proof: view a
plan as replica intervals; group the events whose *coverage time* is θ (launches at θ - lag,
stops at θ). Shifting a whole group by ±1 changes the ready count only at tick θ: +1 (later)
makes it the ready count at θ-1, which met R[θ-1]; -1 (earlier) carries the count at θ, which
met R[θ], to θ-1. Both are fine when R[θ-1] = R[θ] and θ > lag, i.e. θ ∉ {lag} ∪ C. Capacity
is untouched if θ ∉ B (stops moved later) and θ - lag ∉ B (launches moved earlier), once
same-pool launch+stop pairs at one tick are merged into one replica (no dearer, fewer
replicas). The cost changes linearly in the shift, so for a free θ (∉ {lag} ∪ B ∪ (B + lag)
∪ C) a nonzero slope contradicts optimality, and with slope 0 the group moves earlier at equal
cost; an optimal plan with fewest replicas, then earliest events, therefore has no event at a
free θ. So x is constant between consecutive ticks of E = {0, lag} ∪ B ∪ (B ± lag) ∪ C ∪
(C - lag): the model uses one column per pool per such block (weighted by its length) and one
cover row per block, at its first tick, which dominates the block's other ticks (its window
holds the most launches, and R is constant on the block since C ⊆ E). With a constant target
a window of 2,880 ticks shrinks to a few hundred blocks; a request-rate demand that changes
every minute leaves about every other tick. Tests check both against the per-tick model and a
brute force.

The LP relaxation has been integral on every instance tried (800 trace windows, 3,000 small
random ones), so the LP is solved first and the MILP (mip_rel_gap 0) only if some alive count
comes back fractional. On the four SpotHedge trace sets a 24 h window takes ~10-30 ms, and the
compressed optimum equalled the per-tick one on all 48 windows compared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import highspy
import numpy as np

from reconciler.errors import OptimalError

_INTEGRAL_TOL = 1e-6


@dataclass(frozen=True)
class OptimalPlan:
    cost_units: float  # total cost over the window (spot 1, od 3 per replica-tick by default)
    spot_alive: np.ndarray  # (zones, ticks) ints
    od_alive: np.ndarray  # (ticks,) ints
    ready: np.ndarray  # (ticks,) ready replicas (spot + od) per tick
    spot_launches: int
    od_launches: int


def ready_counts(alive: np.ndarray, cold_ticks: int) -> np.ndarray:
    """Ready replicas per tick when the oldest are kept: the min of `alive` over [t-lag, t],
    `lag = cold_ticks + 1` (module docstring).

    `alive` is (pools, ticks) or (ticks,); ticks before 0 count as nothing alive.
    """
    arr = np.atleast_2d(np.asarray(alive, dtype=np.int64))
    ready = arr.copy()
    for k in range(1, cold_ticks + 2):
        if k >= arr.shape[1]:
            ready[:] = 0
            break
        ready[:, :k] = 0
        np.minimum(ready[:, k:], arr[:, :-k], out=ready[:, k:])
    return ready.reshape(np.shape(alive))


def count_launches(alive: np.ndarray) -> int:
    """Launches implied by an alive series: the sum of its positive increments, from 0."""
    arr = np.atleast_2d(np.asarray(alive, dtype=np.int64))
    return int(np.maximum(np.diff(arr, axis=1, prepend=0), 0).sum())


def block_starts(
    capacity: np.ndarray, cold_ticks: int, required: np.ndarray | None = None
) -> np.ndarray:
    """First ticks of the blocks on which some optimal plan is constant (see module doc);
    `required` is R per tick (None: constant)."""
    ticks = capacity.shape[1]
    lag = cold_ticks + 1
    changes = np.flatnonzero(np.any(capacity[:, 1:] != capacity[:, :-1], axis=0)) + 1
    steps = np.zeros(0, dtype=np.int64)
    if required is not None:
        steps = np.flatnonzero(required[1:] != required[:-1]) + 1
    starts = np.concatenate([[0, lag], changes, changes - lag, changes + lag, steps, steps - lag])
    starts = starts[(starts >= 0) & (starts < ticks)]
    return np.unique(starts).astype(np.int64)


def solve_window(
    capacity: np.ndarray,
    *,
    target: int | np.ndarray,
    cold_ticks: int,
    spot_cost: float = 1.0,
    od_cost: float = 3.0,
    time_limit_s: float = 120.0,
) -> OptimalPlan:
    """The least-cost plan for one window of `capacity` (zones x ticks), solved by HiGHS.

    `target`: replicas required at every scored tick, or one requirement per tick (a
    request-rate workload's demand; its values before `cold_ticks + 1` are not required)."""
    return _solve(
        capacity,
        target=target,
        cold_ticks=cold_ticks,
        spot_cost=spot_cost,
        od_cost=od_cost,
        time_limit_s=time_limit_s,
        compress=True,
    )


def _solve(
    capacity: np.ndarray,
    *,
    target: int | np.ndarray,
    cold_ticks: int,
    spot_cost: float,
    od_cost: float,
    time_limit_s: float,
    compress: bool,
) -> OptimalPlan:
    """`solve_window`, optionally on the per-tick grid (the tests' reference for compression)."""
    cap = np.maximum(np.asarray(capacity, dtype=np.int64), 0)
    if cap.ndim != 2:
        raise OptimalError(f"capacity must be (zones, ticks), got shape {cap.shape}")
    if cold_ticks < 0:
        raise OptimalError(f"cold_ticks must be >= 0, got {cold_ticks}")
    zones, ticks = cap.shape
    required = _required(target, ticks, cold_ticks)
    if not (spot_cost > 0 and od_cost > 0):
        raise OptimalError(f"costs must be positive, got spot {spot_cost} and od {od_cost}")
    if ticks == 0 or not required.any():
        nothing = np.zeros((zones, ticks), dtype=np.int64)
        return OptimalPlan(0.0, nothing, np.zeros(ticks, np.int64), np.zeros(ticks, np.int64), 0, 0)

    if compress:
        starts = block_starts(cap, cold_ticks, required)
    else:
        starts = np.arange(ticks, dtype=np.int64)
    lengths = np.diff(starts, append=ticks)
    lag = cold_ticks + 1  # launched at s: observed READY at s + cold, counted from the tick after
    block_alive = _solve_blocks(
        cap[:, starts],
        starts,
        lengths,
        required=required[starts],
        lag=lag,
        costs=(spot_cost, od_cost),
        time_limit_s=time_limit_s,
    )
    alive = np.repeat(block_alive, lengths, axis=1)
    spot_alive, od_alive = alive[:zones], alive[zones]
    ready = ready_counts(alive, cold_ticks).sum(axis=0)
    if np.any(spot_alive > cap) or np.any(ready < required):
        raise OptimalError("HiGHS returned a plan that breaks the capacity or the target")
    return OptimalPlan(
        cost_units=float(spot_cost * spot_alive.sum() + od_cost * od_alive.sum()),
        spot_alive=spot_alive,
        od_alive=od_alive,
        ready=ready,
        spot_launches=count_launches(spot_alive),
        od_launches=count_launches(od_alive),
    )


def _required(target: int | np.ndarray, ticks: int, cold_ticks: int) -> np.ndarray:
    """R per tick: `target` (or its per-tick values) from `cold_ticks + 1` on, 0 before."""
    arr = np.asarray(target, dtype=np.int64)
    if arr.ndim == 0:
        arr = np.full(ticks, int(arr), dtype=np.int64)
    elif arr.shape != (ticks,):
        raise OptimalError(f"a per-tick target needs {ticks} values, got shape {arr.shape}")
    if arr.size and arr.min() < 0:
        raise OptimalError(f"the target must be >= 0, got {int(arr.min())}")
    required = arr.copy()
    required[: cold_ticks + 1] = 0
    return required


def _solve_blocks(
    block_cap: np.ndarray,
    starts: np.ndarray,
    lengths: np.ndarray,
    *,
    required: np.ndarray,
    lag: int,
    costs: tuple[float, float],
    time_limit_s: float,
) -> np.ndarray:
    """Alive replicas per pool (zones, then on-demand) and block, from the launch-form model."""
    zones, blocks = block_cap.shape
    pools = zones + 1
    n_x = pools * blocks
    x_idx = np.arange(n_x, dtype=np.int64).reshape(pools, blocks)
    a_idx = x_idx + n_x

    # Launch rows: a[p, j] - x[p, j] + x[p, j-1] >= 0.
    rows = [x_idx.ravel(), x_idx.ravel(), x_idx[:, 1:].ravel()]
    cols = [a_idx.ravel(), x_idx.ravel(), x_idx[:, :-1].ravel()]
    vals = [np.ones(n_x), -np.ones(n_x), np.ones(pools * (blocks - 1))]

    # Cover rows, one per block starting at or after `lag`: alive minus recent launches.
    covered = np.flatnonzero(starts >= lag)
    cover_row = n_x + np.arange(covered.size, dtype=np.int64)
    rows.append(np.repeat(cover_row, pools))
    cols.append(x_idx[:, covered].T.ravel())
    vals.append(np.ones(covered.size * pools))
    # Launches count against block j's cover if they start in (starts[j] - lag, starts[j]].
    first = np.searchsorted(starts, starts[covered] - lag, side="right")
    count = covered + 1 - first
    recent_row = np.repeat(cover_row, count)
    recent = np.arange(recent_row.size) - np.repeat(np.cumsum(count) - count, count)
    recent += np.repeat(first, count)
    rows.append(np.repeat(recent_row, pools))
    cols.append(a_idx[:, recent].T.ravel())
    vals.append(-np.ones(recent.size * pools))

    row = np.concatenate(rows)
    col = np.concatenate(cols)
    val = np.concatenate(vals)
    order = np.lexsort((row, col))
    a_start = np.searchsorted(col[order], np.arange(2 * n_x + 1)).astype(np.int32)

    spot_cost, od_cost = costs
    unit = np.empty((pools, blocks))
    unit[:zones], unit[zones] = spot_cost, od_cost
    upper = np.empty((pools, blocks))
    target = int(required.max())  # no pool ever needs more (module docstring)
    upper[:zones], upper[zones] = np.minimum(block_cap, target), target
    num_row = n_x + covered.size

    highs: Any = highspy.Highs  # highspy's type hints are partial: treat the solver as Any
    h = highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(time_limit_s))
    h.setOptionValue("mip_rel_gap", 0.0)
    status = h.passModel(
        2 * n_x,
        num_row,
        int(val.size),
        int(highspy.MatrixFormat.kColwise),
        int(highspy.ObjSense.kMinimize),
        0.0,
        np.concatenate([(unit * lengths).ravel(), np.zeros(n_x)]),
        np.zeros(2 * n_x),
        np.concatenate([upper.ravel(), np.full(n_x, float(target))]),
        np.concatenate([np.zeros(n_x), required[covered].astype(np.float64)]),
        np.full(num_row, highspy.kHighsInf),
        a_start,
        row[order].astype(np.int32),
        val[order],
        np.zeros(2 * n_x, dtype=np.int32),  # the LP first: its optimum is usually integral
    )
    if status == highspy.HighsStatus.kError:
        raise OptimalError("HiGHS rejected the optimal-baseline model")
    values: np.ndarray = _run(h, zones, blocks, target)[:n_x]
    if np.abs(values - np.rint(values)).max(initial=0.0) > _INTEGRAL_TOL:
        h.changeColsIntegrality(
            n_x,
            np.arange(n_x, dtype=np.int32),
            np.full(n_x, int(highspy.HighsVarType.kInteger), dtype=np.uint8),
        )
        values = _run(h, zones, blocks, target)[:n_x]
    alive: np.ndarray = np.rint(values).astype(np.int64)
    return alive.reshape(pools, blocks)


def _run(h: Any, zones: int, blocks: int, target: int) -> np.ndarray:
    """Solve the loaded model and return its column values, or raise `OptimalError`."""
    h.run()
    model_status = h.getModelStatus()
    if model_status != highspy.HighsModelStatus.kOptimal:
        raise OptimalError(
            f"HiGHS found no optimal plan: {h.modelStatusToString(model_status)} "
            f"({zones} zones, {blocks} blocks, target {target})"
        )
    return np.asarray(h.getSolution().col_value, dtype=np.float64)
