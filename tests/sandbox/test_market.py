"""The spot market: trace-driven capacity (pure), capacity errors, preemption with a warning,
the notice feed, and the market daemon."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from reconciler.errors import CapacityError, SandboxError
from reconciler.sandbox import market_daemon, replicas
from reconciler.sandbox.cli import sandbox
from reconciler.sandbox.market import (
    DEFAULT_TRACE_DIR,
    MarketNotice,
    NoticeFeed,
    SpotMarket,
    capacity_at,
    notices_path,
)
from reconciler.traces import ZoneTrace, load_trace_set

TRACE = ZoneTrace(zone="local-1a", gap_seconds=60, data=(2, 1, 0, 3), source=Path("t.json"))


def test_capacity_follows_the_trace_at_the_replay_speed() -> None:
    start = 1_000.0
    # speed 60: one 60 s trace step per wall second.
    assert capacity_at(TRACE, start, 60, start) == 2
    assert capacity_at(TRACE, start, 60, start + 0.99) == 2
    assert capacity_at(TRACE, start, 60, start + 1.0) == 1
    assert capacity_at(TRACE, start, 60, start + 2.5) == 0
    assert capacity_at(TRACE, start, 60, start + 3.0) == 3
    # The trace loops; before the start it holds the first value.
    assert capacity_at(TRACE, start, 60, start + 4.0) == 2
    assert capacity_at(TRACE, start, 60, start - 100) == 2
    # speed 360 (a trace hour per 10 s): a 60 s step lasts 1/6 s.
    assert capacity_at(TRACE, start, 360, start + 2 / 6 + 1e-6) == 0
    # An offset skips into the trace.
    assert capacity_at(TRACE, start, 60, start, offset_s=180) == 3


@given(now=st.floats(min_value=0, max_value=1e7), speed=st.floats(min_value=0.1, max_value=1e4))
def test_capacity_is_a_pure_function_of_its_inputs(now: float, speed: float) -> None:
    value = capacity_at(TRACE, 0.0, speed, now)
    assert value in TRACE.data
    assert value == capacity_at(TRACE, 0.0, speed, now)


def test_shipped_sandbox_traces_load_with_sandbox_zone_names() -> None:
    traces = load_trace_set(DEFAULT_TRACE_DIR)
    assert [z.zone for z in traces.zones] == ["local-1a", "local-1b", "local-2a"]
    assert all(z.gap_seconds == 300 and max(z.data) >= 1 for z in traces.zones)


def test_market_file_keeps_its_clock_and_overrides(state_dir: Path, trace_dir: Path) -> None:
    m = SpotMarket.init(state_dir, now=500.0, trace_dir=trace_dir, speed=60)
    assert m.zones == ["local-1a", "local-1b"]
    again = SpotMarket.init(state_dir, now=900.0, trace_dir=trace_dir, speed=1)
    assert (again.config.start, again.config.speed) == (500.0, 60)
    m.set_capacity("local-1b", 0)
    assert SpotMarket.load(state_dir).capacity("local-1b", 500.0) == 0
    m.set_capacity("local-1b", None)
    assert SpotMarket.load(state_dir).capacity("local-1b", 500.0) == 4
    raw = json.loads((state_dir / "market.json").read_text())
    assert raw["start"] == 500.0 and raw["overrides"] == {}
    reset = SpotMarket.init(state_dir, now=900.0, trace_dir=trace_dir, speed=1, reset=True)
    assert reset.config.start == 900.0
    with pytest.raises(SandboxError, match="not a sandbox zone"):
        m.capacity("local-9z", 500.0)


def test_spot_launch_into_a_full_zone_is_a_capacity_error(state_dir: Path, trace_dir: Path) -> None:
    m = SpotMarket.init(state_dir, now=time.time(), trace_dir=trace_dir)
    m.set_capacity("local-1a", 1)
    now = time.time()
    m.try_acquire("local-1a", "spot", now)
    replicas.launch(state_dir, "s1", "local-1a", "spot")
    with pytest.raises(CapacityError) as err:
        m.try_acquire("local-1a", "spot", now)
    assert str(err.value).startswith(
        "InsufficientInstanceCapacity: no spot capacity in zone local-1a"
    )
    assert err.value.exit_code == 3
    m.try_acquire("local-1a", "on_demand", now)  # on-demand always succeeds
    m.try_acquire("local-1b", "spot", now)  # other zones are independent


def test_cli_capacity_error_exits_3_with_a_cloud_like_message(
    state_dir: Path, trace_dir: Path
) -> None:
    SpotMarket.init(state_dir, now=time.time(), trace_dir=trace_dir).set_capacity("local-1a", 0)
    result = CliRunner().invoke(
        sandbox,
        ["replica", "launch", "--state-dir", str(state_dir), "--id", "s1",
         "--zone", "local-1a", "--market", "spot"],
    )  # fmt: skip
    assert result.exit_code == 3
    assert "InsufficientInstanceCapacity: no spot capacity in zone local-1a" in result.output
    assert replicas.list_replicas(state_dir) == []


def test_capacity_drop_warns_newest_spot_then_kills_after_warning(
    state_dir: Path, trace_dir: Path
) -> None:
    m = SpotMarket.init(state_dir, now=time.time(), trace_dir=trace_dir, warning_seconds=30)
    m.set_capacity("local-1b", 2)
    old = replicas.launch(state_dir, "old", "local-1b", "spot")
    new = replicas.launch(state_dir, "new", "local-1b", "spot")
    od = replicas.launch(state_dir, "od", "local-1b", "on_demand")
    t0 = time.time()
    assert m.preemption_check(t0) == m.preemption_check(t0)  # nothing to do at capacity

    m.set_capacity("local-1b", 1)
    report = m.preemption_check(t0)
    assert [n.replica_id for n in report.warned] == ["new"]
    assert report.warned[0].deadline == pytest.approx(t0 + 30)
    assert report.preempted == ()
    # Still running during the warning; a second check does not warn again.
    later = m.preemption_check(t0 + 29)
    assert later.warned == () and later.preempted == ()
    assert replicas.is_alive(new)

    done = m.preemption_check(t0 + 30)
    assert [n.replica_id for n in done.preempted] == ["new"]
    assert not replicas.is_alive(new)
    assert replicas.get(state_dir, "new") is None
    assert replicas.is_alive(old) and replicas.is_alive(od)

    notices, cursor = NoticeFeed(notices_path(state_dir)).read(0)
    assert [(n.kind, n.replica_id, n.zone) for n in notices] == [
        ("warning", "new", "local-1b"),
        ("preempted", "new", "local-1b"),
    ]
    assert notices[0].at == pytest.approx(t0) and notices[0].deadline == pytest.approx(t0 + 30)
    assert NoticeFeed(notices_path(state_dir)).read(cursor) == ([], cursor)


def test_a_replica_stopped_during_its_warning_is_not_reported_preempted(
    state_dir: Path, trace_dir: Path
) -> None:
    m = SpotMarket.init(state_dir, now=time.time(), trace_dir=trace_dir, warning_seconds=10)
    replicas.launch(state_dir, "s1", "local-1b", "spot")
    m.set_capacity("local-1b", 0)
    t0 = time.time()
    assert len(m.preemption_check(t0).warned) == 1
    replicas.stop(state_dir, "s1")  # the reconciler replaced it on the warning
    assert m.preemption_check(t0 + 10).preempted == ()
    assert m.pending_warnings() == {}


def test_notice_feed_reads_from_a_cursor_and_skips_partial_lines(tmp_path: Path) -> None:
    path = tmp_path / "notices.jsonl"
    feed = NoticeFeed(path)
    assert feed.read(0) == ([], 0)
    first = MarketNotice("warning", "r1", "local-1a", 1.0, 31.0)
    path.write_text(json.dumps(first.to_json()) + "\n" + '{"kind": "preem')
    notices, cursor = feed.read(0)
    assert notices == [first]
    assert feed.read(cursor) == ([], cursor)  # the half-written line waits
    second = MarketNotice("preempted", "r1", "local-1a", 31.0, 31.0)
    path.write_text(json.dumps(first.to_json()) + "\n" + json.dumps(second.to_json()) + "\n")
    notices, end = feed.read(cursor)
    assert notices == [second] and end == path.stat().st_size


def test_market_daemon_preempts_in_the_background_and_starts_once(
    state_dir: Path, trace_dir: Path
) -> None:
    runner = CliRunner()
    args = ["market", "run", "--state-dir", str(state_dir), "--traces", str(trace_dir),
            "--warning-seconds", "0.3", "--interval", "0.1"]  # fmt: skip
    first = runner.invoke(sandbox, args)
    assert first.exit_code == 0, first.output
    second = runner.invoke(sandbox, args)
    assert json.loads(second.output)["pid"] == json.loads(first.output)["pid"]
    assert json.loads(second.output)["started"] is False

    SpotMarket.load(state_dir).set_capacity("local-1b", 1)
    replicas.launch(state_dir, "a", "local-1b", "spot")
    b = replicas.launch(state_dir, "b", "local-1b", "spot")
    deadline = time.monotonic() + 10
    while replicas.is_alive(b) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not replicas.is_alive(b)
    feed = NoticeFeed(notices_path(state_dir))
    while len(feed.read(0)[0]) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # the preempted notice follows the kill
    kinds = [(n.kind, n.replica_id) for n in feed.read(0)[0]]
    assert kinds == [("warning", "b"), ("preempted", "b")]
    assert [s.record.replica_id for s in replicas.list_replicas(state_dir)] == ["a"]

    status = runner.invoke(sandbox, ["market", "status", "--state-dir", str(state_dir), "--json"])
    zones = {z["zone"]: z for z in json.loads(status.output)["zones"]}
    assert zones["local-1b"]["capacity"] == 1 and zones["local-1b"]["spot_running"] == 1
    assert market_daemon.stop(state_dir) is True
    assert market_daemon.running_pid(state_dir) is None


def test_a_trace_directory_of_several_gpu_types_is_refused(state_dir: Path, tmp_path: Path) -> None:
    """The sandbox replays one type per zone; two types of one zone would collide there."""
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in ("local-1a_l4_1.json", "local-1a_a10g_1.json"):
        (mixed / name).write_text(json.dumps({"metadata": {"gap_seconds": 60}, "data": [1]}))
    with pytest.raises(SandboxError, match=r"holds several GPU types \(A10G, L4\); the sandbox"):
        SpotMarket.init(state_dir, now=0.0, trace_dir=mixed, speed=1)
