"""`hedgeform status` and `hedgeform logs` without a sandbox running (issue 17): events
derived from crafted tick records, availability over the last hour, the --json shape, the
list of services, and `logs --tail/--follow` on files."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from reconciler.cli import main
from reconciler.engine import status_view
from reconciler.engine.logs_cmd import follow, tail_lines
from reconciler.engine.status_view import (
    EVENT_KINDS,
    Event,
    StatusView,
    availability,
    derive_events,
    read_tail,
    service_dirs,
)
from tests.engine.cloud_fakes import REPO

SPEC = """\
service:
  readiness_probe: /health
  replicas: 2
resources:
  use_spot: true
  any_of:
    - {cloud: local, region: local-1, zone: local-1a}
"""


def ts(at: float) -> str:
    """The tick log's `ts` (python-json-logger's asctime, local time)."""
    return datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]


def tick(at: float, n: int = 0, **fields: Any) -> dict[str, Any]:
    decision = {
        "target": 2,
        "launches": [],
        "terminations": [],
        "lb_members": [],
        "reasons": [],
        **fields.pop("decision", {}),
    }
    return {"ts": ts(at), "message": "tick", "tick": n, "decision": decision, **fields}


NOW = time.time()


def move(rid: str, zone: str, market: str, reason: str) -> dict[str, str]:
    """A launch or termination as tick_record writes it."""
    return {"id": rid, "zone": zone, "market": market, "reason": reason}


def test_events_name_launches_fallbacks_preemptions_failures_and_capacity() -> None:
    records = [
        tick(
            NOW - 60,
            1,
            decision={
                "launches": [
                    move("a-spot-0", "a", "spot", "spot 0 < 2 wanted"),
                    move("b-spot-1", "b", "spot", "spot 0 < 2 wanted"),
                ]
            },
            stacks={"local-1": {"launch_failures": {"b-spot-1": "capacity"}}},
            launch_failure_reasons={"b-spot-1": "InsufficientInstanceCapacity: zone b full"},
        ),
        tick(  # the notice, then (next tick) the clean-up: one preemption
            NOW - 50,
            2,
            inputs={
                "notices": [
                    {"kind": "warning", "replica": "a-spot-0", "zone": "a"},
                    {"kind": "preempted", "replica": "a-spot-0", "zone": "a"},
                ]
            },
            decision={
                "launches": [
                    {
                        "id": "c-on_demand-2",
                        "zone": "c",
                        "market": "on_demand",
                        "reason": "on-demand fallback: 0 ready spot of 2",
                    }
                ],
                "reasons": ["h-spot-3 FAILED_PROBING: probes failing for 180 s"],
            },
            rollout="v2: 1 of 2 replicas ready",
        ),
        tick(
            NOW - 40,
            3,
            decision={
                "terminations": [
                    move("a-spot-0", "a", "spot", "clean up PREEMPTED"),
                    move("h-spot-3", "b", "spot", "clean up FAILED_PROBING"),
                ]
            },
            rollout="v2: 1 of 2 replicas ready",
        ),
        {"ts": ts(NOW - 30), "message": "tick failed", "tick": 4, "error": "terraform: boom"},
        {"ts": ts(NOW - 20), "message": "loop stopped"},
    ]
    events = derive_events(records)
    got = [(e.kind, e.replica, e.reason) for e in events]
    assert got == [
        ("launch", "a-spot-0", "spot 0 < 2 wanted"),
        ("launch", "b-spot-1", "spot 0 < 2 wanted"),
        ("capacity", "b-spot-1", "capacity: InsufficientInstanceCapacity: zone b full"),
        ("warning", "a-spot-0", "preemption warning"),
        ("preemption", "a-spot-0", "preemption notice"),
        ("failed", "h-spot-3", "FAILED_PROBING: probes failing for 180 s"),
        ("fallback", "c-on_demand-2", "on-demand fallback: 0 ready spot of 2"),
        ("rollout", "", "v2: 1 of 2 replicas ready"),  # once: unchanged on the next tick
        ("terminate", "a-spot-0", "clean up PREEMPTED"),
        ("terminate", "h-spot-3", "clean up FAILED_PROBING"),
        ("error", "", "terraform: boom"),
    ]
    assert events[2].zone == "b" and events[2].market == "spot"
    assert events[5].zone == "b" and events[5].market == "spot"  # from its termination
    assert {e.kind for e in events} == set(EVENT_KINDS)
    assert events[0].tick == 1 and events[0].at == pytest.approx(NOW - 60, abs=0.01)


def test_a_preemption_seen_only_by_its_clean_up_is_still_one_event() -> None:
    term = move("x", "a", "spot", "clean up PREEMPTED")
    events = derive_events([tick(NOW, 1, decision={"terminations": [term]})])
    assert [(e.kind, e.replica, e.zone) for e in events] == [
        ("preemption", "x", "a"),
        ("terminate", "x", "a"),
    ]


def test_garbage_records_give_no_events_and_no_error() -> None:
    odd: list[dict[str, Any]] = [
        {"message": "tick", "decision": "nope", "inputs": [1], "stacks": 3},
        {"message": "tick", "decision": {"launches": "x", "reasons": [1, None]}},
        {"ts": 5, "message": "tick failed"},
    ]
    assert [e.kind for e in derive_events(odd)] == ["error"]


def test_availability_is_the_share_of_ticks_with_the_target_ready_in_the_lb() -> None:
    def at(ago: float, ready: list[str], members: list[str], target: int = 2) -> dict[str, Any]:
        return tick(NOW - ago, decision={"target": target, "lb_members": members},
                    inputs={"ready": ready})  # fmt: skip

    records = [
        at(4000, [], []),  # older than an hour: not counted
        at(300, ["a", "b"], ["a", "b"]),  # up
        at(200, ["a", "b"], ["a"]),  # b ready but not serving: down
        {"ts": ts(NOW - 150), "message": "tick failed", "error": "x"},  # down
        at(100, ["a", "b", "c"], ["a", "b", "c"]),  # up
        # a record from before `inputs.ready`: READY counts by market
        tick(NOW - 50, inputs={"replicas": {"spot/READY": 1, "on_demand/READY": 1}}),
    ]
    assert availability(records, NOW) == pytest.approx(3 / 5)
    assert availability(records[:1], NOW) is None


def test_read_tail_reads_only_the_end_and_skips_a_cut_line(tmp_path: Path) -> None:
    path = tmp_path / "ticks.jsonl"
    lines = [json.dumps({"message": "tick", "tick": i, "pad": "x" * 50}) for i in range(100)]
    path.write_text("\n".join(lines) + "\nnot json\n[1]\n")
    records = read_tail(path, max_bytes=500)
    assert records and all(r["tick"] >= 90 for r in records)
    assert records[-1]["tick"] == 99
    assert read_tail(tmp_path / "missing.jsonl") == []


def project(tmp_path: Path, services: dict[str, str]) -> Path:
    (tmp_path / "services").mkdir()
    for name, text in services.items():
        (tmp_path / "services" / f"{name}.yaml").write_text(text)
    return tmp_path


def cli(root: Path, *args: str, **env: str) -> Any:
    env = {"HEDGEFORM_LB_PORT": "1", **env}
    return CliRunner().invoke(main, [*args, "--root", str(root)], env=env)


def test_status_json_has_the_documented_shape(tmp_path: Path) -> None:
    root = project(tmp_path, {"svc": SPEC})
    state = root / "state" / "svc"
    state.mkdir(parents=True)
    launch = move("local-1a-spot-0", "local-1a", "spot", "spot 0 < 2 wanted")
    (state / "ticks.jsonl").write_text(
        json.dumps(tick(NOW - 10, 0, decision={"launches": [launch]}, inputs={"ready": []})) + "\n"
    )
    result = cli(root, "status", "svc", "--json")
    assert result.exit_code == 0, result.output
    view = json.loads(result.stdout)
    assert list(view) == [
        "service", "unit", "destroyed_at", "version", "version_detail", "target", "ready",
        "endpoint", "usd_per_hour", "availability_1h", "replicas", "events", "notes",
    ]  # fmt: skip
    assert view["unit"] == "nominal (sandbox)"  # the sandbox's own prices, as `cost` says
    assert view["service"] == "svc" and view["replicas"] == [] and view["ready"] == 0
    assert view["availability_1h"] == 0.0  # one tick, nothing ready
    assert view["usd_per_hour"] == 0.0  # no live replica costs nothing
    (event,) = view["events"]
    assert event["kind"] == "launch" and event["replica"] == "local-1a-spot-0"
    assert event["usd_per_hour"] is not None  # the sandbox zone's spot price
    assert set(event) == {
        "at",
        "tick",
        "kind",
        "replica",
        "zone",
        "market",
        "reason",
        "usd_per_hour",
        "hours",
        "cost",
        "running",
        "covered_by",
        "covers",
    }

    text = cli(root, "status", "svc")
    assert text.exit_code == 0, text.output
    first = text.stdout.splitlines()[0]
    assert first.startswith("svc  no version yet  target -  ready 0  0.00 (nominal)/h now"), first
    assert "$" not in text.stdout, text.stdout  # nominal units are never shown as dollars
    assert "sandbox: nominal prices" in text.stdout
    assert "availability 1h 0.0%" in first
    assert "launch" in text.stdout and "spot 0 < 2 wanted" in text.stdout


def test_a_preemption_and_its_fallback_say_what_the_cover_cost(tmp_path: Path) -> None:
    """The fallback's on-demand price x how long it ran (launch to termination); the
    preemption carries its fallbacks and their cost; --json has the same numbers."""
    root = project(tmp_path, {"svc": SPEC})
    state = root / "state" / "svc"
    state.mkdir(parents=True)
    od = move("local-1a-on_demand-2", "local-1a", "on_demand", "on-demand fallback: 0 ready")
    spot = move("local-1a-spot-0", "local-1a", "spot", "x")
    notice = {"kind": "preempted", "replica": spot["id"], "zone": "local-1a"}
    records = [
        tick(NOW - 7200, 1, decision={"launches": [spot]}),
        # preempted; the fallback launches in the same tick
        tick(NOW - 3600, 2, inputs={"notices": [notice]}, decision={"launches": [od]}),
        tick(NOW - 1800, 3, decision={"terminations": [{**od, "reason": "spot is back"}]}),
    ]
    (state / "ticks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    view = json.loads(cli(root, "status", "svc", "--json").stdout)
    by_kind = {e["kind"]: e for e in view["events"]}
    fallback, preemption = by_kind["fallback"], by_kind["preemption"]
    assert fallback["usd_per_hour"] == 3.0  # the sandbox's nominal on-demand price
    assert fallback["hours"] == pytest.approx(0.5, abs=1e-3)  # 30 min alive
    assert fallback["cost"] == pytest.approx(1.5, abs=1e-3) and fallback["running"] is False
    assert preemption["covered_by"] == ["local-1a-on_demand-2"]
    assert preemption["cost"] == pytest.approx(1.5, abs=1e-3)
    assert view["unit"] == "nominal (sandbox)"

    text = cli(root, "status", "svc").stdout
    (line,) = [ln for ln in text.splitlines() if " fallback " in ln]
    assert line.endswith("(covers local-1a-spot-0; 3.00 (nominal)/h; ran 30 min: 1.50 (nominal))")
    (line,) = [ln for ln in text.splitlines() if " preemption " in ln]
    assert line.endswith("(on-demand cover local-1a-on_demand-2: 1.50 (nominal) in all)"), line


def test_a_running_cover_is_priced_so_far_and_preemptions_of_one_tick_share_it() -> None:
    from reconciler.engine.status_view import event_cost, priced_covers

    def ev(at: float, kind: str, rid: str, price: float | None = None) -> Event:
        return Event(at, None, kind, rid, "z", "", "why", price)

    events = [
        ev(NOW - 900, "preemption", "s0"),
        ev(NOW - 900, "preemption", "s1"),
        ev(NOW - 900, "fallback", "od-0", 3.0),
        ev(NOW - 900, "fallback", "od-1", 3.0),
        ev(NOW - 600, "terminate", "od-1"),
        ev(NOW - 300, "preemption", "s2"),  # nothing fell back after this one
        ev(NOW - 300, "fallback", "od-gone", 3.0),  # no termination logged, not live
    ]
    out = priced_covers(events, live={"od-0"}, now=NOW)
    s0, s1, od0, od1, _, s2, gone = out
    assert od0.running and od0.hours == pytest.approx(0.25) and od0.cost == pytest.approx(0.75)
    assert not od1.running and od1.cost == pytest.approx(0.25)
    assert s0.covered_by == s1.covered_by == ("od-0", "od-1")
    assert s0.cost == pytest.approx(1.0) and s0.running
    assert gone.cost is None and s2.covered_by == ("od-gone",) and s2.cost is None
    assert "? (an end or a price is unknown)" in event_cost(s2, nominal=False)
    assert od0.covers == ("s0", "s1")
    assert event_cost(od0, nominal=False) == (
        " (covers s0, s1; $3.00/h; running for 15 min: $0.75 so far)"
    )
    assert event_cost(s0, nominal=False) == " (on-demand cover od-0, od-1: $1.00 so far)"
    # a destroyed service: what ran until then
    ended = priced_covers(events, live=set(), now=NOW, ended_at=NOW - 60)
    assert ended[2].cost == pytest.approx(3.0 * 840 / 3600) and not ended[2].running


def test_a_destroyed_service_says_so_with_when_even_without_its_spec(tmp_path: Path) -> None:
    from reconciler.engine.state_store import mark_destroyed

    root = project(tmp_path, {"svc": SPEC})
    state = root / "state" / "svc"
    state.mkdir(parents=True)
    launch = move("local-1a-spot-0", "local-1a", "spot", "spot 0 < 2 wanted")
    (state / "ticks.jsonl").write_text(
        json.dumps(tick(NOW - 10, 0, decision={"launches": [launch]}, inputs={"ready": []})) + "\n"
    )
    at = datetime(2026, 12, 1, 13, 40, 12).timestamp()  # local time, shown in UTC
    mark_destroyed(state, at)
    (root / "services" / "svc.yaml").unlink()  # a destroyed service's file may be gone too
    text = cli(root, "status", "svc")
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    when = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert lines[0] == (
        f"svc  destroyed {when} (hedgeform destroy): nothing runs, nothing bills; "
        "`hedgeform apply svc` creates it again"
    )
    assert "replica" not in lines[0] and "no replicas" not in text.stdout
    assert any("launch" in ln and "local-1a-spot-0" in ln for ln in lines[1:])  # the history
    view = json.loads(cli(root, "status", "svc", "--json").stdout)
    assert view["destroyed_at"] == pytest.approx(at, abs=0.01)
    assert view["replicas"] == [] and view["usd_per_hour"] == 0.0 and view["target"] is None
    listed = cli(root, "status")
    assert listed.exit_code == 0 and listed.stdout.startswith(f"svc  destroyed {when}")


def test_status_without_a_service_lists_each_service_under_state(tmp_path: Path) -> None:
    root = project(tmp_path, {"alpha": SPEC, "beta": SPEC})
    for name in ("alpha", "beta"):
        (root / "state" / name).mkdir(parents=True)
        (root / "state" / name / "ticks.jsonl").write_text("")
    (root / "state" / "Not_A_Name").mkdir()
    (root / "state" / "Not_A_Name" / "ticks.jsonl").write_text("")
    (root / "state" / "empty").mkdir()  # no record, no log, no sandbox: not a service
    (root / "state" / "file").write_text("x")
    assert service_dirs(root / "state") == ["alpha", "beta"]
    result = cli(root, "status")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [ln.split()[0] for ln in lines] == ["alpha", "beta"]
    assert all("ready 0/-" in ln and "127.0.0.1:1" in ln for ln in lines), lines
    assert "no service under" in cli(tmp_path / "elsewhere", "status").stdout


def test_watch_refreshes_each_interval_and_ctrl_c_exits_0(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    built: list[int] = []

    def build() -> StatusView:
        built.append(1)
        if len(built) == 3:
            raise KeyboardInterrupt
        event = Event(NOW, 1, "launch", "r", "z", "spot", "why")
        return StatusView("s", 1, "v1 (ready)", 1, 1, "http://x", 1.5, 1.0, (), (event,))

    monkeypatch.setattr(time, "sleep", lambda s: None)
    status_view.show(build, as_json=True, watch=True, interval=1.0)  # returns: exit 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and json.loads(out[0])["usd_per_hour"] == 1.5


def test_tail_prints_the_last_lines_of_a_large_file(tmp_path: Path) -> None:
    path = tmp_path / "r.log"
    path.write_text("".join(f"line {i}\n" for i in range(50_000)))
    assert tail_lines(path, 3) == ["line 49997", "line 49998", "line 49999"]
    assert tail_lines(path, 0) == []
    path.write_text("one\ntwo")  # no final newline
    assert tail_lines(path, 5) == ["one", "two"]


def test_follow_prints_appended_lines_and_survives_truncation_and_rotation(
    tmp_path: Path,
) -> None:
    path = tmp_path / "r.log"
    path.write_text("old\n")
    seen: list[str] = []
    steps = [
        lambda: path.write_text("old\nnew 1\npart"),
        lambda: path.open("a").write("ial\n"),
        lambda: path.write_text("cut\n"),  # truncated: read again from the start
        lambda: (path.rename(tmp_path / "r.log.1"), path.write_text("rotated\n")),
    ]

    def sleep(_: float) -> None:
        if steps:
            steps.pop(0)()

    follow(path, seen.append, keep_going=lambda: bool(steps) or len(seen) < 4, sleep=sleep)
    assert seen == ["new 1", "partial", "cut", "rotated"]


def test_logs_of_an_unknown_replica_is_one_line_naming_the_known_ones(tmp_path: Path) -> None:
    root = project(tmp_path, {"svc": SPEC})
    rdir = root / "state" / "svc" / "sandbox" / "replicas"
    rdir.mkdir(parents=True)
    (rdir / "local-1a-spot-0.log").write_text("serving\nready\n")
    result = cli(root, "logs", "svc", "nope")
    assert result.exit_code == 1
    assert result.stderr == "Error: svc has no replica 'nope'; its replicas: local-1a-spot-0\n"
    ok = cli(root, "logs", "svc", "local-1a-spot-0", "--tail", "1")
    assert ok.exit_code == 0 and ok.stdout == "ready\n", ok.output
    none = cli(root, "logs", "svc")
    assert none.exit_code == 0 and "ticks.jsonl: no log yet" in none.stdout


AWS_SPEC = """\
service:
  readiness_probe: /health
  replicas: 1
