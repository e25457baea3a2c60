"""The cheapest mix of GPU types that serves a request rate within the SLO (issue 15, Mélange).

Mélange (Griggs et al., arXiv 2404.14527) shows that the cheapest way to serve an LLM at a
latency SLO is often a *mix* of GPU types: small requests are cheaper per request on small
GPUs, large ones on large GPUs. Given a throughput profile (`spec.profile.Profile`: per type a
price and, per request-size bucket, the highest rate one instance sustains within the SLO) and
a total rate `r` (requests/s), `solve_mix` returns the integer count per type of least $/h
such that the traffic fits:

- **size-aware** (the load balancer routes by request size): bucket b's traffic `r * d_b` may
  be split freely across types; type t serves a share `s[b, t]` of it (`sum_t s[b, t] = 1`),
  and each type's load `sum_b s[b, t] * r * d_b / (max_rps[t][b] * max_utilization) <= n[t]`
  (an instance at full load is one unit). This is the "continuous split" relaxation of
  Mélange's slicing, so its cost is at most Mélange's for any slice factor (its slices are
  one feasible split).
- **size-oblivious** (the load balancer cannot route by size: every type sees the same mix):
  type t serves a share `s[t]` of the rate with load per request/s `L[t] = sum_b d_b /
  (max_rps[t][b] * max_utilization)`; `sum_t s[t] = 1`, `L[t] * r * s[t] <= n[t]`.

Both also hold `s <= n[t]`: a type that serves any share runs at least one instance, however
far its capacity exceeds the rate (a load of 1e-6 instances is within HiGHS's feasibility
tolerance of none). A rate that would take more than `MAX_INSTANCES` instances of the largest
type is refused, and a type that would need more than `_MOST_LOAD` instances for the whole
rate is left out of a bucket (it could serve less than a millionth of it).

A type's price may step up past a number of instances (`beyond`: spot as far as its pools
hold, on-demand past it): a continuous column `o[t] >= n[t] - limit` at the difference.

An integer program solved exactly by HiGHS (`highspy`, `mip_rel_gap` 0), with a 1e-6 $/h
penalty per instance so that among equally cheap mixes the one with fewer instances wins, then
the cheapest by type order. Pure: no I/O, no clock. Errors: `MixError`, one line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import highspy
import numpy as np

from reconciler.errors import MixError
from reconciler.spec.profile import Profile

TIE_BREAK_USD = 1e-6  # per instance: fewer instances among equally cheap mixes
# A million GPU instances is beyond any cloud's quota for one service; past it the integer
# program's tolerances (1e-6) would no longer tell whole instances apart.
MAX_INSTANCES = 1_000_000
# A type that would need more than this many instances for a whole bucket serves less than
# a millionth of it with MAX_INSTANCES: it is left out of that bucket (its coefficient would
# otherwise be far outside what HiGHS accepts).
_MOST_LOAD = MAX_INSTANCES * 1e6


@dataclass(frozen=True)
class Mix:
    counts: dict[str, int]  # per GPU type, in the profile's order
    usd_per_hour: float  # the counts' and, with `spare`, the spare's
    spare_type: str = ""  # the type the spare is of: the largest the mix runs ("" if none)

    def to_json(self) -> dict[str, Any]:
        return {"mix": dict(self.counts), "usd_per_hour": round(self.usd_per_hour, 6)}


def solve_mix(
    profile: Profile,
    rate_rps: float,
    *,
    size_aware: bool = True,
    max_utilization: float = 1.0,
    caps: Mapping[str, int] | None = None,
    floors: Mapping[str, int] | None = None,
    prices: Mapping[str, float] | None = None,
    max_total: int | None = None,
    beyond: Mapping[str, tuple[int, float]] | None = None,
    spare: Mapping[str, float] | None = None,
) -> Mix:
    """The least-cost integer mix for `rate_rps` (module docstring). `caps`: at most this many
    instances of a type; `floors`: at least this many (e.g. the replicas already running);
    `prices`: $/h overriding the profile's (e.g. the effective price of a type whose spot is
    gone: on-demand); `max_total`: at most this many instances of all types together (a
    service's `max_replicas`); `beyond`: per type `(limit, usd_per_hour)`, the first `limit`
    instances at its price and every further one at `usd_per_hour` (spot as far as its pools
    were seen to hold, on-demand beyond: policy/mixed.py), which must not be below its price;
    `spare`: per type, the $/h its spare adds when it is the largest type the mix runs (the
    most requests/s per instance over the distribution; ties: the first), as SpotHedge's
    spare (`num_overprovision`) must stand in for any replica of the mix (policy/mixed.py).
    MixError if no mix can serve the rate within the caps."""
    if not math.isfinite(rate_rps) or rate_rps < 0:
        raise MixError(f"rate {rate_rps!r} req/s is not a finite, non-negative number")
    if not 0 < max_utilization <= 1:
        raise MixError(f"max_utilization {max_utilization!r} is not in (0, 1]")
    names = [g.name for g in profile.gpus]
    unknown = [
        name
        for given in (caps, floors, prices, beyond, spare)
        for name in sorted(set(given or {}) - set(names))
    ]
    if unknown:
        raise MixError(f"{unknown[0]!r} is not a GPU type of the profile ({', '.join(names)})")
    price = np.array([float((prices or {}).get(g.name, g.usd_per_hour)) for g in profile.gpus])
    upper_n = np.array([float((caps or {}).get(n, highspy.kHighsInf)) for n in names])
    lower_n = np.array([float((floors or {}).get(n, 0)) for n in names])
    if (lower_n > upper_n).any() or (lower_n < 0).any():
        raise MixError("a floor is negative or above its type's cap")
    steps = _steps(names, price, beyond or {})
    share = [profile.distribution[i][j] for i, j in profile.buckets]
    # capacity[t][b]: requests/s one instance of t sustains in bucket b, at the headroom
    capacity = np.array(
        [[g.max_rps[i][j] * max_utilization for i, j in profile.buckets] for g in profile.gpus]
    )
    spares = np.array([float((spare or {}).get(n, 0.0)) for n in names])
    if not np.isfinite(spares).all() or (spares < 0).any():
        raise MixError("a spare's price is not a finite, non-negative number")
    size = capacity @ np.array(share)  # mean requests/s of an instance over the distribution
    if rate_rps == 0:
        lead = _largest(size, lower_n > 0)
        return Mix(
            {n: int(f) for n, f in zip(names, lower_n, strict=True)},
            _cost(price, steps, lower_n) + (float(spares[lead]) if lead is not None else 0.0),
            names[lead] if lead is not None else "",
        )
    if rate_rps > MAX_INSTANCES * float(capacity.max(initial=0.0)):
        raise MixError(
            f"serving {rate_rps:g} req/s takes more than {MAX_INSTANCES:,} instances of any "
            "GPU type in the profile"
        )
    capacity = np.where(capacity * _MOST_LOAD >= rate_rps, capacity, 0.0)
    for b, d in enumerate(share):
        if d > 0 and not capacity[:, b].any():
            i, j = profile.buckets[b]
            raise MixError(f"no GPU type serves request bucket [{i}][{j}] within the SLO")
    if max_total is not None and lower_n.sum() > max_total:
        raise MixError(f"the floors hold more than {max_total} instances in all")
    total = (
        [({t: 1.0 for t in range(len(names))}, -highspy.kHighsInf, float(max_total))]
        if max_total is not None
        else []
    )
    if size_aware:
        model = _split_model(capacity, np.array(share) * rate_rps)
    else:
        model = _oblivious_model(capacity, np.array(share), rate_rps)
    columns = _stepped(model, total, steps, len(names))
    if not spares.any():
        counts = _solve(price, (lower_n, upper_n), *columns)
        lead = _largest(size, counts > 0)
        chosen = {n: int(c) for n, c in zip(names, counts, strict=True)}
        return Mix(chosen, _cost(price, steps, counts), names[lead] if lead is not None else "")
    # The spare is of the largest type the mix runs: solve once per candidate L (at least
    # one L, none of a larger type, nor of an equal one listed before it), its spare added,
    # and keep the cheapest.
    found: list[tuple[float, int, np.ndarray]] = []
    for lead in range(len(names)):
        larger = (size > size[lead]) | ((size == size[lead]) & (np.arange(len(names)) < lead))
        if (lower_n[larger] > 0).any() or upper_n[lead] < 1:
            continue
        bounds = (np.where(np.arange(len(names)) == lead, np.maximum(lower_n, 1), lower_n),
                  np.where(larger, 0.0, upper_n))  # fmt: skip
        try:
            counts = _solve(price, bounds, *columns)
        except MixError:
            continue
        found.append((_cost(price, steps, counts) + float(spares[lead]), lead, counts))
    if not found:
        raise MixError("no mix serves this rate within the caps")
    cost, lead, counts = min(found, key=lambda f: f[:2])
    return Mix({n: int(c) for n, c in zip(names, counts, strict=True)}, cost, names[lead])


def _largest(size: np.ndarray, used: np.ndarray) -> int | None:
    """The largest type among `used` (ties: the first), None if none is."""
    picked = [t for t in range(len(size)) if used[t]]
    return max(picked, key=lambda t: (size[t], -t)) if picked else None


def _stepped(
    model: Model, extra: list[Row], steps: list[Step], types: int
) -> tuple[np.ndarray, np.ndarray, list[Row]]:
    """`model`'s columns and rows, `extra` rows added, and per stepped price a column
    o[t] >= n[t] - limit at the extra $/h per instance beyond it (the least cost sets
    o[t] = max(0, n[t] - limit), as the extra is not negative)."""
    cont_cost, cont_upper, rows = model
    rows = [*extra, *rows]
    for t, limit, more in steps:
        rows.append(({t: 1.0, types + len(cont_cost): -1.0}, -highspy.kHighsInf, limit))
        cont_cost = np.append(cont_cost, more)
        cont_upper = np.append(cont_upper, highspy.kHighsInf)
    return cont_cost, cont_upper, rows


Step = tuple[int, float, float]  # type column, instances at its price, extra $/h beyond them


def _steps(
    names: list[str], price: np.ndarray, beyond: Mapping[str, tuple[int, float]]
) -> list[Step]:
    steps: list[Step] = []
    for t, name in enumerate(names):
        if name not in beyond:
            continue
        limit, dearer = beyond[name]
        if limit < 0 or not math.isfinite(dearer) or dearer < price[t]:
            raise MixError(
                f"{name}: a price step needs a limit >= 0 and a price beyond it of at least "
                f"{price[t]:g} $/h (got {limit}, {dearer!r})"
            )
        if dearer > price[t]:
            steps.append((t, float(limit), float(dearer - price[t])))
    return steps


def _cost(price: np.ndarray, steps: list[Step], counts: np.ndarray) -> float:
    """$/h of `counts`: each at its type's price, plus the extra beyond a type's limit."""
    extra = sum(e * max(0.0, float(counts[t]) - limit) for t, limit, e in steps)
    return float(price @ counts) + extra


Bounds = tuple[np.ndarray, np.ndarray]  # lower and upper instance counts per type


Row = tuple[dict[int, float], float, float]  # {column: coefficient}, lower, upper


Model = tuple[np.ndarray, np.ndarray, list[Row]]  # continuous columns' cost and upper, rows


def _split_model(capacity: np.ndarray, traffic: np.ndarray) -> Model:
    """Columns: n[t] (integer), then s[b, t] for every bucket b and type t: the share of
    bucket b's traffic type t serves (0 to 1). Shares, not requests/s, so that every
    coefficient a type's capacity does not set is 1; and `s[b, t] <= n[t]`, so a type that
    serves any share runs at least one instance however large its capacity (without it, a
    load of 1e-6 instances is within HiGHS's feasibility tolerance of none)."""
    types, buckets = capacity.shape
    n_s = types * buckets
    served = [(b, t) for b in range(buckets) for t in range(types)
              if capacity[t, b] > 0 and traffic[b] > 0]  # fmt: skip
    rows: list[Row] = []
    for b in range(buckets):  # the bucket's traffic is served, all of it
        if traffic[b] > 0:
            rows.append(({types + b * types + t: 1.0 for t in range(types)}, 1.0, 1.0))
    for t in range(types):  # a type's load, in instances, fits its instances
        coef = {types + b * types + t: traffic[b] / capacity[t, b] for b, u in served if u == t}
        coef[t] = -1.0
        rows.append((coef, -highspy.kHighsInf, 0.0))
    for b, t in served:  # a type serving any share runs at least one instance
        rows.append(({t: -1.0, types + b * types + t: 1.0}, -highspy.kHighsInf, 0.0))
    s_upper = np.zeros(n_s)
    for b, t in served:
        s_upper[b * types + t] = 1.0
    return np.zeros(n_s), s_upper, rows


def _oblivious_model(capacity: np.ndarray, share: np.ndarray, rate: float) -> Model:
    """Columns: n[t] (integer), then s[t], the share of the rate type t serves with the
    whole mix (0 to 1; `s[t] <= n[t]` as in `_split_model`)."""
    types = capacity.shape[0]
    load = np.zeros(types)  # instances per request/s of the whole mix
    s_upper = np.ones(types)
    for t in range(types):
        needed = share > 0
        if (capacity[t, needed] <= 0).any():
            s_upper[t] = 0.0  # cannot serve some bucket the mix holds
        else:
            load[t] = float((share[needed] / capacity[t, needed]).sum())
    rows: list[Row] = [({types + t: 1.0 for t in range(types)}, 1.0, 1.0)]
    for t in range(types):
        if s_upper[t] > 0:
            rows.append(({types + t: load[t] * rate, t: -1.0}, -highspy.kHighsInf, 0.0))
            rows.append(({types + t: 1.0, t: -1.0}, -highspy.kHighsInf, 0.0))
    if not (s_upper > 0).any():
        raise MixError("no GPU type serves every request bucket, as a size-oblivious mix needs")
    return np.zeros(types), s_upper, rows


def _solve(
    price: np.ndarray,
    bounds_n: Bounds,
    cont_cost: np.ndarray,
    cont_upper: np.ndarray,
    rows: list[Row],
) -> np.ndarray:
    types = len(price)
    lower_n, upper_n = bounds_n
    num_col = types + len(cont_cost)
    starts: list[int] = []
    index: list[int] = []
    value: list[float] = []
    for coef, _, _ in rows:
        starts.append(len(index))
        for col in sorted(coef):
            index.append(col)
            value.append(coef[col])
    highs: Any = highspy.Highs  # highspy's type hints are partial: treat the solver as Any
    h = highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("mip_rel_gap", 0.0)
    h.setOptionValue("mip_abs_gap", 0.0)
    integrality = np.concatenate(
        [np.full(types, int(highspy.HighsVarType.kInteger)), np.zeros(len(cont_cost))]
    ).astype(np.uint8)
    status = h.passModel(
        num_col,
        len(rows),
        len(index),
        int(highspy.MatrixFormat.kRowwise),
        int(highspy.ObjSense.kMinimize),
        0.0,
        np.concatenate([price + TIE_BREAK_USD, cont_cost]),
        np.concatenate([lower_n, np.zeros(len(cont_cost))]),
        np.concatenate([upper_n, cont_upper]),
        np.array([lo for _, lo, _ in rows], dtype=np.float64),
        np.array([hi for _, _, hi in rows], dtype=np.float64),
        np.array(starts, dtype=np.int32),
        np.array(index, dtype=np.int32),
        np.array(value, dtype=np.float64),
        integrality,
    )
    if status == highspy.HighsStatus.kError:
        raise MixError("HiGHS rejected the mix model")
    h.run()
    model_status = h.getModelStatus()
    if model_status != highspy.HighsModelStatus.kOptimal:
        why = h.modelStatusToString(model_status)
        raise MixError(f"no mix serves this rate within the caps ({why})")
    values = np.asarray(h.getSolution().col_value, dtype=np.float64)[:types]
    return np.rint(values).astype(np.int64)
