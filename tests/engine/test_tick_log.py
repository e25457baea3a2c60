"""The tick log as `hedgeform status` reads it back: `apply` writes its passes there as the
loop does, a decision is recorded (fsync'd) before Terraform applies it so a kill -9
mid-apply still leaves what was being done, and `destroy` keeps the launch sequence so
replica ids never repeat across a service's lives."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

from reconciler.cli import main
from reconciler.engine import commands
from reconciler.engine.commands import _kept_by_destroy, _migrate_record
from reconciler.engine.loop import LoopSettings, ReconcileLoop
from reconciler.engine.observability import LoopMetrics, json_logger
from reconciler.engine.reconcile import StackOutcome
from reconciler.engine.state_store import Record, save_record
from reconciler.engine.status_view import (
    INTERRUPTED,
    UNFINISHED,
    derive_events,
    read_tail,
)
from reconciler.paths import ServicePaths
from reconciler.policy import Memory
from reconciler.terraform.fake import FakeTerraformRunner
from tests.engine.test_reconcile_errors import reconciler

CAPACITY = (
    'Error: local-exec provisioner error\n\n  with null_resource.replica["{rid}"],\n'
    "  Error running command: InsufficientInstanceCapacity: no spot capacity in {zone}\n"
)


def ticks(root: Path) -> list[dict[str, Any]]:
    return read_tail(root / "state" / "llama" / "ticks.jsonl")


def refuse_capacity(fakes: dict[str, FakeTerraformRunner], stack: str, rid: str) -> None:
    zone = rid.split("-spot-")[0]
    fakes.setdefault(stack, FakeTerraformRunner(name=stack)).fail(
        "apply", CAPACITY.format(rid=rid, zone=zone)
    )


def test_apply_writes_its_passes_to_the_tick_log(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: `make apply` then `hedgeform status` said "no events": apply wrote nothing."""
    fakes: dict[str, FakeTerraformRunner] = {}
    first = reconciler(root, {}).run_pass(apply=False).decision.launches
    refused = next(x.replica_id for x in first if x.zone == "local-1a")
    refuse_capacity(fakes, "local-1", refused)
    monkeypatch.setattr(commands, "_reconciler", lambda *a, **k: reconciler(root, fakes))
    result = CliRunner().invoke(main, ["apply", "llama", "--no-wait", "--root", str(root)])
    assert result.exit_code == 0, result.output
    assert not result.stdout.lstrip().startswith("{"), "no JSON on apply's stdout"

    records = ticks(root)
    assert [r["message"] for r in records] == ["tick decided", "tick"]
    decided, outcome = records
    assert decided["source"] == outcome["source"] == "apply"
    assert decided["pass"] == outcome["pass"] and len(decided["pass"]) == 12
    assert decided["decided"] == outcome["decision"] and "decision" not in decided
    assert "cost" not in decided and "cost" in outcome  # `hedgeform cost` integrates outcomes
    events = derive_events(records)
    launched = {e.replica for e in events if e.kind in ("launch", "fallback")}
    assert {x.replica_id for x in first} <= launched
    capacity = [e for e in events if e.kind == "capacity"]
    assert [e.replica for e in capacity] == [refused], events
    assert "InsufficientInstanceCapacity" in capacity[0].reason
    assert not any(e.kind == "error" for e in events), events  # a recorded outcome


class Snapshot(FakeTerraformRunner):
    """Keeps the tick log as it is when Terraform starts applying: what a kill -9 there
    leaves behind."""

    def __init__(self, name: str, log: Path) -> None:
        super().__init__(name=name)
        self.log = log
        self.seen: str | None = None

    def apply_saved_plan(self, plan_path: Path) -> None:
        if self.seen is None:
            self.seen = self.log.read_text() if self.log.exists() else ""
        super().apply_saved_plan(plan_path)


def test_the_loop_records_its_decision_before_terraform_applies_it(root: Path) -> None:
    """Before: a kill -9 mid-apply lost the tick's launches and reasons for good (the record
    was written after the pass); now the decision is in the log when Terraform starts."""
    log = root / "state" / "llama" / "ticks.jsonl"
    snapshot = Snapshot("local-1", log)
    fakes: dict[str, FakeTerraformRunner] = {"local-1": snapshot}
    rec = reconciler(root, fakes)
    logger = json_logger("test-tick-log", log, stdout=False)
    loop = ReconcileLoop(rec, LoopSettings(interval_s=30), logger, LoopMetrics("llama"))
    loop._tick()

    left = [json.loads(line) for line in (snapshot.seen or "").splitlines()]
    assert [r["message"] for r in left] == ["tick decided"]
    assert left[0]["source"] == "run"
    events = derive_events(left)
    launches = [e for e in events if e.kind == "launch"]
    assert launches and all(e.zone and e.reason for e in launches), events
    assert events[-1].kind == "error" and events[-1].reason == UNFINISHED
    # the tick ended: its outcome names the same pass, and nothing reads as interrupted
    whole = [r for r in ticks(root) if r["message"].startswith("tick")]
    assert [r["message"] for r in whole] == ["tick decided", "tick"]
    assert whole[1]["pass"] == left[0]["pass"] and whole[1]["source"] == "run"
    assert not any(e.kind == "error" for e in derive_events(whole))
    for handler in logger.handlers:
        handler.close()