resources:
  accelerators: L4
  use_spot: true
  any_of:
    - {cloud: aws, region: us-east-1}
"""


def test_logs_on_a_cloud_says_where_to_look_in_one_line_and_calls_no_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reconciler.engine.reconcile import Reconciler
    from reconciler.policy import Market
    from reconciler.stacks import ManagedReplica

    root = project(tmp_path, {"web": AWS_SPEC})
    (root / "terraform").symlink_to(Path(__file__).resolve().parents[2] / "terraform")

    def managed(self: Reconciler) -> list[ManagedReplica]:
        stack = self.stack_names[0]
        return [ManagedReplica("r-0", "us-east-1a", Market.SPOT, stack=stack, instance_id="i-0ab")]

    monkeypatch.setattr(Reconciler, "managed", managed)
    monkeypatch.setenv("HEDGEFORM_AWS_IMAGES", "us-east-1=ami-0123456789abcdef0")
    result = cli(root, "logs", "web", "r-0")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 1, result.stdout
    assert "aws ec2 get-console-output" in result.stdout and "--instance-id i-0ab" in result.stdout
    assert "--region us-east-1" in result.stdout
    unknown = cli(root, "logs", "web", "r-9")
    assert unknown.exit_code == 1 and unknown.stderr.endswith("its replicas: r-0\n")
    lb = cli(root, "logs", "web", "--lb")
    assert lb.exit_code == 0 and lb.stdout.count("\n") == 1 and "aws: " in lb.stdout


def test_the_price_now_is_unknown_when_one_live_replica_has_no_price() -> None:
    from reconciler.engine.status_view import _replica_price, _total_price, money
    from reconciler.policy import Market, Replica, ReplicaState, ZoneOffer

    offers = {"a": ZoneOffer("a", "r", "aws", None, 3.0), "b": ZoneOffer("b", "r", "aws", 1.0, 3.0)}
    spot_a = Replica("x", "a", Market.SPOT, ReplicaState.READY, 0.0)
    od_a = Replica("y", "a", Market.ON_DEMAND, ReplicaState.READY, 0.0)
    spot_b = Replica("z", "b", Market.SPOT, ReplicaState.READY, 0.0)
    prices = [_replica_price(r, offers) for r in (od_a, spot_b)]
    assert _total_price(prices) == 4.0 and money(4.0) == "$4.00/h"
    assert money(4.0, nominal=True) == "4.00 (nominal)/h"
    from reconciler.engine.status_view import span

    assert [span(h) for h in (14 / 3600, 0.25, 2.5)] == ["14 s", "15 min", "2.5 h"]
    assert _total_price([*prices, _replica_price(spot_a, offers)]) is None
    assert money(None) == "?"


def test_following_a_ring_buffer_prints_only_the_lines_it_had_not_shown() -> None:
    from reconciler.engine.logs_cmd import new_lines

    assert new_lines([], ["a", "b"]) == ["a", "b"]
    assert new_lines(["a", "b"], ["a", "b", "c"]) == ["c"]
    assert new_lines(["a", "b", "c"], ["b", "c", "d", "e"]) == ["d", "e"]  # "a" rotated out
    assert new_lines(["a", "b"], ["a", "b"]) == []
    assert new_lines(["a", "b"], ["x", "y"]) == ["x", "y"]  # a restarted HAProxy: all new


def test_a_cover_is_named_by_the_loss_it_was_launched_for_and_says_what_it_covers(
    tmp_path: Path,
) -> None:
    """Issue 17 review: the cover launched at the warning tick belongs to the warning and to
    the preemption that follows; a failed probe's cover is named on its `failed` line; each
    fallback names the replica it covers (same tick, same zone first)."""
    root = project(tmp_path, {"svc": SPEC})
    state = root / "state" / "svc"
    state.mkdir(parents=True)
    od8 = move("local-1a-od-8", "local-1a", "on_demand", "on-demand fallback: 1 ready spot of 3")
    od2 = move("local-1b-od-2", "local-1b", "on_demand", "on-demand fallback: 2 ready spot of 3")
    warning = {"kind": "warning", "replica": "local-1a-spot-1", "zone": "local-1a"}
    preempted = {**warning, "kind": "preempted"}
    records = [
        tick(NOW - 600, 1, inputs={"notices": [warning]}, decision={"launches": [od8]}),
        tick(NOW - 571, 2, inputs={"notices": [preempted]}),
        tick(NOW - 300, 3, decision={"reasons": ["local-1b-spot-0 FAILED_PROBING: probes"]}),
        tick(
            NOW - 270,
            4,
            decision={
                "launches": [od2],
                "terminations": [
                    move("local-1b-spot-0", "local-1b", "spot", "clean up FAILED_PROBING")
                ],
            },
        ),
        tick(NOW - 240, 5, decision={"reasons": ["local-1c-spot-4 FAILED_PROBING: probes"]}),
        tick(NOW - 120, 6, decision={"terminations": [{**od8, "reason": "spot is back"}]}),
    ]
    (state / "ticks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    view = json.loads(cli(root, "status", "svc", "--json", "--events", "50").stdout)
    got = {(e["kind"], e["replica"]): e for e in view["events"]}
    assert got[("warning", "local-1a-spot-1")]["covered_by"] == ["local-1a-od-8"]
    assert got[("preemption", "local-1a-spot-1")]["covered_by"] == ["local-1a-od-8"]
    assert got[("preemption", "local-1a-spot-1")]["cost"] is not None
    assert got[("fallback", "local-1a-od-8")]["covers"] == ["local-1a-spot-1"]
    # the failed verdict at tick 3, its cover at tick 4 (its clean-up's tick, same zone)
    assert got[("failed", "local-1b-spot-0")]["covered_by"] == ["local-1b-od-2"]
    assert got[("fallback", "local-1b-od-2")]["covers"] == ["local-1b-spot-0"]
    assert got[("failed", "local-1c-spot-4")]["covered_by"] == []  # nothing launched for it

    text = cli(root, "status", "svc", "--events", "50").stdout
    (line,) = [ln for ln in text.splitlines() if ln.split()[1:2] == ["preemption"]]
    assert "(on-demand cover local-1a-od-8: " in line and "(nominal) in all)" in line, line
    (line,) = [ln for ln in text.splitlines() if " failed " in ln and "local-1b-spot-0" in ln]
    assert "(on-demand cover local-1b-od-2: " in line, line
    (line,) = [ln for ln in text.splitlines() if " fallback " in ln and "od-8" in ln]
    assert "(covers local-1a-spot-1; 3.00 (nominal)/h; ran " in line, line


def test_status_reads_only_the_life_after_the_last_destroy(tmp_path: Path) -> None:
    """Issue 17 review: after destroy then apply, a reused replica id showed the destroyed
    life's `terminate: clean up FAILED_PROBING`, and availability counted its ticks."""
    from reconciler.engine.state_store import clear_destroyed, mark_destroyed

    root = project(tmp_path, {"svc": SPEC})
    state = root / "state" / "svc"
    state.mkdir(parents=True)
    old = move("local-1a-spot-0", "local-1a", "spot", "clean up FAILED_PROBING")
    new = move("local-1a-spot-0", "local-1a", "spot", "spot 0 < 2 wanted")
    ready = {"ready": ["local-1a-spot-0", "x"]}
    members = {"lb_members": ["local-1a-spot-0", "x"]}
    records = [
        tick(NOW - 1800, 7, decision={"terminations": [old]}, inputs={"ready": []}),
        tick(NOW - 1500, 8, inputs={"ready": []}),
        tick(NOW - 600, 0, decision={"launches": [new], **members}, inputs=ready),
        tick(NOW - 300, 1, decision=members, inputs=ready),
    ]
    (state / "ticks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records[:2]))
    mark_destroyed(state, NOW - 1200)
    destroyed_view = json.loads(cli(root, "status", "svc", "--json").stdout)
    assert [e["kind"] for e in destroyed_view["events"]] == ["failed", "terminate"]
    clear_destroyed(state)  # the next apply
    with (state / "ticks.jsonl").open("a") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in records[2:]))
    view = json.loads(cli(root, "status", "svc", "--json", "--events", "50").stdout)
    assert [(e["kind"], e["reason"]) for e in view["events"]] == [
        ("launch", "spot 0 < 2 wanted")
    ], view["events"]
    assert view["availability_1h"] == 1.0  # the destroyed life's ticks are not counted
    assert view["destroyed_at"] is None
    # destroyed again: the events of the life it ended, not of the one before
    mark_destroyed(state, NOW - 60)
    again = json.loads(cli(root, "status", "svc", "--json", "--events", "50").stdout)
    assert [e["kind"] for e in again["events"]] == ["launch"], again["events"]


