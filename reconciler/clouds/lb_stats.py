"""Serving figures of a cloud load balancer, per group of targets and zone, and the running
totals built from the per-minute sums a cloud's monitoring API reports.

The clouds count per target group (AWS), per backend service and instance group (GCP), not
per replica, so a `GroupTraffic` names its group, zone and, where the group holds one GPU
type, its accelerator. Their APIs answer per-period sums, not cumulative totals: a
`PeriodTotals` adds each *settled* period (ended at least `settle_s` before now, so late
datapoints have arrived) exactly once, whatever window each read asks for, and the result is
a counter in Prometheus's sense: it starts at the first read, grows by whole minutes and
restarts (at 0) with the reconciler process.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

PERIOD_S = 60  # both clouds publish their load-balancer metrics per minute
SETTLE_S = 180.0  # a minute is counted once it ended this long ago (CloudWatch lags 1-3 min)
LOOKBACK_S = 900.0  # each read asks for this many settled seconds: a gap longer loses minutes

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class GroupTraffic:
    """What a cloud load balancer counted for one group of targets in one zone.

    `requests`, `responses` ("2xx".."5xx" -> count) and `connection_errors` (None where the
    cloud has no such figure) are running totals (`PeriodTotals`); `response_time_s` is the
    average time of the newest settled minute and `response_time_quantiles_s` ("0.5" -> s)
    that minute's quantiles, where the cloud reports them; `total_time_s` the average whole
    response time (GCP's backend latency, to the last byte)."""

    group: str  # the target group (AWS: its CloudWatch dimension) or backend (GCP)
    zone: str
    accelerator: str  # "" where the group holds several GPU types or none is named
    requests: int
    responses: Mapping[str, int] = field(default_factory=dict)
    connection_errors: int | None = None
    response_time_s: float | None = None
    total_time_s: float | None = None
    response_time_quantiles_s: Mapping[str, float] = field(default_factory=dict)


def settled_edge(now: float, settle_s: float = SETTLE_S, period_s: int = PERIOD_S) -> float:
    """The end of the newest period that ended at least `settle_s` before `now` (unix s, a
    multiple of `period_s`)."""
    return math.floor((now - settle_s) / period_s) * period_s


class PeriodTotals(Generic[K]):
    """Running totals per series from per-period sums, each period added once.

    `add(key, points, edge)` takes a read's (period start, sum) points of one series and adds
    those that start after the last one added for that series and end by `edge`; the first
    read sets the floor (`start`): no period before it is ever added, so a series first seen
    later does not bring back minutes from before the totals began. Reads may overlap or
    repeat: nothing is counted twice. A gap between reads longer than their window loses the
    minutes in it (the totals then undercount; they never overcount)."""

    def __init__(self, period_s: int = PERIOD_S) -> None:
        self.period_s = period_s
        self.start: float | None = None
        self._totals: dict[K, float] = {}
        self._last: dict[K, float] = {}

    def begin(self, window_start: float) -> None:
        """Called before each read's `add`s with the start of its window."""
        if self.start is None:
            self.start = window_start

    def add(self, key: K, points: Iterable[tuple[float, float]], edge: float) -> float:
        """Add `points` of series `key`; returns its total (0 for a series seen empty)."""
        floor = self.start if self.start is not None else -math.inf
        last = self._last.get(key, floor - self.period_s)
        total = self._totals.get(key, 0.0)
        for at, value in sorted(points):
            if at <= last or at < floor or at + self.period_s > edge:
                continue
            if math.isfinite(value):
                total += value
            last = at
        self._totals[key] = total
        self._last[key] = last
        return total

    def totals(self) -> Mapping[K, float]:
        return dict(self._totals)


def newest(points: Iterable[tuple[float, float]], edge: float) -> float | None:
    """The value of the newest period ending by `edge` (gauges: averages, quantiles)."""
    settled = [(at, v) for at, v in points if at + PERIOD_S <= edge and math.isfinite(v)]
    return max(settled)[1] if settled else None
