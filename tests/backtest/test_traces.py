"""Trace files on the 30 s tick grid: any gap_seconds, and zones of unequal length."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reconciler.traces import TraceSet, ZoneTrace


def zone(name: str, gap: int, data: list[int]) -> ZoneTrace:
    return ZoneTrace(zone=name, gap_seconds=gap, data=tuple(data), source=Path(f"{name}.json"))


def test_a_195_second_trace_is_sampled_at_each_tick() -> None:
    """Value i holds for [195 i, 195 (i + 1)); tick t takes the value in force at 30 t.
    Before issue 14 a gap that is not a multiple of 30 s was refused."""
    trace = zone("a-1a", 195, [3, 1, 2])
    # ticks at 0..180 s -> value 0; 210..360 -> 1 (195..390); 390..570 -> 2 (390..585)
    expected = [3] * 7 + [1] * 6 + [2] * 7
    assert trace.per_tick(30).tolist() == expected
    assert trace.ticks(30) == 20  # 585 s: ticks at 0, 30, ..., 570


def test_a_34_second_trace_is_sampled_at_each_tick() -> None:
    trace = zone("a-1a", 34, [5, 4, 3, 2, 1])
    times = np.arange(6) * 30  # 0, 30, ..., 150 < 170 s
    assert trace.per_tick(30).tolist() == [[5, 4, 3, 2, 1][t // 34] for t in times]
    assert trace.per_tick(30).tolist() == [5, 5, 4, 3, 2, 1]


def test_a_multiple_of_the_tick_repeats_each_value() -> None:
    assert zone("a-1a", 60, [2, 0, 1]).per_tick(30).tolist() == [2, 2, 0, 0, 1, 1]


def test_zones_with_different_gaps_share_one_grid() -> None:
    traces = TraceSet("MIX", (zone("a-1a", 195, [1] * 4), zone("b-1a", 34, [2] * 30)))
    capacity = traces.capacity(30)
    assert capacity.shape == (2, 26)  # 780 s and 1,020 s: the common 26 ticks
    assert traces.span_note(30) == (
        "MIX: zones cover 0.2-0.3 h; using the common first 0.2 h (drops 24% of b-1a)"
    )


def test_unequal_zones_are_named_with_what_is_dropped() -> None:
    day = 86_400 // 300
    traces = TraceSet(
        "AWS1",
        (
            zone("us-east-1f", 300, [1] * int(9.1 * day)),
            zone("us-west-2c", 300, [1] * int(13.2 * day)),
            zone("us-east-2a", 300, [1] * int(10.4 * day)),
        ),
    )
    assert traces.capacity(30).shape == (3, int(9.1 * day) * 10)
    assert traces.span_note(30) == (
        "AWS1: zones cover 9.1-13.2 days; using the common first 9.1 days "
        "(drops 31% of us-west-2c, 13% of us-east-2a)"
    )


def test_equal_zones_need_no_note() -> None:
    traces = TraceSet("EQ", (zone("a-1a", 300, [1] * 10), zone("b-1a", 150, [1] * 20)))
    assert traces.span_note(30) is None
    assert traces.capacity(30).shape == (2, 100)