def test_a_note_about_a_replica_not_in_the_table_is_not_printed(tmp_path: Path) -> None:
    """Issue 17 review: `local-1b-spot-7: probes failing for 24 s (replaced at 180 s)` was
    printed under the table after the events said it was preempted and terminated."""
    from reconciler.engine.state_store import Record, save_record
    from reconciler.policy import Memory

    root = project(tmp_path, {"svc": SPEC})
    state = root / "state" / "svc"
    state.mkdir(parents=True)
    save_record(
        state / "reconciler.json", Record(memory=Memory(failing_since={"local-1b-spot-7": NOW}))
    )
    result = cli(root, "status", "svc")
    assert result.exit_code == 0, result.output
    assert "local-1b-spot-7" not in result.stdout, result.stdout
    view = json.loads(cli(root, "status", "svc", "--json").stdout)
    assert not any("local-1b-spot-7" in n for n in view["notes"]), view["notes"]


def test_a_destroyed_sandbox_service_says_nominal_even_without_ticks(tmp_path: Path) -> None:
    """Issue 17 review: apply, destroy (no `run`, so no tick record): `--json` said USD."""
    from reconciler.engine.state_store import mark_destroyed

    root = project(tmp_path, {"svc": SPEC})
    state = root / "state" / "svc"
    (state / "sandbox").mkdir(parents=True)
    mark_destroyed(state, NOW - 60)
    view = json.loads(cli(root, "status", "svc", "--json").stdout)
    assert view["unit"] == "nominal (sandbox)", view


