"""The soak's figures from hand-made samples: availability, cost, percentiles, windows."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from reconciler.ops.soak_report import (
    Sample,
    SoakReport,
    availability_pct,
    cost_pct,
    failed_pct,
    notice_times,
    percentile,
    read_jsonl,
    tick_stats,
    with_requests,
    write_plot,
)


def s(t: float, spot: int, od: int = 0, target: int | None = 2, **kw: int) -> Sample:
    """A sample where every running replica is ready and up in the LB unless told otherwise."""
    return Sample(
        t=t,
        ready_spot=kw.get("ready_spot", spot),
        ready_od=kw.get("ready_od", od),
        running_spot=spot,
        running_od=od,
        lb_members=kw.get("lb_members", spot + od),
        lb_up=kw.get("lb_up", spot + od),
        target=target,
    )


def test_availability_counts_seconds_with_ready_at_least_target() -> None:
    samples = [s(0, 3), s(1, 2), s(2, 1), s(3, 1, 1), s(4, 0, 2)]
    assert availability_pct(samples) == pytest.approx(80.0)  # only t=2 misses


def test_a_sample_without_a_target_is_a_miss() -> None:
    assert availability_pct([s(0, 3, target=None), s(1, 3)]) == pytest.approx(50.0)


def test_serving_availability_uses_lb_servers_up() -> None:
    samples = [s(0, 3, lb_up=1), s(1, 3), s(2, 3, ready_spot=1)]
    assert availability_pct(samples, serving=True) == pytest.approx(200 / 3)
    assert availability_pct(samples) == pytest.approx(200 / 3)
    assert availability_pct([]) is None


def test_cost_is_spot_one_on_demand_three_over_target_on_demand() -> None:
    # target 2 served by 2 on-demand = 100 %; 3 spot = 50 %; mixed 2 spot + 1 od = 83.3 %
    assert cost_pct([s(0, 0, 2)]) == pytest.approx(100.0)
    assert cost_pct([s(0, 3)]) == pytest.approx(50.0)
    assert cost_pct([s(0, 3), s(1, 2, 1)]) == pytest.approx(100 * (3 + 5) / 12)


def test_cost_counts_running_not_only_ready_replicas() -> None:
    starting = s(0, 3, ready_spot=0)  # billed from launch, as in the backtests
    assert cost_pct([starting]) == pytest.approx(50.0)
    assert cost_pct([s(0, 3, target=None)]) is None


def test_failed_pct() -> None:
    assert failed_pct(995, 5) == pytest.approx(0.5)
    assert failed_pct(0, 0) is None


@pytest.mark.parametrize("q", [0, 1, 50, 90, 99, 100])
def test_percentile_matches_numpy(q: float) -> None:
    values = [5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0]
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_edges() -> None:
    assert percentile([], 50) is None
    assert percentile([4.0], 99) == 4.0
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_requests_join_samples_by_second() -> None:
    samples = with_requests([s(0.5, 3), s(1.5, 3), s(5.5, 3)], [(5, 0), (4, 1)])
    assert [(x.ok, x.failed) for x in samples] == [(5, 0), (4, 1), (0, 0)]


def _ts(at: float) -> str:
    return datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]


def test_tick_stats_counts_only_the_window() -> None:
    t0 = 1_800_000_000.0
    records = [
        {"ts": _ts(t0 - 10), "message": "tick", "durations": {"total_s": 9.0}},
        {"ts": _ts(t0 + 1), "message": "loop started"},
        {
            "ts": _ts(t0 + 2),
            "message": "tick",
            "durations": {"total_s": 3.0},
            "stacks": {
                "local-1": {"launch_failures": {"a": "capacity", "b": "other"}},
                "local-2": {"launch_failures": {"c": "capacity"}},
            },
        },
        {"ts": _ts(t0 + 5), "message": "tick failed"},
        {"ts": _ts(t0 + 7), "message": "tick", "durations": {"total_s": 1.0}},
        {"ts": "garbage", "message": "tick"},
        # an apply's passes and its pre-apply decision are not the loop's ticks
        {"ts": _ts(t0 + 8), "message": "tick", "source": "apply", "durations": {"total_s": 4.0}},
        {"ts": _ts(t0 + 9), "message": "tick failed", "source": "apply"},
        {"ts": _ts(t0 + 10), "message": "tick decided", "source": "run"},
    ]
    stats = tick_stats(records, t0, t0 + 60)
    assert (stats.ticks, stats.failed_ticks, stats.capacity_errors) == (3, 1, 2)
    assert stats.durations_s == (3.0, 1.0)


def test_notice_times_are_relative_to_the_window() -> None:
    notices = [
        {"kind": "warning", "at": 99.0},
        {"kind": "preempted", "at": 104.0},
        {"kind": "preempted", "at": 130.0},
        {"kind": "preempted", "at": 200.0},
    ]
    assert notice_times(notices, "preempted", 100.0, 160.0) == [4.0, 30.0]
    assert notice_times(notices, "warning", 100.0, 160.0) == []


def test_read_jsonl_skips_torn_lines(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\nnot json\n[1]\n{"b": 2')
    assert read_jsonl(path) == [{"a": 1}]
    assert read_jsonl(tmp_path / "missing") == []


def _report(**kw: object) -> SoakReport:
    base: dict[str, object] = dict(
        settings={}, duration_s=60.0, availability_pct=100.0, serving_availability_pct=100.0,
        requests=300, failed_requests=0, failed_pct=0.0, errors={}, p50_ms=8.0, p90_ms=9.0,
        p99_ms=12.0, cost_pct=50.0, preemptions=2, warnings=3, capacity_errors=1, ticks=10,
        failed_ticks=0, tick_p50_s=1.0, tick_p99_s=5.0, orphans=[], loop_exit=0,
        loop_stop_s=1.0, destroy_exit=0, completed=True,
    )  # fmt: skip
    base.update(kw)
    return SoakReport(**base)  # type: ignore[arg-type]


def test_targets_pass_and_fail_at_their_thresholds() -> None:
    assert _report(failed_pct=0.5, availability_pct=99.0).passed
    assert not _report(failed_pct=0.51).passed
    assert not _report(availability_pct=98.9).passed
    assert not _report(orphans=["123: haproxy"]).passed
    assert not _report(loop_exit=None).passed
    assert not _report(destroy_exit=1).passed
    assert not _report(completed=False).passed
    assert not _report(failed_pct=None).passed  # no request measured is no pass


def test_table_prints_figures_and_pass_fail_lines() -> None:
    text = _report(failed_pct=1.0, failed_requests=3, errors={"HTTP 503": 3}).table()
    assert "FAIL  failed requests <= 0.5 %: 1.00 %" in text
    assert "PASS  availability >= 99 %: 100.00 %" in text
    assert "HTTP 503: 3" in text and "cost vs on-demand" in text


def test_json_carries_checks_and_samples() -> None:
    data = _report().to_json([s(0.5, 3)], [4.0])
    assert data["passed"] is True and len(data["checks"]) == 6
    assert data["samples"][0]["ready_spot"] == 3 and data["preempted_at_s"] == [4.0]
    json.dumps(data)


def test_plot_writes_a_png(tmp_path: Path) -> None:
    samples = [s(0.5, 3), s(1.5, 2, 1), s(2.5, 1, target=None)]
    samples[1] = Sample(**{**samples[1].__dict__, "failed": 2})
    path = tmp_path / "soak.png"
    write_plot(samples, [1.2], [0.7], path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
