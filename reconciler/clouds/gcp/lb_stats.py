"""The external Application LB's serving figures per backend service and zone, from Cloud
Monitoring (`projects.timeSeries.list` over REST, clouds/rest.py).

Two calls per read, on the region's URL map (`resource.type="https_lb_rule"`), in 60 s
periods summed across forwarding rules, client countries and proxies (`ALIGN_DELTA`,
`REDUCE_SUM`) and kept apart by `backend_target_name` (the backend service) and
`backend_scope` (the zone of the instance group):

- `loadbalancing.googleapis.com/https/backend_request_count` by `response_code_class`
  (200..500; 0, no response, counts as "other"): requests the LB sent to the backends,
  turned into running totals with clouds/lb_stats.py `PeriodTotals` (each settled minute
  once); the requests are the sum over the classes.
- `.../https/backend_latencies`, a distribution in ms: its mean over the newest settled
  minute, from the LB sending the request to the last byte of the backend's response, so
  it is exported as the whole-response time (`total_time_s`), not time to first byte.

GCP has no connection-error count per backend (`connection_errors` None). The metrics are
sampled every 60 s and visible up to 210 s later, hence the longer settle delay.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from reconciler.clouds.base import parse_time, rfc3339
from reconciler.clouds.lb_stats import (
    LOOKBACK_S,
    PERIOD_S,
    GroupTraffic,
    PeriodTotals,
    newest,
    settled_edge,
)
from reconciler.clouds.rest import RestClient
from reconciler.errors import AdapterError

SETTLE_S = 240.0  # GCP: "after sampling, data is not visible for up to 210 seconds"
BACKEND_REQUEST_COUNT = "loadbalancing.googleapis.com/https/backend_request_count"
BACKEND_LATENCIES = "loadbalancing.googleapis.com/https/backend_latencies"
GROUP_BY = ("resource.label.backend_target_name", "resource.label.backend_scope")
CODE_CLASSES = {"100": "1xx", "200": "2xx", "300": "3xx", "400": "4xx", "500": "5xx"}

Points = list[tuple[float, float]]


def code_class(value: object) -> str:
    """`response_code_class` ("200", ...; "0": no response) -> "2xx", ... or "other"."""
    return CODE_CLASSES.get(str(value), "other")


def series_points(series: Mapping[str, Any], value: Any) -> Points:
    """(period start unix s, value) of a series' points; `value` reads a point's TypedValue."""
    out: Points = []
    for point in series.get("points") or []:
        interval = point.get("interval") or {}
        end = parse_time(interval.get("endTime"))
        if end is None:
            continue
        start = parse_time(interval.get("startTime"))
        at = start if start is not None and start < end else end - PERIOD_S
        number = value(point.get("value") or {})
        if number is not None:
            out.append((at, number))
    return out


def count_value(value: Mapping[str, Any]) -> float:
    """A delta count: int64Value is a decimal *string* in JSON, doubleValue a number."""
    for key in ("int64Value", "doubleValue"):
        if key in value:
            try:
                return float(value[key])
            except (TypeError, ValueError):
                break
    raise AdapterError(f"GCP Monitoring: unexpected point value {dict(value)!r}")


def mean_seconds(value: Mapping[str, Any]) -> float | None:
    """A latency distribution's mean in seconds (the metric is in ms); None when empty."""
    dist = value.get("distributionValue")
    if not isinstance(dist, Mapping):
        raise AdapterError(f"GCP Monitoring: expected a distribution, got {dict(value)!r}")
    if int(dist.get("count") or 0) == 0 or "mean" not in dist:
        return None
    return float(dist["mean"]) / 1000.0


def _labels(series: Mapping[str, Any]) -> tuple[str, str, str]:
    resource = (series.get("resource") or {}).get("labels") or {}
    metric = (series.get("metric") or {}).get("labels") or {}
    return (
        str(resource.get("backend_target_name", "")),
        str(resource.get("backend_scope", "")),
        str(metric.get("response_code_class", "")),
    )


class BackendServiceStats:
    """The figures of one region's URL map per backend service and zone; keeps the running
    totals across reads (one object per region for the life of the process)."""

    def __init__(
        self,
        api: RestClient,
        project: str,
        url_map: str,
        *,
        settle_s: float = SETTLE_S,
        lookback_s: float = LOOKBACK_S,
    ) -> None:
        self._api = api
        self.project = project
        self.url_map = url_map
        self.settle_s = settle_s
        self.lookback_s = lookback_s
        self._totals: PeriodTotals[tuple[str, str, str]] = PeriodTotals()
        self._seen: set[tuple[str, str]] = set()  # (backend, zone) that ever had a point

    def _series(
        self, metric: str, start: float, edge: float, group_by: Sequence[str]
    ) -> Iterable[Mapping[str, Any]]:
        params: dict[str, str | list[str]] = {
            "filter": (
                f'metric.type="{metric}" AND resource.type="https_lb_rule" '
                f'AND resource.labels.url_map_name="{self.url_map}"'
            ),
            "interval.startTime": rfc3339(start),
            "interval.endTime": rfc3339(edge),
            "aggregation.alignmentPeriod": f"{PERIOD_S}s",
            "aggregation.perSeriesAligner": "ALIGN_DELTA",
            "aggregation.crossSeriesReducer": "REDUCE_SUM",
            "aggregation.groupByFields": list(group_by),
        }
        url = self._api.url(f"projects/{self.project}/timeSeries")
        for page in self._api.pages_by_token(url, params):
            yield from page.get("timeSeries") or []

    def read(self, zones: Sequence[str], accelerator: str, now: float) -> list[GroupTraffic]:
        """Every (backend service, zone) of `zones` that has ever had a point; `accelerator`
        labels them all (a zone's instance group holds every type the region runs).
        Errors: AdapterError (ThrottledError, CredentialsError) as clouds/rest.py."""
        edge = settled_edge(now, self.settle_s)
        start = edge - self.lookback_s
        wanted = set(zones)
        counts: dict[tuple[str, str, str], Points] = {}
        for series in self._series(
            BACKEND_REQUEST_COUNT, start, edge, [*GROUP_BY, "metric.label.response_code_class"]
        ):
            backend, zone, code = _labels(series)
            if zone in wanted:
                counts.setdefault((backend, zone, code_class(code)), []).extend(
                    series_points(series, count_value)
                )
        means: dict[tuple[str, str], float] = {}
        for series in self._series(BACKEND_LATENCIES, start, edge, GROUP_BY):
            backend, zone, _ = _labels(series)
            mean = newest(series_points(series, mean_seconds), edge)
            if zone in wanted and mean is not None:
                means[(backend, zone)] = mean
        self._totals.begin(start)
        for (backend, zone, code), points in counts.items():
            if points:
                self._seen.add((backend, zone))
            self._totals.add((backend, zone, code), points, edge)
        totals = self._totals.totals()
        out = []
        for backend, zone in sorted(self._seen):
            responses = {
                code: round(n)
                for (b, z, code), n in sorted(totals.items())
                if (b, z) == (backend, zone)
            }
            out.append(
                GroupTraffic(
                    group=backend,
                    zone=zone,
                    accelerator=accelerator,
                    requests=sum(responses.values()),
                    responses=responses,
                    connection_errors=None,
                    total_time_s=means.get((backend, zone)),
                )
            )
        return out