def test_a_destroy_cut_short_is_said_until_one_finishes_or_an_apply_starts(
    tmp_path: Path,
) -> None:
    """Issue 17 review: after `kill -9` of `hedgeform destroy` mid-way, status printed a
    service with nothing ready and nothing saying a destroy was cut short."""
    from reconciler.engine.state_store import (
        DESTROYING_FILE,
        clear_destroyed,
        mark_destroyed,
        mark_destroying,
    )

    root = project(tmp_path, {"svc": SPEC})
    state = root / "state" / "svc"
    state.mkdir(parents=True)
    at = datetime(2026, 12, 1, 13, 40, 12).timestamp()
    mark_destroying(state, at)
    when = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    note = (
        f"destroy started {when}, not finished: run `hedgeform destroy svc` again "
        "(unless one is running now)"
    )
    assert note in cli(root, "status", "svc").stdout.splitlines()
    assert note in json.loads(cli(root, "status", "svc", "--json").stdout)["notes"]
    assert "destroy not finished" in cli(root, "status").stdout
    mark_destroyed(state, at + 60)  # the destroy run again, to its end
    assert not (state / DESTROYING_FILE).exists()
    mark_destroying(state, at + 120)
    clear_destroyed(state)  # an apply starts instead: it exists again
    assert "destroy started" not in cli(root, "status", "svc").stdout


