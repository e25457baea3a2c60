"""Serving metrics exported with the loop's: per-replica traffic mirrored from the load
balancer, replicas by state and market, $/h by market, preemptions and fallbacks, and the
Grafana dashboard in docs/ that reads exactly these names."""

from __future__ import annotations

import json
import logging
import random
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from reconciler.backends.base import ReplicaTraffic
from reconciler.backends.fake import FakeBackend
from reconciler.backends.sandbox import traffic_of
from reconciler.engine.loop import LoopSettings, ReconcileLoop
from reconciler.engine.observability import LoopMetrics, cost_per_hour
from reconciler.engine.reconcile import Reconciler
from reconciler.paths import ServicePaths
from reconciler.policy import (
    Market,
    Notice,
    NoticeKind,
    Observation,
    Replica,
    ReplicaState,
    ZoneOffer,
)
from reconciler.sandbox.haproxy import ServerStats
from reconciler.spec import load_spec
from reconciler.stacks import ManagedReplica
from reconciler.terraform.fake import FakeTerraformRunner

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "docs" / "grafana-dashboard.json"
REPLICAS = (
    ManagedReplica("local-1a-spot-0", "local-1a", Market.SPOT, stack="local-1"),
    ManagedReplica("local-1b-spot-1", "local-1b", Market.SPOT, stack="local-1"),
    ManagedReplica("local-2a-spot-2", "local-2a", Market.SPOT, stack="local-2"),
)


def traffic(requests: int, fivexx: int = 0, rtime_s: float | None = 0.02) -> ReplicaTraffic:
    return ReplicaTraffic(
        requests=requests,
        responses={"2xx": requests - fivexx, "5xx": fivexx},
        connection_errors=1,
        response_errors=2,
        response_time_s=rtime_s,
        total_time_s=None if rtime_s is None else rtime_s * 2,
    )


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "services").mkdir()
    shutil.copy(REPO / "services" / "llama.yaml", tmp_path / "services" / "llama.yaml")
    (tmp_path / "terraform").symlink_to(REPO / "terraform")
    yield tmp_path


def make_loop(root: Path) -> tuple[ReconcileLoop, FakeBackend, LoopMetrics]:
    paths = ServicePaths.for_service("llama", root=root)
    runners: dict[str, FakeTerraformRunner] = {}

    def factory(stack: str, stack_dir: Path, module_dir: Path) -> FakeTerraformRunner:
        return runners.setdefault(stack, FakeTerraformRunner(name=stack))

    spec = load_spec(paths.spec_file)
    backend = FakeBackend(spec, paths.sandbox_dir, managed_replicas=list(REPLICAS))
    rec = Reconciler(paths, spec, runner_factory=factory, backend=backend)
    logger = logging.getLogger(f"test-serving-metrics-{id(runners)}")
    logger.propagate = False
    metrics = LoopMetrics("llama")
    settings = LoopSettings(interval_s=30, poll_s=0.05)
    loop = ReconcileLoop(rec, settings, logger, metrics, rng=random.Random(7))
    return loop, backend, metrics