def test_only_a_pass_that_changes_something_announces_it(root: Path) -> None:
    rec = reconciler(root, {})
    said: list[str] = []
    rec.on_decided = lambda pass_id, decision: said.append(pass_id)
    first = rec.run_pass(apply=True)
    assert said and first.pass_id == said[0]
    idle = replace(first.decision, launches=(), terminations=())
    rec._announce(idle, [StackOutcome("local-1")])
    assert len(said) == 1  # nothing to apply: nothing announced
    rec._announce(idle, [StackOutcome("front", changed=True)])  # a membership change
    assert len(said) == 2 and said[1] != said[0]


def decided(tick: int, pass_id: str, rid: str) -> dict[str, Any]:
    launch = {"id": rid, "zone": "local-1a", "market": "on_demand", "reason": "fallback: x"}
    return {
        "message": "tick decided",
        "tick": tick,
        "pass": pass_id,
        "decided": {"launches": [launch], "terminations": [], "reasons": []},
    }


def outcome(tick: int, pass_id: str | None, rid: str) -> dict[str, Any]:
    record = decided(tick, pass_id or "", rid)
    record["message"] = "tick"
    record["decision"] = record.pop("decided")
    if pass_id is None:
        del record["pass"]
    return record


def test_status_shows_a_decision_without_outcome_as_interrupted() -> None:
    events = derive_events(
        [
            decided(1, "aaa", "local-1a-od-1"),
            outcome(1, "aaa", "local-1a-od-1"),  # complete: shown once, from the outcome
            decided(2, "bbb", "local-1a-od-2"),  # kill -9: no outcome
            outcome(1, None, "local-1a-od-3"),  # a restarted loop (an older record: no pass)
            decided(2, "ccc", "local-1a-od-4"),  # the last: killed, or applying now
        ]
    )
    fallbacks = [e.replica for e in events if e.kind == "fallback"]
    assert fallbacks == ["local-1a-od-1", "local-1a-od-2", "local-1a-od-3", "local-1a-od-4"]
    errors = [(e.tick, e.reason) for e in events if e.kind == "error"]
    assert errors == [(2, INTERRUPTED), (2, UNFINISHED)]
    assert "tick interrupted before its outcome was recorded" in INTERRUPTED


def test_a_failed_tick_after_its_decision_is_not_interrupted() -> None:
    failed = {"message": "tick failed", "tick": 2, "pass": "bbb", "error": "boom"}
    events = derive_events([decided(2, "bbb", "local-1a-od-2"), failed])
    assert [(e.kind, e.reason) for e in events] == [
        ("fallback", "fallback: x"),
        ("error", "boom"),
    ]


def test_a_torn_last_line_costs_only_itself(tmp_path: Path) -> None:
    log = tmp_path / "ticks.jsonl"
    log.write_text(json.dumps({"message": "tick", "tick": 1}) + '\n{"message": "tick", "ti')
    logger = json_logger("test-torn", log, stdout=False)
    logger.info("tick", extra={"tick": 2})
    for handler in logger.handlers:
        handler.close()
    assert [r["tick"] for r in read_tail(log)] == [1, 2]
    assert log.read_text().endswith("}\n")


def test_a_command_that_logs_nothing_leaves_no_tick_log(tmp_path: Path) -> None:
    json_logger("test-nothing", tmp_path / "ticks.jsonl", stdout=False).handlers[0].close()
    assert not (tmp_path / "ticks.jsonl").exists()
    logging.getLogger("test-nothing").handlers.clear()


def test_destroy_keeps_the_launch_sequence_so_ids_never_repeat(root: Path) -> None:
    """Before: after destroy the record was gone and the next apply numbered from 0 again
    (`local-1b-spot-0` twice), so an old replica's history and log attached to a new one."""
    rec = reconciler(root, {})
    first = rec.run_pass(apply=True).decision.launches
    old = {x.replica_id for x in first}
    paths = ServicePaths.for_service("llama", root=root)
    logs = paths.sandbox_dir / "replicas"
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "local-2a-spot-40.log").write_text("a replica a crashed pass never recorded\n")

    kept = _kept_by_destroy(rec, paths)
    assert kept == Record(memory=Memory(launch_seq=41))
    rec.records.clear()
    save_record(paths.memory_file, kept)

    again = reconciler(root, {}).run_pass(apply=True).decision.launches
    new = {x.replica_id for x in again}
    assert new and not new & old
    assert min(int(r.rsplit("-", 1)[1]) for r in new) == 41


def test_destroy_keeps_nothing_of_a_service_never_applied(root: Path) -> None:
    paths = ServicePaths.for_service("llama", root=root)
    assert _kept_by_destroy(None, paths) == Record()


class MemoryRecords:
    """A remote record store in memory."""

    def __init__(self, record: Record) -> None:
        self.record = record

    def load(self) -> Record:
        return self.record

    def save(self, record: Record) -> None:
        self.record = record


def test_migrate_moves_the_record_past_the_launch_sequence_a_destroy_kept(tmp_path: Path) -> None:
    """A remote store that holds only what a destroy kept is no other host's record: the
    local record moves there and numbers its replicas past both sequences."""
    paths = ServicePaths.for_service("llama", root=tmp_path)
    save_record(paths.memory_file, Record(memory=Memory(target=2, launch_seq=5)))
    store = MemoryRecords(Record(memory=Memory(launch_seq=9)))
    rec = SimpleNamespace(paths=paths, state_backend=SimpleNamespace(remote=True), records=store)
    assert _migrate_record(rec)  # type: ignore[arg-type]
    assert store.record.memory == Memory(target=2, launch_seq=9)
    # a record another host wrote wins, as before
    save_record(paths.memory_file, Record(memory=Memory(target=3, launch_seq=1)))
    assert not _migrate_record(rec)  # type: ignore[arg-type]
    assert store.record.memory.target == 2