def test_a_cover_launched_minutes_after_a_loss_is_not_credited_to_it(tmp_path: Path) -> None:
    """Issue 17 re-check: a fallback launched while a replica's probes failed, minutes after
    three preemptions, was named as their cover (and its cost added to theirs); the failed
    verdict that followed named none. Only the loss's own ticks (seen, cleaned up) count."""
    root = project(tmp_path, {"svc": SPEC})
    state = root / "state" / "svc"
    state.mkdir(parents=True)
    od13 = move("local-1b-od-13", "local-1b", "on_demand", "on-demand fallback: 1 ready spot of 3")
    od17 = move("local-2a-od-17", "local-2a", "on_demand", "on-demand fallback: 1 ready spot of 3")
    preempted = {"kind": "preempted", "replica": "local-1b-spot-6", "zone": "local-1b"}
    records = [
        tick(NOW - 500, 1, inputs={"notices": [preempted]}, decision={"launches": [od13]}),
        tick(NOW - 470, 2),
        tick(NOW - 260, 3, decision={"launches": [od17]}),  # spot-15's probes failing
        tick(NOW - 90, 4, decision={"reasons": ["local-2a-spot-15 FAILED_PROBING: probes"]}),
    ]
    (state / "ticks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    view = json.loads(cli(root, "status", "svc", "--json", "--events", "50").stdout)
    got = {(e["kind"], e["replica"]): e for e in view["events"]}
    assert got[("preemption", "local-1b-spot-6")]["covered_by"] == ["local-1b-od-13"]
    assert got[("fallback", "local-1b-od-13")]["covers"] == ["local-1b-spot-6"]
    assert got[("fallback", "local-2a-od-17")]["covers"] == []
    assert got[("failed", "local-2a-spot-15")]["covered_by"] == []


def test_no_events_says_who_writes_them_and_events_0_asks_for_none() -> None:
    """Issue 17 re-check: the line said only `hedgeform run` writes tick records (apply does
    too), and `--events 0` was answered with 'no events'."""
    from rich.console import Console

    from reconciler.engine.status_view import StatusView, renderable

    def shown(asked: int) -> str:
        view = StatusView("svc", None, "", None, 0, "-", None, None, (), (), events_asked=asked)
        console = Console(width=200, record=True)
        console.print(renderable(view))
        return console.export_text()

    assert "`hedgeform apply` and `hedgeform run` write them" in shown(15)
    assert "no events" not in shown(0)


def test_a_second_destroy_keeps_the_time_the_service_went(tmp_path: Path) -> None:
    """Issue 17 re-check: a no-op `destroy` of a destroyed service replaced its 'destroyed
    at' with the time of the no-op."""
    from reconciler.engine.state_store import destroyed_at, mark_destroyed

    mark_destroyed(tmp_path, NOW - 600)
    mark_destroyed(tmp_path, NOW)
    assert destroyed_at(tmp_path) == pytest.approx(NOW - 600, abs=0.01)


def test_a_mix_on_the_sandbox_says_the_prices_its_pools_use(tmp_path: Path) -> None:
    """services/llama-mix.yaml prices each GPU type at its AWS instance's list price, spot a
    third (what `plan` and `cost` use): the prices line says so, per type, with the list's
    source and date, not the single-type list (spot 1, on-demand 3); `cost` says the same."""
    from reconciler.clouds.catalog import list_prices

    mix = (REPO / "services" / "llama-mix.yaml").read_text()
    root = project(tmp_path, {"mix": mix})
    result = cli(root, "status", "mix")
    assert result.exit_code == 0, result.output
    (line,) = [ln for ln in result.stdout.splitlines() if ln.startswith("prices:")]
    listed = list_prices("aws")
    assert "spot 1, on-demand 3" not in line, line
    assert f"on-demand list price of its AWS instance, spot a third ({listed.source}" in line
    assert listed.as_of in line
    assert "L4 0.27 spot, 0.80 on demand; A10G 0.34 spot, 1.01 on demand per hour" in line
    assert "$" not in line  # nominal: nothing bills
    cost = cli(root, "cost", "mix")
    assert cost.exit_code == 0, cost.output
    assert line == f"prices: {cost.stdout.splitlines()[0]}; `hedgeform cost` lists each"


def test_status_of_a_cloud_service_without_its_file_shows_the_record_and_the_log(
    tmp_path: Path,
) -> None:
    """No sandbox directory (a cloud service) and no service file: before, one line
    `...: no such service file` and exit 1. Now the version and target from the record, the
    events and the last tick's rate from the log, and one line saying the replica table
    needs the file (it names the clouds and regions to ask); no replica is invented."""
    from reconciler.engine.state_store import Record, save_record
    from reconciler.policy import Memory

    root = project(tmp_path, {})
    state = root / "state" / "svc"
    state.mkdir(parents=True)
    save_record(state / "reconciler.json", Record(memory=Memory(target=2)))
    launch = move("us-east-1a-spot-0", "us-east-1a", "spot", "spot 0 < 2 wanted")
    cost = {"at": NOW - 60, "spot": 0.6, "on_demand": 0.0, "total": 0.6, "nominal": False}
    record = tick(NOW - 60, 1, decision={"launches": [launch]}, cost=cost)
    record["inputs"] = {"ready": [], "replicas": {"spot/STARTING": 1}}
    (state / "ticks.jsonl").write_text(json.dumps(record) + "\n")
    result = cli(root, "status", "svc")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("svc  no version yet  target 2  ready 0  $0.60/h at the last tick")
    assert lines[1].startswith(f"{root}/services/svc.yaml: no such service file: shown from ")
    assert "needed for the replica table and the endpoint" in lines[1], lines[1]
    assert lines[2] == "endpoint: ?" and lines[3] == "no replicas"
    assert any("us-east-1a-spot-0" in ln and "spot 0 < 2 wanted" in ln for ln in lines[4:])
    view = json.loads(cli(root, "status", "svc", "--json").stdout)
    assert view["usd_per_hour"] == 0.6 and view["unit"] == "USD" and view["target"] == 2
    assert view["notes"][0] == lines[1] and view["replicas"] == []
    listed = cli(root, "status")
    assert listed.exit_code == 0 and "shown from its state" in listed.stdout, listed.output

    text = cli(root, "cost", "svc")
    assert text.exit_code == 0, text.output
    first, second = text.stdout.splitlines()[:2]
    assert first.startswith(f"{root}/services/svc.yaml: no such service file: from state/svc/")
    assert second.startswith("last tick (") and "$0.60/h" in second and "(1 replicas)" in second
    assert "no prices: the spec offers no pool" not in text.stdout
    data = json.loads(cli(root, "cost", "svc", "--json").stdout)
    assert data["service_file_error"] == first and data["prices"] == []
    assert data["now"]["per_hour"]["total"] == 0.6 and data["now"]["at"] is not None


def test_without_its_file_and_without_state_a_service_is_still_refused_in_one_line(
    tmp_path: Path,
) -> None:
    root = project(tmp_path, {})
    (root / "state" / "svc" / "plans").mkdir(parents=True)  # nothing a service leaves
    for args in (("status", "svc"), ("cost", "svc")):
        result = cli(root, *args)
        assert result.exit_code == 1, result.output
        assert result.output == f"Error: {root}/services/svc.yaml: no such service file\n"


def test_cost_without_its_file_says_when_no_tick_priced_it(tmp_path: Path) -> None:
    root = project(tmp_path, {})
    (root / "state" / "svc" / "sandbox").mkdir(parents=True)  # a sandbox service, no tick
    result = cli(root, "cost", "svc")
    assert result.exit_code == 0, result.output
    assert "now: unknown (no tick recorded a price since the service last started)" in (
        result.stdout
    )
    assert "sandbox: nominal prices, not dollars" in result.stdout
    data = json.loads(cli(root, "cost", "svc", "--json").stdout)
    assert data["now"]["per_hour"]["total"] is None and data["unit"] == "nominal (sandbox)"
