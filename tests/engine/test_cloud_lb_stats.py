"""Serving figures of a cloud's load balancer exported under the sandbox's metric names:
AWS's CloudWatch ALB metrics from a moto server (datapoints put with PutMetricData, read
with GetMetricData), mapped to zone and accelerator by the stack's target groups, turned
into counters across reads, and the error paths (throttling, AccessDenied, Azure's layer-4
load balancer) that leave `hedgeform_lb_stats_up` at 0 with one log line.

moto cannot compute CloudWatch's extended statistics (p50/p90/p99 answer HTTP 500), so the
moto tests read without quantiles; their parsing is covered in tests/clouds/test_lb_stats.py.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber  # type: ignore[import-untyped]

from reconciler.backends import clouds as cloud_backend
from reconciler.backends.clouds import ProviderCloud
from reconciler.clouds.apis import ReadsLbStats
from reconciler.clouds.aws import signals as aws
from reconciler.clouds.aws.apis import AwsApis
from reconciler.clouds.aws.lb_stats import AlbTargetGroupStats
from reconciler.clouds.azure.apis import AzureApis
from reconciler.clouds.lb_stats import GroupTraffic, settled_edge
from reconciler.clouds.rest import StaticToken
from reconciler.engine.observability import LoopMetrics
from reconciler.errors import AdapterError, ThrottledError
from reconciler.spec import load_spec
from tests.adapters.conftest import _moto_server, _no_real_credentials, moto_url, svc
from tests.adapters.test_aws import client
from tests.engine.cloud_fakes import FakeApis, aws_state_file
from tests.engine.test_cloud_aws_moto import STACK, cloud_root, moto_settings
from tests.engine.test_serving_metrics import samples

__all__ = ["_moto_server", "_no_real_credentials", "moto_url", "svc"]  # fixtures

ACCOUNT = "arn:aws:elasticloadbalancing:us-east-1:123456789012"


def put(
    url: str, lb: str, group: str, zone: str, minute: float, **metrics: float
) -> None:  # fmt: skip
    """Datapoints of one minute as the ALB publishes them (TargetGroup, LoadBalancer,
    AvailabilityZone)."""
    dims = [
        {"Name": "TargetGroup", "Value": group},
        {"Name": "LoadBalancer", "Value": lb},
        {"Name": "AvailabilityZone", "Value": zone},
    ]
    at = datetime.fromtimestamp(minute + 5, UTC)
    client("cloudwatch", url).put_metric_data(
        Namespace=aws.LB_NAMESPACE,
        MetricData=[
            {"MetricName": name, "Dimensions": dims, "Timestamp": at, "Value": value}
            for name, value in metrics.items()
        ],
    )


def write_outputs(paths: Any, **outputs: Any) -> None:
    stack_dir = paths.stack_dir(STACK)
    stack_dir.mkdir(parents=True, exist_ok=True)
    (stack_dir / "terraform.tfstate").write_text(json.dumps(aws_state_file({}, outputs)))


def test_alb_figures_per_target_group_and_zone_count_each_minute_once(
    moto_url: str, svc: str
) -> None:
    lb = f"app/hf-{svc}/50dc6c495c0c9188"
    l4, shared = f"targetgroup/hf-{svc}-l4/1", f"targetgroup/hf-{svc}/2"
    now = time.time()
    edge = settled_edge(now)
    put(moto_url, lb, l4, "us-east-1a", edge - 120, RequestCount=40, HTTPCode_Target_2XX_Count=39,
        HTTPCode_Target_5XX_Count=1, TargetResponseTime=0.5)  # fmt: skip
    put(moto_url, lb, l4, "us-east-1a", edge - 60, RequestCount=60, HTTPCode_Target_2XX_Count=60,
        TargetConnectionErrorCount=2, TargetResponseTime=0.25)  # fmt: skip
    put(moto_url, lb, shared, "us-east-1b", edge - 60, RequestCount=7)
    put(moto_url, lb, l4, "us-east-1a", edge, RequestCount=1000)  # not settled yet
    cw = client("cloudwatch", moto_url)
    stats = AlbTargetGroupStats(cw, lb, quantiles=False)
    groups = {l4: "L4", shared: "A10G"}
    zones = ["us-east-1a", "us-east-1b", "us-east-1c"]

    first = {(g.group, g.zone): g for g in stats.read(groups, zones, now)}
    assert sorted(first) == [(l4, "us-east-1a"), (shared, "us-east-1b")]
    a = first[(l4, "us-east-1a")]
    assert (a.accelerator, a.requests, a.connection_errors) == ("L4", 100, 2)
    assert a.responses == {"2xx": 99, "3xx": 0, "4xx": 0, "5xx": 1}
    assert a.response_time_s == 0.25
    assert (first[(shared, "us-east-1b")].accelerator, first[(shared, "us-east-1b")].requests) == (
        "A10G",
        7,
    )
    # A minute later the once-unsettled minute counts, and the two already counted (still in
    # the read's window) do not count again.
    again = {(g.group, g.zone): g for g in stats.read(groups, zones, now + 60)}
    assert again[(l4, "us-east-1a")].requests == 1100
    assert again[(shared, "us-east-1b")].requests == 7


def test_aws_apis_label_typed_groups_with_their_type_and_the_shared_one_with_the_region(
    moto_url: str, svc: str
) -> None:
    lb = f"app/hf-{svc}/1"
    outputs = {
        "lb_arn_suffix": lb,
        "target_group_arn": f"{ACCOUNT}:targetgroup/hf-{svc}/2",
        "target_group_arns": {"L4": f"{ACCOUNT}:targetgroup/hf-{svc}-l4/3"},
    }
    edge = settled_edge(time.time())
    put(moto_url, lb, f"targetgroup/hf-{svc}/2", "us-east-1a", edge - 60, RequestCount=3)
    put(moto_url, lb, f"targetgroup/hf-{svc}-l4/3", "us-east-1b", edge - 60, RequestCount=4)
    spec = load_spec(Path(__file__).resolve().parents[2] / "services" / "llama-cloud.yaml")
    apis = AwsApis(spec, moto_url, lb_quantiles=False)
    got = apis.lb_traffic("us-east-1", outputs, ["us-east-1a", "us-east-1b"], "", time.time())
    assert {(g.zone, g.accelerator, g.requests) for g in got} == {
        ("us-east-1a", "", 3),  # the shared group of a region of several types
        ("us-east-1b", "L4", 4),
    }
    assert apis.lb_traffic("us-east-1", {}, ["us-east-1a"], "", time.time()) == []  # no LB yet


def test_access_denied_and_throttling_are_one_line_errors() -> None:
    cw = aws.aws_client("cloudwatch", "us-east-1", "http://127.0.0.1:1")
    stats = AlbTargetGroupStats(cw, "app/hf-x/1")
    with Stubber(cw) as stub:
        stub.add_client_error(
            "get_metric_data",
            service_error_code="AccessDenied",
            service_message="User is not authorized to perform: cloudwatch:GetMetricData",
            http_status_code=403,
        )
        stub.add_client_error(
            "get_metric_data", service_error_code="Throttling", http_status_code=400
        )
        with pytest.raises(AdapterError, match="AccessDenied: User is not authorized") as denied:
            stats.read({"targetgroup/a/1": "L4"}, ["us-east-1a"], time.time())
        with pytest.raises(ThrottledError, match="still throttled"):
            stats.read({"targetgroup/a/1": "L4"}, ["us-east-1a"], time.time())
    assert "\n" not in str(denied.value)


# -- through the backend and the metrics registry -------------------------------------------


def test_the_alb_figures_are_exported_under_the_sandbox_names(
    moto_url: str, svc: str, tmp_path: Path
) -> None:
    paths = cloud_root(tmp_path, svc)
    spec = load_spec(paths.spec_file)
    lb = f"app/hf-{svc}/1"
    group = f"targetgroup/hf-{svc}/2"
    write_outputs(paths, lb_arn_suffix=lb, target_group_arn=f"{ACCOUNT}:{group}")
    edge = settled_edge(time.time())
    put(moto_url, lb, group, "us-east-1a", edge - 60, RequestCount=12,
        HTTPCode_Target_2XX_Count=10, HTTPCode_Target_5XX_Count=2,
        TargetConnectionErrorCount=1, TargetResponseTime=0.125)  # fmt: skip
    backend = ProviderCloud(
        paths,
        spec,
        moto_settings(moto_url),
        apis={"aws": AwsApis(spec, moto_url, lb_quantiles=False), "gcp": FakeApis()},
    )
    metrics = LoopMetrics(spec.name)
    metrics.watch_traffic(backend.replica_traffic)
    got = samples(metrics)
    labels = {
        ("service", spec.name),
        ("replica", ""),
        ("zone", "us-east-1a"),
        ("market", ""),
        ("accelerator", "L4"),  # the region's one type (services/llama-cloud.yaml)
    }
    assert got[("hedgeform_lb_stats_up", frozenset({("service", spec.name)}))] == 1.0
    assert got[("hedgeform_replica_requests_total", frozenset(labels))] == 12
    assert got[("hedgeform_replica_responses_total", frozenset(labels | {("code", "5xx")}))] == 2
    assert got[("hedgeform_replica_responses_total", frozenset(labels | {("code", "2xx")}))] == 10
    assert got[("hedgeform_replica_connection_errors_total", frozenset(labels))] == 1
    assert got[("hedgeform_replica_response_time_seconds", frozenset(labels))] == 0.125
    names = {name for name, _ in got}
    assert "hedgeform_replica_response_errors_total" not in names  # ALB has no such figure
    assert "hedgeform_replica_total_time_seconds" not in names


class ReadingApis(FakeApis):
    """FakeApis with `lb_traffic`: scripted groups, or the next errors to raise."""

    def __init__(self) -> None:
        super().__init__()
        self.lb_errors: list[Exception] = []
        self.lb_reads = 0

    def lb_traffic(
        self, region: str, outputs: Mapping[str, Any], zones: Sequence[str], accelerator: str,
        now: float,
    ) -> list[GroupTraffic]:  # fmt: skip
        self.lb_reads += 1
        if self.lb_errors:
            raise self.lb_errors.pop(0)
        return [GroupTraffic("tg", zones[0], accelerator, requests=5)]


def test_a_failed_read_is_stats_up_0_and_one_warning_line_then_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(cloud_backend, "LB_STATS_EVERY_S", 0.0)  # read at every scrape
    paths = cloud_root(tmp_path, "llama-cloud")
    spec = load_spec(paths.spec_file)
    aws_apis, gcp_apis = ReadingApis(), ReadingApis()
    aws_apis.lb_errors = [ThrottledError("AWS cloudwatch:get_metric_data still throttled")] * 3
    backend = ProviderCloud(
        paths, spec, moto_settings("http://127.0.0.1:1"), apis={"aws": aws_apis, "gcp": gcp_apis}
    )
    logger = logging.getLogger("test-lb-stats")
    metrics = LoopMetrics(spec.name)
    metrics.watch_traffic(backend.replica_traffic, logger)
    up = ("hedgeform_lb_stats_up", frozenset({("service", spec.name)}))
    with caplog.at_level(logging.WARNING, logger="test-lb-stats"):
        for _ in range(3):
            assert samples(metrics)[up] == 0.0
    lines = [r.getMessage() for r in caplog.records if r.name == "test-lb-stats"]
    assert lines == [
        "serving metrics not read: aws-us-east-1: AWS cloudwatch:get_metric_data still throttled"
    ]
    got = samples(metrics)
    assert got[up] == 1.0
    assert sum(v for (n, _), v in got.items() if n == "hedgeform_replica_requests_total") == 10


def test_reads_are_kept_for_a_minute_so_scrapes_do_not_multiply_api_calls(
    tmp_path: Path,
) -> None:
    paths = cloud_root(tmp_path, "llama-cloud")
    spec = load_spec(paths.spec_file)
    aws_apis = ReadingApis()
    aws_apis.lb_errors = [AdapterError("AWS cloudwatch:get_metric_data failed: AccessDenied")]
    backend = ProviderCloud(
        paths, spec, moto_settings("http://127.0.0.1:1"), apis={"aws": aws_apis, "gcp": FakeApis()}
    )
    for _ in range(3):  # the failure too is kept: no retry storm at every scrape
        with pytest.raises(AdapterError, match=r"aws-us-east-1: .*AccessDenied"):
            backend.replica_traffic()
    assert aws_apis.lb_reads == 1


def test_azure_has_no_lb_figures_and_says_why(tmp_path: Path) -> None:
    paths = cloud_root(tmp_path, "llama-cloud")
    spec = load_spec(paths.spec_file)
    azure = AzureApis(spec, "00000000-0000-0000-0000-000000000000", StaticToken("t"))
    assert not isinstance(azure, ReadsLbStats)
    assert isinstance(AwsApis(spec, "http://127.0.0.1:1"), ReadsLbStats)
    backend = ProviderCloud(
        paths,
        spec,
        moto_settings("http://127.0.0.1:1"),
        apis={"aws": FakeApis(), "gcp": FakeApis(), "azure": azure},
    )
    # A service placed on Azure only: nothing to read, and the error says why.
    backend._region_stacks = lambda: [  # type: ignore[method-assign]
        cloud_backend.StackDef("azure-eastus", "azure", "eastus", "azure")
    ]
    with pytest.raises(AdapterError, match="Standard load balancer is layer 4"):
        backend.replica_traffic()


def test_a_service_on_azure_and_aws_exports_aws_figures_and_warns_once_for_azure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(cloud_backend, "LB_STATS_EVERY_S", 0.0)
    paths = cloud_root(tmp_path, "llama-cloud")
    spec = load_spec(paths.spec_file)
    azure = AzureApis(spec, "00000000-0000-0000-0000-000000000000", StaticToken("t"))
    backend = ProviderCloud(
        paths,
        spec,
        moto_settings("http://127.0.0.1:1"),
        apis={"aws": ReadingApis(), "gcp": FakeApis(), "azure": azure},
    )
    backend._region_stacks = lambda: [  # type: ignore[method-assign]
        cloud_backend.StackDef("aws-us-east-1", "aws", "us-east-1", "aws"),
        cloud_backend.StackDef("azure-eastus", "azure", "eastus", "azure"),
    ]
    with caplog.at_level(logging.WARNING, logger="reconciler.backends.clouds"):
        for _ in range(2):
            got = backend.replica_traffic()
            assert got is not None and [t.requests for t in got.values()] == [5]
    warned = [r.getMessage() for r in caplog.records if r.name == "reconciler.backends.clouds"]
    assert len(warned) == 1 and warned[0].startswith("serving metrics of azure-eastus not read")
