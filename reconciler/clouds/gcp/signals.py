"""GCP signals: preemptions from zone operations, request rate from Cloud Monitoring.

REST with `requests` (see `rest.py`) rather than google-cloud-compute: the client library's
REST transport can be pointed elsewhere, but its retries, auth and paging would then be
tested only through the library's own assumptions; a base URL lets the tests run the real
wire format (pageToken, 401, 429) against an HTTP fake. Spot prices come from the shipped
catalog (`catalog.py`): GCP publishes them only through the Cloud Billing catalog API, per
region, and they change at most monthly-ish, so a dated table is honest enough.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from reconciler.clouds.base import Clock, InstanceRef, parse_time, rfc3339
from reconciler.clouds.gcp.lb_stats import count_value
from reconciler.clouds.rest import RestClient, TokenProvider
from reconciler.errors import CredentialsError
from reconciler.paths import NAME_RE
from reconciler.policy.signals import Notice, NoticeKind

COMPUTE_URL = "https://compute.googleapis.com/compute/v1"
MONITORING_URL = "https://monitoring.googleapis.com/v3"
CREDENTIALS_HINT = (
    "set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file, or run "
    "`gcloud auth application-default login`"
)
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
PREEMPTED_FILTER = 'operationType="compute.instances.preempted"'
REQUEST_COUNT = "loadbalancing.googleapis.com/https/request_count"
_NAME = NAME_RE  # GCP resource names follow the same rule as ours (RFC 1035, <= 63)


def _check_name(value: str, what: str) -> str:
    """Names end up inside API filter strings: only plain GCP names pass."""
    if not _NAME.fullmatch(value):
        raise ValueError(f"invalid GCP {what} {value!r}: lowercase letters, digits and '-'")
    return value


class GoogleAuthTokens:
    """Application Default Credentials via google-auth, refreshed when expired."""

    def __init__(self) -> None:
        self._credentials: Any = None
        self.project: str | None = None

    def token(self) -> str:
        import google.auth
        import google.auth.exceptions
        import google.auth.transport.requests

        try:
            if self._credentials is None:
                self._credentials, self.project = google.auth.default(scopes=list(SCOPES))
            if not self._credentials.valid:
                self._credentials.refresh(google.auth.transport.requests.Request())
        except google.auth.exceptions.DefaultCredentialsError:
            raise CredentialsError(f"GCP credentials not found: {CREDENTIALS_HINT}") from None
        except google.auth.exceptions.GoogleAuthError as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CredentialsError(
                f"GCP credentials unusable ({first}): {CREDENTIALS_HINT}"
            ) from None
        return str(self._credentials.token)


def _client(base_url: str, tokens: TokenProvider, api: str, **kwargs: Any) -> RestClient:
    return RestClient(base_url, tokens, api=api, credentials_hint=CREDENTIALS_HINT, **kwargs)


def _last_segment(url: object) -> str:
    return str(url or "").rstrip("/").rsplit("/", 1)[-1]


class GcpPreemptionSource:
    """PREEMPTED notices from `compute.instances.preempted` zone operations.

    GCP's only earlier signal is the in-VM metadata `preempted` flag at the same moment, so the
    operation is the notice: the VM has ~30 s left and cannot be saved. With `zones` the zone
    lists are read; without, one aggregated list covers every zone of the project.
    Instance names map to replicas through `instances` (from Terraform state), else through
    `name_prefix` (`hf-llama-r-3` -> `r-3`); with neither, the instance name is the replica id.
    """

    def __init__(
        self,
        project: str,
        tokens: TokenProvider,
        *,
        zones: Sequence[str] | None = None,
        instances: Mapping[str, InstanceRef] | None = None,
        name_prefix: str | None = None,
        base_url: str = COMPUTE_URL,
        lookback: float = 600.0,
        clock: Clock = time.time,
        **client_options: Any,
    ) -> None:
        self.project = _check_name(project, "project")
        self.zones = [_check_name(z, "zone") for z in zones] if zones is not None else None
        self.instances = dict(instances or {})
        self.name_prefix = name_prefix
        self.lookback = lookback
        self._clock = clock
        self._api = _client(base_url, tokens, "GCP Compute", **client_options)
        self._seen: dict[str, float] = {}  # operation id -> insert time
        self._since: float | None = None

    def poll(self) -> list[Notice]:
        now = self._clock()
        since = now - self.lookback if self._since is None else self._since
        operations = self._operations()
        notices: list[Notice] = []
        for op in operations:
            op_id = str(op.get("id") or op.get("name") or "")
            at = parse_time(op.get("insertTime")) or now
            if not op_id or op_id in self._seen or at < since:
                continue
            self._seen[op_id] = at
            if op.get("operationType") != "compute.instances.preempted":
                continue  # the fake or an old API may ignore the filter
            notice = self._notice(op, at)
            if notice is not None:
                notices.append(notice)
        # Later polls report anything newer than a margin before now (operations can be
        # listed a little after their insert time); the seen-set drops duplicates.
        self._since = now - self.lookback
        self._seen = {k: t for k, t in self._seen.items() if t >= self._since - self.lookback}
        return sorted(notices, key=lambda n: n.at)

    def _operations(self) -> list[dict[str, Any]]:
        params = {"filter": PREEMPTED_FILTER, "maxResults": "500"}
        found: list[dict[str, Any]] = []
        if self.zones is None:
            url = self._api.url(f"projects/{self.project}/aggregated/operations")
            for page in self._api.pages_by_token(url, params):
                for scope in (page.get("items") or {}).values():
                    found.extend(scope.get("operations") or [])
            return found
        for zone in self.zones:
            url = self._api.url(f"projects/{self.project}/zones/{zone}/operations")
            for page in self._api.pages_by_token(url, params):
                found.extend(page.get("items") or [])
        return found

    def _notice(self, op: Mapping[str, Any], at: float) -> Notice | None:
        name = _last_segment(op.get("targetLink"))
        zone = _last_segment(op.get("zone"))
        known = self.instances.get(name)
        if known is not None:
            return Notice(NoticeKind.PREEMPTED, known.replica_id, zone or known.zone, at)
        if not name or not zone:
            return None
        if self.name_prefix is not None:
            if not name.startswith(self.name_prefix):
                return None
            name = name[len(self.name_prefix) :]
        return Notice(NoticeKind.PREEMPTED, name, zone, at)


class CloudMonitoringMetricsSource:
    """Request rate of the global external Application LB from Cloud Monitoring.

    `ALIGN_RATE` over 60 s turns the request_count delta into requests/s and `REDUCE_SUM`
    adds up the forwarding rules/backends. The metric is sampled every 60 s and visible after
    up to ~210 s, so the newest point within `max_age` counts. No points: None (unknown),
    unless `absent_is_zero` (an LB known to be idle reports no points either).
    """

    def __init__(
        self,
        project: str,
        tokens: TokenProvider,
        *,
        url_map: str | None = None,
        base_url: str = MONITORING_URL,
        max_age: float = 300.0,
        absent_is_zero: bool = False,
        **client_options: Any,
    ) -> None:
        self.project = _check_name(project, "project")
        self.url_map = _check_name(url_map, "URL map") if url_map is not None else None
        self.max_age = max_age
        self.absent_is_zero = absent_is_zero
        self._api = _client(base_url, tokens, "GCP Monitoring", **client_options)

    def request_rate(self, now: float) -> float | None:
        metric_filter = f'metric.type="{REQUEST_COUNT}" AND resource.type="https_lb_rule"'
        if self.url_map is not None:
            metric_filter += f' AND resource.labels.url_map_name="{self.url_map}"'
        params = {
            "filter": metric_filter,
            "interval.startTime": rfc3339(now - self.max_age),
            "interval.endTime": rfc3339(now),
            "aggregation.alignmentPeriod": "60s",
            "aggregation.perSeriesAligner": "ALIGN_RATE",
            "aggregation.crossSeriesReducer": "REDUCE_SUM",
            "view": "FULL",
        }
        url = self._api.url(f"projects/{self.project}/timeSeries")
        newest: dict[float, float] = {}  # end time -> summed rate across series
        for page in self._api.pages_by_token(url, params):
            for series in page.get("timeSeries") or []:
                points = series.get("points") or []
                if not points:
                    continue
                point = max(
                    points, key=lambda p: parse_time(p.get("interval", {}).get("endTime")) or 0
                )
                end = parse_time(point.get("interval", {}).get("endTime")) or 0.0
                newest[end] = newest.get(end, 0.0) + count_value(point.get("value", {}))
        if not newest:
            return 0.0 if self.absent_is_zero else None
        return newest[max(newest)]
