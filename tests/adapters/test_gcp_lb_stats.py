"""GCP's load-balancer figures (clouds/gcp/lb_stats.py) from Cloud Monitoring's
`timeSeries.list` served by an HTTP fake in the API's JSON shapes: per backend service and
zone, counters across two reads, the latency distribution's mean, and an error in one line.
Tested against the fake only, not a real project."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reconciler.clouds.base import rfc3339
from reconciler.clouds.gcp.apis import GcpApis
from reconciler.clouds.gcp.lb_stats import BACKEND_LATENCIES, BACKEND_REQUEST_COUNT, SETTLE_S
from reconciler.clouds.lb_stats import settled_edge
from reconciler.clouds.rest import StaticToken
from reconciler.errors import AdapterError
from reconciler.spec import load_spec

from .conftest import FakeApi

PROJECT = "proj-1"
REPO = Path(__file__).resolve().parents[2]
NOW = 1_750_000_000.0
EDGE = settled_edge(NOW, SETTLE_S)
BACKEND = "hf-llama-cloud-us-central1"


def point(minute: float, value: dict[str, Any]) -> dict[str, Any]:
    return {
        "interval": {"startTime": rfc3339(minute), "endTime": rfc3339(minute + 60)},
        "value": value,
    }


def counts(zone: str, code: str, minutes: dict[float, int]) -> dict[str, Any]:
    return {
        "metric": {"type": BACKEND_REQUEST_COUNT, "labels": {"response_code_class": code}},
        "resource": {
            "type": "https_lb_rule",
            "labels": {"backend_target_name": BACKEND, "backend_scope": zone},
        },
        "metricKind": "DELTA",
        "valueType": "INT64",
        "points": [
            point(m, {"int64Value": str(n)}) for m, n in sorted(minutes.items(), reverse=True)
        ],
    }


def latencies(zone: str, minutes: dict[float, float]) -> dict[str, Any]:
    return {
        "metric": {"type": BACKEND_LATENCIES},
        "resource": {
            "type": "https_lb_rule",
            "labels": {"backend_target_name": BACKEND, "backend_scope": zone},
        },
        "metricKind": "DELTA",
        "valueType": "DISTRIBUTION",
        "points": [
            point(m, {"distributionValue": {"count": "10", "mean": ms}})
            for m, ms in sorted(minutes.items(), reverse=True)
        ],
    }


def apis(fake_api: FakeApi) -> GcpApis:
    spec = load_spec(REPO / "services" / "llama-cloud.yaml")
    return GcpApis(spec, PROJECT, StaticToken("t"), monitoring_url=fake_api.url + "/v3")


def test_backend_figures_per_zone_count_each_minute_once_across_reads(fake_api: FakeApi) -> None:
    answers: dict[str, list[dict[str, Any]]] = {
        BACKEND_REQUEST_COUNT: [
            counts("us-central1-a", "200", {EDGE - 120: 30, EDGE - 60: 50}),
            counts("us-central1-a", "500", {EDGE - 60: 4}),
            counts("us-central1-b", "0", {EDGE - 60: 1}),
            counts("europe-west4-a", "200", {EDGE - 60: 99}),  # not one of the region's zones
        ],
        BACKEND_LATENCIES: [latencies("us-central1-a", {EDGE - 120: 300.0, EDGE - 60: 125.0})],
    }

    ends: list[str] = []

    def route(path: str, query: dict[str, str]) -> Any:
        metric = next(m for m in answers if f'metric.type="{m}"' in query["filter"])
        assert f'resource.labels.url_map_name="{BACKEND}"' in query["filter"]
        assert query["aggregation.perSeriesAligner"] == "ALIGN_DELTA"
        assert query["aggregation.crossSeriesReducer"] == "REDUCE_SUM"
        ends.append(query["interval.endTime"])
        return 200, {"timeSeries": answers[metric]}

    fake_api.routes[f"/v3/projects/{PROJECT}/timeSeries"] = route
    gcp = apis(fake_api)
    zones = ["us-central1-a", "us-central1-b"]
    first = {g.zone: g for g in gcp.lb_traffic("us-central1", {"x": 1}, zones, "L4", NOW)}
    assert sorted(first) == zones
    a, b = first["us-central1-a"], first["us-central1-b"]
    assert (a.group, a.accelerator, a.requests) == (BACKEND, "L4", 84)
    assert a.responses == {"2xx": 80, "5xx": 4}
    assert a.connection_errors is None  # GCP has no such figure per backend
    assert a.total_time_s == pytest.approx(0.125)  # the newest minute's mean, ms -> s
    assert (b.requests, b.responses) == (1, {"other": 1})  # class 0: no response
    # A minute later: the next minute is settled; the two already counted come again.
    answers[BACKEND_REQUEST_COUNT][0] = counts(
        "us-central1-a", "200", {EDGE - 120: 30, EDGE - 60: 50, EDGE: 7}
    )
    again = {g.zone: g for g in gcp.lb_traffic("us-central1", {"x": 1}, zones, "L4", NOW + 60)}
    assert again["us-central1-a"].requests == 91
    assert again["us-central1-a"].responses == {"2xx": 87, "5xx": 4}
    # Each read asks up to the end of the newest settled minute: two metrics per read.
    assert ends == [rfc3339(EDGE)] * 2 + [rfc3339(EDGE + 60)] * 2
    assert gcp.lb_traffic("us-central1", {}, zones, "L4", NOW) == []  # not applied: no LB


def test_a_refused_monitoring_read_is_one_line(fake_api: FakeApi) -> None:
    fake_api.routes[f"/v3/projects/{PROJECT}/timeSeries"] = [
        (
            403,
            {
                "error": {
                    "code": 403,
                    "status": "PERMISSION_DENIED",
                    "message": "no monitoring.timeSeries.list",
                }
            },
        )
    ]
    with pytest.raises(AdapterError, match="HTTP 403: PERMISSION_DENIED") as refused:
        apis(fake_api).lb_traffic("us-central1", {"x": 1}, ["us-central1-a"], "L4", NOW)
    assert "\n" not in str(refused.value)