def samples(metrics: LoopMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the registry's exposition text: (name, labels) -> value."""
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(metrics: LoopMetrics, name: str, **labels: str) -> float | None:
    want = set(labels.items())
    found = [v for (n, ls), v in samples(metrics).items() if n == name and want <= ls]
    assert len(found) <= 1, f"{name}{labels} matches several series"
    return found[0] if found else None


# -- per-replica traffic ------------------------------------------------------------------


def test_replica_traffic_is_exported_with_the_labels_of_the_last_tick(root: Path) -> None:
    loop, backend, metrics = make_loop(root)
    backend.traffic = {"local-1a-spot-0": traffic(40, fivexx=3), "local-2a-spot-2": traffic(7)}
    loop._tick()
    labels = {"replica": "local-1a-spot-0", "zone": "local-1a", "market": "spot"}
    assert value(metrics, "hedgeform_replica_requests_total", **labels, accelerator="L4") == 40
    assert value(metrics, "hedgeform_replica_responses_total", **labels, code="5xx") == 3
    assert value(metrics, "hedgeform_replica_responses_total", **labels, code="2xx") == 37
    assert value(metrics, "hedgeform_replica_connection_errors_total", **labels) == 1
    assert value(metrics, "hedgeform_replica_response_errors_total", **labels) == 2
    assert value(metrics, "hedgeform_replica_response_time_seconds", **labels) == 0.02
    assert value(metrics, "hedgeform_replica_total_time_seconds", **labels) == 0.04
    assert value(metrics, "hedgeform_lb_stats_up", service="llama") == 1
    # a replica the load balancer does not serve has no series
    assert value(metrics, "hedgeform_replica_requests_total", replica="local-1b-spot-1") is None


def test_traffic_is_read_at_each_scrape_not_only_at_ticks(root: Path) -> None:
    loop, backend, metrics = make_loop(root)
    backend.traffic = {"local-1a-spot-0": traffic(5)}
    loop._tick()
    backend.traffic = {"local-1a-spot-0": traffic(55)}  # requests between two ticks
    assert value(metrics, "hedgeform_replica_requests_total", replica="local-1a-spot-0") == 55


def test_a_member_the_tick_did_not_see_is_labelled_unknown(root: Path) -> None:
    loop, backend, metrics = make_loop(root)
    backend.traffic = {"stray-0": traffic(2, rtime_s=None)}
    loop._tick()
    stray = {"replica": "stray-0", "zone": "unknown", "market": "unknown"}
    assert value(metrics, "hedgeform_replica_requests_total", **stray) == 2
    # no request timed yet: no latency sample rather than a 0 s one
    assert value(metrics, "hedgeform_replica_response_time_seconds", replica="stray-0") is None


def test_an_unreadable_load_balancer_is_a_zero_up_gauge_not_a_failed_scrape(
    root: Path,
) -> None:
    loop, backend, metrics = make_loop(root)
    loop._tick()  # traffic None: the LB is not running
    assert value(metrics, "hedgeform_lb_stats_up", service="llama") == 0
    assert value(metrics, "hedgeform_replica_requests_total", replica="local-1a-spot-0") is None
    backend.fail_next("replica_traffic", OSError("socket gone"))
    assert value(metrics, "hedgeform_lb_stats_up", service="llama") == 0


def test_a_haproxy_row_becomes_replica_traffic_in_seconds() -> None:
    stats = ServerStats(
        "r0", "UP", req_tot=12, req_rate=0, hrsp_2xx=10, hrsp_5xx=2, sessions_total=12,
        econ=1, eresp=3, rtime_ms=40, ttime_ms=55,
    )  # fmt: skip
    t = traffic_of(stats)
    assert (t.requests, t.responses["2xx"], t.responses["5xx"]) == (12, 10, 2)
    assert (t.connection_errors, t.response_errors) == (1, 3)
    assert (t.response_time_s, t.total_time_s) == (0.04, 0.055)
    idle = traffic_of(ServerStats("r1", "UP", 0, 0, 0, 0, 0))
    assert idle.response_time_s is None and idle.total_time_s is None


# -- replicas, cost, preemptions, fallbacks ---------------------------------------------


def test_cost_is_the_price_of_the_replicas_that_run_by_market() -> None:
    zones = (
        ZoneOffer("a", "r", "local", 1.0, 3.0),
        ZoneOffer("b", "r", "local", None, 4.0),  # no spot offered here
    )
    replicas = (
        Replica("s0", "a", Market.SPOT, ReplicaState.READY, 0.0),
        Replica("s1", "a", Market.SPOT, ReplicaState.STARTING, 0.0),
        Replica("s2", "b", Market.SPOT, ReplicaState.READY, 0.0),
        Replica("s3", "a", Market.SPOT, ReplicaState.PREEMPTED, 0.0),  # gone: not billed
        Replica("o0", "b", Market.ON_DEMAND, ReplicaState.NOT_READY, 0.0),
        Replica("o1", "gone", Market.ON_DEMAND, ReplicaState.READY, 0.0),  # retired zone
        Replica("o2", "a", Market.ON_DEMAND, ReplicaState.FAILED, 0.0),
    )
    # reconciler/cost.py's rule: s2 (spot where none is offered) and o1 (a zone no offer
    # prices) are unpriced, counted in the tick record's cost.unpriced, not here.
    assert cost_per_hour(Observation(replicas, zones)) == {"spot": 2.0, "on_demand": 4.0}
    assert cost_per_hour(Observation((), zones)) == {"spot": 0.0, "on_demand": 0.0}


def test_replicas_cost_preemptions_and_fallbacks_after_a_preemption(root: Path) -> None:
    loop, backend, metrics = make_loop(root)
    loop._tick()
    assert value(metrics, "hedgeform_cost_usd_per_hour", market="spot") == 3.0  # 3 x 1.0
    assert value(metrics, "hedgeform_cost_usd_per_hour", market="on_demand") == 0.0
    assert value(metrics, "hedgeform_preemptions_total", kind="preempted") == 0
    assert value(metrics, "hedgeform_fallbacks_total", zone="local-1a") == 0
    for replica in REPLICAS[:2]:  # one spot replica left of the two the target asks
        notice = Notice(NoticeKind.PREEMPTED, replica.id, replica.zone, 1.0)
        backend.notices_queue.append(notice)
    loop._tick()
    assert value(metrics, "hedgeform_preemptions_total", kind="preempted") == 2
    assert (
        sum(
            v
            for (n, ls), v in samples(metrics).items()
            if n == "hedgeform_replicas" and ("state", "PREEMPTED") in ls
        )
        == 2
    )
    assert value(metrics, "hedgeform_cost_usd_per_hour", market="spot") == 1.0
    fallbacks = sum(v for (n, _), v in samples(metrics).items() if n == "hedgeform_fallbacks_total")
    assert fallbacks >= 1  # SpotHedge covered the lost spot replica with on-demand


# -- the dashboard ------------------------------------------------------------------------

PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "inf", "nan",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers that are not functions
    (followed by `(`), keywords, label names (inside `{}` or a `by (...)` clause), strings
    or durations."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", expr):
        if match.group(1).lower() not in PROMQL_WORDS:
            names.add(match.group(1))
    return names


