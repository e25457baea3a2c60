"""The ALB's serving figures per target group and zone, from CloudWatch `AWS/ApplicationELB`.

One `GetMetricData` call (up to 500 queries; more only past 50 target group x zone pairs)
asks, per target group and zone, for 60 s periods of:

- `RequestCount` (Sum): requests the ALB routed to the group's targets (health checks are not
  requests); `HTTPCode_Target_2XX_Count` .. `5XX` (Sum): the targets' responses by class;
  `TargetConnectionErrorCount` (Sum): connections to a target that failed. Turned into running
  totals with clouds/lb_stats.py `PeriodTotals` (each settled minute added once).
- `TargetResponseTime` (Average, and the extended statistics p50, p90, p99: CloudWatch's own
  quantiles of the minute): seconds from the request leaving the ALB to the target's first
  response header; the newest settled minute's value.

ALB publishes a minute only when it had requests, so a missing minute is 0. The
`AvailabilityZone` series carry `LoadBalancer` and `TargetGroup` together, so each query
names all three. CloudWatch bills GetMetricData per metric requested: ten per target group and
zone per read, which is why the backend reads at most once a minute (backends/clouds.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from reconciler.clouds.aws.signals import LB_NAMESPACE, call
from reconciler.clouds.lb_stats import (
    LOOKBACK_S,
    PERIOD_S,
    SETTLE_S,
    GroupTraffic,
    PeriodTotals,
    newest,
    settled_edge,
)
from reconciler.errors import AdapterError

MAX_QUERIES = 500  # GetMetricData's limit per call

# figure -> (metric, statistic); counters are Sums, the rest are gauges.
COUNTERS: Mapping[str, str] = {
    "requests": "RequestCount",
    "2xx": "HTTPCode_Target_2XX_Count",
    "3xx": "HTTPCode_Target_3XX_Count",
    "4xx": "HTTPCode_Target_4XX_Count",
    "5xx": "HTTPCode_Target_5XX_Count",
    "connection_errors": "TargetConnectionErrorCount",
}
RESPONSE_TIME = "TargetResponseTime"
QUANTILES: Mapping[str, str] = {"0.5": "p50", "0.9": "p90", "0.99": "p99"}


def target_group_dimension(arn: str) -> str:
    """CloudWatch's TargetGroup dimension: the ARN's resource part (`targetgroup/name/id`)."""
    marker = ":targetgroup/"
    if marker not in arn:
        raise AdapterError(f"not a target group ARN: {arn}")
    return "targetgroup/" + arn.split(marker, 1)[1]


@dataclass(frozen=True)
class Query:
    """One metric of one target group in one zone, and its statistic."""

    group: str  # the TargetGroup dimension
    zone: str
    figure: str  # a COUNTERS key, "average" or a QUANTILES key
    metric: str
    stat: str


def queries_for(groups: Iterable[str], zones: Iterable[str], quantiles: bool) -> list[Query]:
    out: list[Query] = []
    for group in sorted(set(groups)):
        for zone in sorted(set(zones)):
            out += [Query(group, zone, f, m, "Sum") for f, m in COUNTERS.items()]
            out.append(Query(group, zone, "average", RESPONSE_TIME, "Average"))
            if quantiles:
                out += [Query(group, zone, q, RESPONSE_TIME, s) for q, s in QUANTILES.items()]
    return out


def metric_data_query(i: int, q: Query, load_balancer: str) -> dict[str, Any]:
    dimensions = [
        {"Name": "TargetGroup", "Value": q.group},
        {"Name": "LoadBalancer", "Value": load_balancer},
        {"Name": "AvailabilityZone", "Value": q.zone},
    ]
    return {
        "Id": f"q{i}",
        "MetricStat": {
            "Metric": {"Namespace": LB_NAMESPACE, "MetricName": q.metric, "Dimensions": dimensions},
            "Period": PERIOD_S,
            "Stat": q.stat,
        },
        "ReturnData": True,
    }


def points_by_id(pages: Iterable[Mapping[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """`MetricDataResults` of every page -> query id -> (period start unix s, value). A
    result CloudWatch refuses (`StatusCode` Forbidden or InternalError) fails the read."""
    out: dict[str, list[tuple[float, float]]] = {}
    for page in pages:
        for result in page.get("MetricDataResults") or []:
            status = str(result.get("StatusCode", "Complete"))
            if status not in ("Complete", "PartialData"):
                messages = "; ".join(str(m.get("Value", "")) for m in result.get("Messages") or [])
                raise AdapterError(
                    f"AWS cloudwatch:get_metric_data: {status} for {result.get('Label') or ''}"
                    f"{': ' + messages if messages else ''}".strip()
                )
            points = out.setdefault(str(result.get("Id", "")), [])
            for stamp, value in zip(
                result.get("Timestamps") or [], result.get("Values") or [], strict=False
            ):
                if value is None:
                    continue
                at = stamp.timestamp() if hasattr(stamp, "timestamp") else float(stamp)
                points.append((float(at), float(value)))
    return out


class AlbTargetGroupStats:
    """The figures of one ALB's target groups per zone; keeps the running totals across
    reads (one object per load balancer for the life of the process)."""

    def __init__(
        self,
        cloudwatch: Any,
        load_balancer: str,
        *,
        quantiles: bool = True,
        settle_s: float = SETTLE_S,
        lookback_s: float = LOOKBACK_S,
    ) -> None:
        self._cw = cloudwatch
        self.load_balancer = load_balancer
        self.quantiles = quantiles
        self.settle_s = settle_s
        self.lookback_s = lookback_s
        self._totals: PeriodTotals[tuple[str, str, str]] = PeriodTotals()
        self._seen: set[tuple[str, str]] = set()  # (group, zone) that ever had a datapoint

    def read(
        self, groups: Mapping[str, str], zones: Sequence[str], now: float
    ) -> list[GroupTraffic]:
        """`groups`: TargetGroup dimension -> accelerator label; every group in every zone of
        `zones`. Errors: AdapterError (ThrottledError, CredentialsError) as `signals.call`."""
        queries = queries_for(groups, zones, self.quantiles)
        if not queries:
            return []
        edge = settled_edge(now, self.settle_s)
        start = edge - self.lookback_s
        pages = []
        for first in range(0, len(queries), MAX_QUERIES):
            chunk = [
                metric_data_query(first + i, q, self.load_balancer)
                for i, q in enumerate(queries[first : first + MAX_QUERIES])
            ]
            pages += self._pages(chunk, start, edge)
        return self.figures(groups, queries, points_by_id(pages), start, edge)

    def _pages(self, chunk: list[dict[str, Any]], start: float, edge: float) -> list[Any]:
        kwargs: dict[str, Any] = {
            "MetricDataQueries": chunk,
            "StartTime": datetime.fromtimestamp(start, UTC),
            "EndTime": datetime.fromtimestamp(edge, UTC),
        }
        pages = []
        for _ in range(20):
            page = call(self._cw, "get_metric_data", **kwargs)
            pages.append(page)
            token = page.get("NextToken")
            if not token:
                return pages
            kwargs["NextToken"] = token
        raise AdapterError("AWS cloudwatch:get_metric_data: more than 20 pages")

    def figures(
        self,
        groups: Mapping[str, str],
        queries: Sequence[Query],
        points: Mapping[str, list[tuple[float, float]]],
        start: float,
        edge: float,
    ) -> list[GroupTraffic]:
        """Adds this read's settled minutes to the totals and returns every (group, zone)
        that has ever had a datapoint."""
        self._totals.begin(start)
        counted: dict[tuple[str, str], dict[str, float]] = {}
        gauges: dict[tuple[str, str], dict[str, float]] = {}
        for i, q in enumerate(queries):
            series = points.get(f"q{i}", [])
            place = (q.group, q.zone)
            if series:
                self._seen.add(place)
            if q.figure in COUNTERS:
                total = self._totals.add((q.group, q.zone, q.figure), series, edge)
                counted.setdefault(place, {})[q.figure] = total
            else:
                value = newest(series, edge)
                if value is not None:
                    gauges.setdefault(place, {})[q.figure] = value
        out = []
        for place in sorted(self._seen & set(counted)):
            got, times = counted[place], gauges.get(place, {})
            out.append(
                GroupTraffic(
                    group=place[0],
                    zone=place[1],
                    accelerator=groups.get(place[0], ""),
                    requests=round(got.get("requests", 0.0)),
                    responses={c: round(got.get(c, 0.0)) for c in ("2xx", "3xx", "4xx", "5xx")},
                    connection_errors=round(got.get("connection_errors", 0.0)),
                    response_time_s=times.get("average"),
                    response_time_quantiles_s={q: times[q] for q in QUANTILES if q in times},
                )
            )
        return out
