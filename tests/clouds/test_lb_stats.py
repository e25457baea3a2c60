"""Running totals from a cloud's per-minute sums (clouds/lb_stats.py), and the parsing of
CloudWatch's GetMetricData answer into figures per target group and zone
(clouds/aws/lb_stats.py), without any cloud: the inputs are the API's own shapes."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from reconciler.clouds.aws.lb_stats import (
    AlbTargetGroupStats,
    points_by_id,
    queries_for,
    target_group_dimension,
)
from reconciler.clouds.lb_stats import PeriodTotals, newest, settled_edge
from reconciler.errors import AdapterError
from tests.clouds.hcl import PROJECT_ROOT

T0 = 1_800_000_000.0 - 1_800_000_000.0 % 60  # a minute boundary


def test_the_settled_edge_is_the_end_of_the_newest_minute_that_ended_settle_s_ago() -> None:
    assert settled_edge(T0 + 180 + 59, settle_s=180) == T0
    assert settled_edge(T0 + 180, settle_s=180) == T0
    assert settled_edge(T0 + 179, settle_s=180) == T0 - 60


def test_overlapping_reads_count_each_settled_minute_once() -> None:
    totals: PeriodTotals[str] = PeriodTotals()
    first = [(T0 - 180, 5.0), (T0 - 120, 7.0), (T0 - 60, 11.0)]
    totals.begin(T0 - 180)
    assert totals.add("rq", first, edge=T0) == 23
    # The next read overlaps the last two minutes and brings one new settled minute, plus a
    # minute that has not ended by its edge (left for a later read).
    second = [(T0 - 120, 7.0), (T0 - 60, 11.0), (T0, 3.0), (T0 + 60, 100.0)]
    totals.begin(T0 - 120)
    assert totals.add("rq", second, edge=T0 + 60) == 26
    totals.begin(T0 - 60)
    assert totals.add("rq", [(T0 + 60, 100.0)], edge=T0 + 120) == 126
    assert totals.add("rq", [(T0 + 60, 100.0)], edge=T0 + 120) == 126  # a repeated read


def test_a_series_first_seen_later_brings_back_no_minute_before_the_totals_began() -> None:
    totals: PeriodTotals[str] = PeriodTotals()
    totals.begin(T0)
    assert totals.add("a", [], edge=T0 + 60) == 0
    totals.begin(T0 - 600)  # a later read's window reaches further back than the first
    assert totals.add("b", [(T0 - 300, 50.0), (T0, 4.0)], edge=T0 + 120) == 4


def test_newest_takes_the_newest_settled_minute() -> None:
    points = [(T0 - 120, 0.2), (T0 - 60, 0.4), (T0, 9.9)]
    assert newest(points, edge=T0) == 0.4
    assert newest([], edge=T0) is None


def test_a_target_group_arn_becomes_its_cloudwatch_dimension() -> None:
    arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/hf-ab12/73e2d6bc24d8a067"
    assert target_group_dimension(arn) == "targetgroup/hf-ab12/73e2d6bc24d8a067"
    with pytest.raises(AdapterError, match="not a target group ARN"):
        target_group_dimension("arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/app/x/1")


def _at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _result(i: int, points: list[tuple[float, float]], status: str = "Complete") -> dict[str, Any]:
    return {
        "Id": f"q{i}",
        "Label": f"q{i}",
        "Timestamps": [_at(t) for t, _ in points],
        "Values": [v for _, v in points],
        "StatusCode": status,
    }


def test_get_metric_data_results_become_totals_times_and_quantiles_per_group_and_zone() -> None:
    groups = {"targetgroup/hf-l4/1": "L4", "targetgroup/hf-shared/2": ""}
    queries = queries_for(groups, ["us-east-1a"], quantiles=True)
    ids = {(q.group, q.figure): i for i, q in enumerate(queries)}
    l4 = "targetgroup/hf-l4/1"
    answer: list[dict[str, Any]] = [
        _result(ids[(l4, "requests")], [(T0 - 120, 40.0), (T0 - 60, 60.0)]),
        _result(ids[(l4, "2xx")], [(T0 - 120, 38.0), (T0 - 60, 57.0)]),
        _result(ids[(l4, "5xx")], [(T0 - 120, 2.0), (T0 - 60, 3.0)]),
        _result(ids[(l4, "connection_errors")], [(T0 - 60, 1.0)]),
        _result(ids[(l4, "average")], [(T0 - 120, 0.5), (T0 - 60, 0.25)]),
        _result(ids[(l4, "0.99")], [(T0 - 60, 1.5)]),
        _result(ids[(l4, "0.5")], [(T0 - 60, 0.2)]),
    ]
    # A second page (NextToken) continues a series: its points are merged.
    pages = [
        {"MetricDataResults": answer, "NextToken": "more"},
        {"MetricDataResults": [_result(ids[(l4, "requests")], [(T0 - 180, 1.0)])]},
    ]
    stats = AlbTargetGroupStats(cloudwatch=None, load_balancer="app/hf-x/1")
    figures = stats.figures(groups, queries, points_by_id(pages), T0 - 180, T0)
    assert len(figures) == 1  # the shared group never had a datapoint: no series for it
    [got] = figures
    assert (got.group, got.zone, got.accelerator) == (l4, "us-east-1a", "L4")
    assert got.requests == 101
    assert got.responses == {"2xx": 95, "3xx": 0, "4xx": 0, "5xx": 5}
    assert got.connection_errors == 1
    assert got.response_time_s == 0.25  # the newest settled minute's average
    assert got.response_time_quantiles_s == {"0.5": 0.2, "0.99": 1.5}


def test_a_result_cloudwatch_refuses_fails_the_read_in_one_line() -> None:
    pages = [
        {
            "MetricDataResults": [
                {
                    "Id": "q0",
                    "Label": "RequestCount",
                    "StatusCode": "Forbidden",
                    "Messages": [{"Code": "Forbidden", "Value": "not authorized"}],
                }
            ]
        }
    ]
    with pytest.raises(AdapterError, match="Forbidden for RequestCount: not authorized"):
        points_by_id(pages)


def test_the_aws_outputs_the_adapter_reads_are_the_module_s_load_balancer_and_groups() -> None:
    """`AwsApis.lb_traffic` finds the ALB and its target groups through the stack's outputs;
    a renamed output would leave the figures silently empty."""
    outputs = (PROJECT_ROOT / "terraform" / "modules" / "aws" / "outputs.tf").read_text()
    assert re.search(r'output "lb_arn_suffix" \{[^}]*value\s*=\s*aws_lb\.this\.arn_suffix', outputs)
    assert re.search(
        r'output "target_group_arn" \{[^}]*value\s*=\s*aws_lb_target_group\.replicas\.arn', outputs
    )
    # GPU type -> ARN: the keys are the accelerator labels.
    assert re.search(
        r'output "target_group_arns" \{[^}]*value\s*=\s*\{ for acc, tg in '
        r"aws_lb_target_group\.typed : acc => tg\.arn \}",
        outputs,
    )