CLOUD_ONLY = {"hedgeform_replica_response_time_quantile_seconds"}


def dashboard_queries() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    for var in dash.get("templating", {}).get("list", []):
        query = var.get("query")
        text = query.get("query", "") if isinstance(query, dict) else ""
        found = re.fullmatch(r"label_values\((\w+),\s*\w+\)", text)
        if found:
            exprs.append(found.group(1))
    return exprs


def test_metric_names_are_read_from_promql() -> None:
    expr = (
        'sum by (market, le) (rate(a_total{service="$service", code=~"5.."}[5m]))'
        " / on (market) group_left b + histogram_quantile(0.9, c_bucket[1h]) offset 1h"
    )
    assert metric_names(expr) == {"a_total", "b", "c_bucket"}


def test_every_dashboard_query_reads_a_metric_the_loop_exports(root: Path) -> None:
    loop, backend, metrics = make_loop(root)
    backend.traffic = {r.id: traffic(10, fivexx=1) for r in REPLICAS}
    loop._tick()
    exported = {name for name, _ in samples(metrics)}
    queries = dashboard_queries()
    assert len(queries) >= 10
    used = set().union(*(metric_names(q) for q in queries))
    for needed in (
        "hedgeform_replica_requests_total",
        "hedgeform_replica_responses_total",
        "hedgeform_replica_connection_errors_total",
        "hedgeform_replica_response_time_seconds",
        "hedgeform_replicas",
        "hedgeform_cost_usd_per_hour",
        "hedgeform_preemptions_total",
        "hedgeform_fallbacks_total",
    ):
        assert needed in used, f"the dashboard shows no {needed}"
    # Quantiles come from a cloud only (AWS's extended statistics; HAProxy keeps none): the
    # test below has a cloud's figures export them.
    missing = used - exported - CLOUD_ONLY
    assert missing == set(), "dashboard queries name metrics the loop does not export"


def test_the_dashboard_reads_a_clouds_figures_per_zone_and_accelerator(root: Path) -> None:
    """A cloud's figures (per target group and zone, replica and market empty) fill the
    panels a sandbox's leave empty (quantiles), and every query still names an exported
    metric: sandbox and cloud together export every name the dashboard reads."""
    loop, backend, metrics = make_loop(root)
    backend.traffic = {r.id: traffic(10, fivexx=1) for r in REPLICAS}
    loop._tick()
    sandbox = {name for name, _ in samples(metrics)}
    backend.traffic = {
        "aws-us-east-1/targetgroup/hf-x/1/us-east-1a": ReplicaTraffic(
            requests=12,
            responses={"2xx": 10, "5xx": 2},
            connection_errors=1,
            response_errors=None,  # the ALB has no such figure
            response_time_s=0.125,
            zone="us-east-1a",
            accelerator="L4",
            response_time_quantiles_s={"0.5": 0.1, "0.99": 0.9},
        )
    }
    cloud = samples(metrics)
    group = {
        "service": "llama",
        "replica": "",
        "zone": "us-east-1a",
        "market": "",
        "accelerator": "L4",
    }
    assert cloud[("hedgeform_replica_requests_total", frozenset(group.items()))] == 12
    p99 = frozenset({**group, "quantile": "0.99"}.items())
    assert cloud[("hedgeform_replica_response_time_quantile_seconds", p99)] == 0.9
    names = {name for name, _ in cloud}
    assert "hedgeform_replica_response_errors_total" not in names
    used = set().union(*(metric_names(q) for q in dashboard_queries()))
    assert used >= CLOUD_ONLY
    assert names >= CLOUD_ONLY
    assert used - (sandbox | names) == set()
