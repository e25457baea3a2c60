"""ReplicaMetricsSource (Prometheus counters), the sandbox notice feed, the catalog, fakes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.clouds.base import MetricsSource, NoticeSource, PriceSource
from reconciler.clouds.catalog import instance_for
from reconciler.clouds.fakes import FakeMetricsSource, FakeNoticeSource, FakePriceSource
from reconciler.clouds.prices import CatalogPriceSource, catalog_zones
from reconciler.clouds.replica_metrics import ReplicaMetricsSource, counter_total
from reconciler.engine.signals import instance_type
from reconciler.errors import AdapterError
from reconciler.policy import Notice, NoticeKind
from reconciler.sandbox.notice_source import SandboxNoticeSource
from reconciler.spec import ServiceSpec, load_spec

from .conftest import FakeApi

METRICS = """\
# HELP vllm:request_success_total Count of successfully processed requests.
# TYPE vllm:request_success_total counter
vllm:request_success_total{{finished_reason="stop",model_name="m"}} {stop}
vllm:request_success_total{{finished_reason="length",model_name="m"}} {length}
vllm:num_requests_running{{model_name="m"}} 3.0
"""


def test_counter_total_sums_label_sets() -> None:
    assert counter_total(METRICS.format(stop=10, length=5), "vllm:request_success_total") == 15
    assert counter_total("other 1\n", "vllm:request_success_total") is None


def test_replica_metrics_rate(fake_api: FakeApi) -> None:
    totals = {"a": [(100, 0), (700, 100)], "b": [(50, 0), (350, 0)]}

    def scrape(replica: str) -> object:
        def reply(path: str, query: dict[str, str]) -> tuple[int, bytes]:
            stop, length = totals[replica].pop(0)
            return 200, METRICS.format(stop=stop, length=length).encode()

        return reply

    fake_api.routes["/a/metrics"] = scrape("a")  # type: ignore[assignment]
    fake_api.routes["/b/metrics"] = scrape("b")  # type: ignore[assignment]
    endpoints = {"a": f"{fake_api.url}/a", "b": f"{fake_api.url}/b", "gone": "http://127.0.0.1:9"}
    source = ReplicaMetricsSource(lambda: endpoints, timeout=0.5)
    assert source.request_rate(1000.0) is None  # one sample: no rate yet
    # a: +700 requests, b: +300 in 60 s -> 1000 / 60
    assert source.request_rate(1060.0) == pytest.approx(1000 / 60)


def test_replica_metrics_all_down_is_unknown() -> None:
    source = ReplicaMetricsSource(lambda: {"x": "http://127.0.0.1:9"}, timeout=0.2)
    assert source.request_rate(0.0) is None


def test_sandbox_notice_feed(tmp_path: Path) -> None:
    feed = tmp_path / "notices.jsonl"
    lines = [
        {"kind": "warning", "replica_id": "r-1", "zone": "local-1a", "at": 5.0, "deadline": 35.0},
        {
            "kind": "preempted",
            "replica_id": "r-1",
            "zone": "local-1a",
            "at": 35.0,
            "deadline": 35.0,
        },
    ]
    feed.write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"kind": "warn')
    source = SandboxNoticeSource(tmp_path)
    assert source.poll() == [
        Notice(NoticeKind.WARNING, "r-1", "local-1a", 5.0),
        Notice(NoticeKind.PREEMPTED, "r-1", "local-1a", 35.0),
    ]
    assert source.poll() == []  # the half-written line waits for its newline


def _spec(accelerators: str, tmp: Path) -> ServiceSpec:
    path = tmp / "svc.yaml"
    path.write_text(
        f"service:\n  readiness_probe: /health\n  replicas: 1\nresources:\n"
        f"  accelerators: {accelerators}\n  any_of:\n"
        f"    - {{cloud: aws, region: us-east-1}}\n"
    )
    return load_spec(path)


def test_catalog(tmp_path: Path) -> None:
    assert instance_type(_spec("l4", tmp_path), "aws", "us-east-1") == "g6.xlarge"
    assert instance_type(_spec("H100", tmp_path), "aws", "us-east-1") is None
    prices = CatalogPriceSource("gcp", "g2-standard-8").spot_prices(["us-central1-a", "mars-1-a"])
    assert list(prices) == ["us-central1-a"]
    assert "eastus-1" in catalog_zones("azure", "eastus")
    assert CatalogPriceSource("aws", "g6.xlarge").as_of


def test_signals_and_plan_read_the_same_catalog(tmp_path: Path) -> None:
    """Issue 10: for an AWS V100 spec `hedgeform signals` found no instance type while `plan`
    used p3.2xlarge (two catalogs)."""
    spec = _spec("V100", tmp_path)
    assert instance_type(spec, "aws", "us-east-1") == "p3.2xlarge"
    assert instance_for("aws", spec.resources.accelerators).instance_type == "p3.2xlarge"


def test_fakes_satisfy_the_protocols_record_and_fail() -> None:
    notices = FakeNoticeSource([Notice(NoticeKind.WARNING, "r-1", "z", 1.0)])
    metrics = FakeMetricsSource([5.0, None])
    prices = FakePriceSource({"z1": 0.3, "z2": 0.4})
    assert isinstance(notices, NoticeSource)
    assert isinstance(metrics, MetricsSource)
    assert isinstance(prices, PriceSource)
    notices.fail_next("queue down")
    with pytest.raises(AdapterError, match="queue down"):
        notices.poll()
    assert len(notices.poll()) == 1 and notices.poll() == []  # nothing lost by the failure
    assert [metrics.request_rate(t) for t in (1.0, 2.0, 3.0)] == [5.0, None, None]
    assert metrics.calls == [("request_rate", 1.0), ("request_rate", 2.0), ("request_rate", 3.0)]
    assert prices.spot_prices(["z2"]) == {"z2": 0.4}
    prices.fail_next(TimeoutError("slow"))
    with pytest.raises(TimeoutError):
        prices.spot_prices([])
