"""`changes: review` (issue 16, deliverable 3): the unattended loop applies what the policy
owns and holds a changed service file until a reviewed plan of it is applied; `status` and
the tick log say what is held, and `apply` without `--plan` refuses it. Terraform and the
cloud are faked (reconciler.terraform.fake, backends/fake.py)."""

from __future__ import annotations

import json
import logging
import random
import shutil
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from reconciler.backends.fake import FakeBackend
from reconciler.cli import main
from reconciler.engine.loop import LoopSettings, ReconcileLoop
from reconciler.engine.observability import LoopMetrics
from reconciler.engine.reconcile import Reconciler
from reconciler.engine.review import held_change, review
from reconciler.engine.saved_plans import apply_plan_dir, read_manifest, write_plan_dir
from reconciler.engine.state_store import Record
from reconciler.paths import ServicePaths
from reconciler.policy import Market, Notice, NoticeKind
from reconciler.spec.loading import load_spec_texts, read_service_texts
from reconciler.stacks import ManagedReplica
from reconciler.terraform.fake import FakeTerraformRunner
from tests.engine.test_loop import Records as LoopRecords

REPO = Path(__file__).resolve().parents[2]
REVIEW_SIDECAR = "changes: review\n"


class Records(LoopRecords):
    def named(self, message: str) -> list[logging.LogRecord]:
        return [r for r in self.records if r.getMessage() == message]


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "services").mkdir()
    shutil.copy(REPO / "services" / "llama.yaml", tmp_path / "services" / "llama.yaml")
    (tmp_path / "services" / "llama.hedgeform.yaml").write_text(REVIEW_SIDECAR)
    (tmp_path / "terraform").symlink_to(REPO / "terraform")
    yield tmp_path


class World:
    """One service's fake cloud and Terraform, and reconcilers built from service texts as
    `hedgeform run` builds them (`reload(texts=...)`)."""

    def __init__(self, root: Path) -> None:
        self.paths = ServicePaths.for_service("llama", root=root)
        spec = load_spec_texts(self.paths.spec_file, read_service_texts(self.paths.spec_file))
        self.backend = FakeBackend(spec, self.paths.sandbox_dir, carries_versions=True)
        self.backend.managed_replicas = [
            ManagedReplica("local-1a-spot-0", "local-1a", Market.SPOT, stack="local-1"),
            ManagedReplica("local-1b-spot-1", "local-1b", Market.SPOT, stack="local-1"),
        ]  # the target, 2; no spare: the sandbox's notices cover its cold start
        self.runners: dict[str, FakeTerraformRunner] = {}
        self.plans = root / "tf-plans"

    def runner(self, stack: str, *_: Any) -> FakeTerraformRunner:
        state = json.dumps({"version": 4, "lineage": f"l-{stack}", "serial": 1}).encode()
        return self.runners.setdefault(
            stack, FakeTerraformRunner(name=stack, pulled=state, plan_dir=self.plans)
        )

    def reconciler(self, texts: Mapping[str, str] | None = None) -> Reconciler:
        texts = texts if texts is not None else read_service_texts(self.paths.spec_file)
        spec = load_spec_texts(self.paths.spec_file, texts)
        return Reconciler(
            self.paths, spec, runner_factory=self.runner, backend=self.backend, spec_texts=texts
        )

    def review_and_apply(self, out: Path) -> None:
        """What CI does: `hedgeform plan --out DIR` on the file, `apply --plan DIR` on merge."""
        rec = self.reconciler()
        rec.plan_cache = False
        result = rec.run_pass(apply=False)
        assert not result.failed
        write_plan_dir(rec, result, out, "github")
        apply_plan_dir(rec, out, read_manifest(out, "llama"))

    def loop(self) -> tuple[ReconcileLoop, Records]:
        logger = logging.getLogger(f"test-review-{id(self)}")
        logger.propagate = False
        handler = Records()
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        settings = LoopSettings(interval_s=30, poll_s=0.05, max_backoff_s=120)
        loop = ReconcileLoop(
            self.reconciler(), settings, logger, LoopMetrics("llama"),
            rng=random.Random(7), reload=self.reconciler,
        )  # fmt: skip
        return loop, handler


def ticks(loop: ReconcileLoop, n: int, between: Any = None) -> None:
    """Run `n` ticks, calling `between(i)` before tick i (i from 0) to change the world."""
    for i in range(n):
        if between is not None:
            between(i)
        loop._tick()


def edit_min_replicas(paths: ServicePaths, value: int) -> None:
    text = paths.spec_file.read_text()
    assert "min_replicas: 2" in text
    paths.spec_file.write_text(text.replace("min_replicas: 2", f"min_replicas: {value}"))


def launches(tick: logging.LogRecord) -> list[Any]:
    return list(tick.decision["launches"])  # type: ignore[attr-defined]


def test_a_spec_change_is_held_while_preemptions_are_still_handled(
    root: Path, tmp_path: Path
) -> None:
    world = World(root)
    world.review_and_apply(tmp_path / "v1")  # the first version, reviewed
    loop, log = world.loop()
    ticks(loop, 1)
    assert loop.held is None and not launches(log.named("tick")[-1])  # the 2 run

    edit_min_replicas(world.paths, 3)  # a pull request merged on the host, not yet applied
    ticks(loop, 1)
    held = log.named("held for review")
    assert len(held) == 1 and "llama.yaml changed since the reviewed v1" in (
        held[0].held  # type: ignore[attr-defined]
    )
    tick = log.named("tick")[-1]
    assert tick.held == held[0].held  # type: ignore[attr-defined]
    assert tick.decision["target"] == 2 and not launches(tick)  # type: ignore[attr-defined]
    assert loop.rec.records.load().memory.version == 1

    # A preemption is handled with the spec that runs: the lost replica is replaced on spot,
    # with SpotHedge's on-demand cover while it starts (for 2 replicas, not the held 3).
    notice = Notice(NoticeKind.PREEMPTED, "local-1b-spot-1", "local-1b", 0.0)
    world.backend.notices_queue.append(notice)
    ticks(loop, 1)
    tick = log.named("tick")[-1]
    assert tick.decision["target"] == 2  # type: ignore[attr-defined]
    assert sorted(x["market"] for x in launches(tick)) == ["on_demand", "spot"]
    assert len(log.named("held for review")) == 1  # said once per change, not per tick
    assert "llama.yaml" in held_change(
        world.paths.spec_file, read_service_texts(world.paths.spec_file), loop.rec.records.load()
    )  # `status` shows the same line

    # The change is reviewed and applied: the loop takes it at its next tick.
    world.review_and_apply(tmp_path / "v2")
    ticks(loop, 1)
    assert loop.held is None
    assert any(r.getMessage() == "a reviewed version: reloaded" for r in log.records)
    tick = log.named("tick")[-1]
    assert tick.decision["target"] == 3 and "held" not in tick.__dict__  # type: ignore[attr-defined]
    assert loop.rec.records.load().memory.version == 2


def test_under_auto_the_loop_rolls_a_changed_file_out_itself(root: Path, tmp_path: Path) -> None:
    (root / "services" / "llama.hedgeform.yaml").unlink()
    world = World(root)
    loop, log = world.loop()
    ticks(loop, 1)
    edit_min_replicas(world.paths, 3)
    ticks(loop, 1)
    assert loop.held is None and not log.named("held for review")
    assert log.named("tick")[-1].decision["target"] == 3  # type: ignore[attr-defined]


def test_switching_review_off_is_itself_held(root: Path, tmp_path: Path) -> None:
    world = World(root)
    world.review_and_apply(tmp_path / "v1")
    loop, log = world.loop()
    ticks(loop, 1)
    (root / "services" / "llama.hedgeform.yaml").write_text("changes: auto\n")
    edit_min_replicas(world.paths, 3)
    ticks(loop, 2)
    assert loop.held is not None
    assert log.named("tick")[-1].decision["target"] == 2  # type: ignore[attr-defined]


def test_with_nothing_reviewed_the_loop_holds_every_pass(root: Path) -> None:
    world = World(root)
    loop, log = world.loop()
    ticks(loop, 2)
    assert not log.named("tick") and len(log.named("tick held")) == 2
    assert "no reviewed version of llama is recorded yet" in (loop.held or "")
    assert not any(c == "apply" for r in world.runners.values() for c, _ in r.calls)


def test_a_record_from_before_review_takes_the_running_version_as_reviewed(root: Path) -> None:
    """A service that ran under `auto` (or before `changes:` existed) and turns review on:
    its record names no reviewed texts, but a file whose digest is the current version's is
    what runs, so the loop goes on with it; a file that differs is held."""
    world = World(root)
    (root / "services" / "llama.hedgeform.yaml").unlink()
    world.reconciler().run_pass(apply=True)  # v1 under auto
    record = world.paths.memory_file
    raw = json.loads(record.read_text())
    raw["approved"] = {}
    record.write_text(json.dumps(raw))
    (root / "services" / "llama.hedgeform.yaml").write_text(REVIEW_SIDECAR)
    texts = read_service_texts(world.paths.spec_file)
    loaded = world.reconciler().records.load()
    assert review(world.paths.spec_file, texts, loaded).texts == texts
    edit_min_replicas(world.paths, 3)
    choice = review(world.paths.spec_file, read_service_texts(world.paths.spec_file), loaded)
    assert choice.texts is None and "no reviewed version" in (choice.held or "")


def test_an_unreadable_file_under_review_is_a_held_change(root: Path, tmp_path: Path) -> None:
    world = World(root)
    world.review_and_apply(tmp_path / "v1")
    record = world.reconciler().records.load()
    choice = review(world.paths.spec_file, None, record)
    assert choice.texts == record.approved and choice.held is not None
    assert review(world.paths.spec_file, None, Record()).texts is None


def test_apply_without_plan_refuses_an_unreviewed_change_in_one_line(root: Path) -> None:
    result = CliRunner().invoke(main, ["apply", "llama", "--root", str(root), "--no-wait"])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: not applied: llama.yaml: no reviewed")
    assert "hedgeform apply llama --plan DIR" in lines[0]
    assert not (root / "state" / "llama" / "local-1").exists()  # nothing rendered or run


def test_a_bad_changes_value_is_one_line_naming_the_file(root: Path) -> None:
    (root / "services" / "llama.hedgeform.yaml").write_text("changes: sometimes\n")
    result = CliRunner().invoke(main, ["status", "llama", "--root", str(root)])
    assert result.exit_code == 1
    assert "llama.hedgeform.yaml: changes: 'sometimes' is not one of auto, review" in result.output


def test_loop_stops_cleanly_while_holding(root: Path) -> None:
    world = World(root)
    loop, _ = world.loop()
    stop = threading.Event()
    seen: list[int] = []

    def wait(stop: threading.Event, seconds: float) -> None:
        seen.append(1)
        if len(seen) >= 3:
            stop.set()

    loop.wait = wait
    assert loop.run(stop) == 1 and loop.held is not None


def test_under_auto_no_service_text_is_recorded(root: Path) -> None:
    """Only a `review` service's record keeps its reviewed texts (the loop may have to run
    them); an `auto` one's keeps none (verification: inline values were in every record)."""
    (root / "services" / "llama.hedgeform.yaml").unlink()
    world = World(root)
    world.reconciler().run_pass(apply=True)
    assert world.reconciler().records.load().approved == {}
    raw = json.loads(world.paths.memory_file.read_text())
    assert raw["approved"] == {} and "MODEL_NAME" not in json.dumps(raw["approved"])


def test_review_refuses_inline_secret_values_in_one_line(root: Path) -> None:
    """Under review the record keeps the service file, so a secret written inline in it
    would land there: refused; `null` secrets (from the environment) are fine."""
    spec = root / "services" / "llama.yaml"
    spec.write_text(spec.read_text() + "secrets:\n  API_KEY: sk-inline-do-not-keep\n")
    result = CliRunner().invoke(main, ["status", "llama", "--root", str(root)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "changes: review keeps the reviewed service file" in lines[0]
    assert "API_KEY as `null`" in lines[0] and "sk-inline" not in result.output
    spec.write_text(spec.read_text().replace("sk-inline-do-not-keep", "null"))
    loaded = load_spec_texts(spec, read_service_texts(spec))
    assert loaded.changes == "review" and "API_KEY" in loaded.secret_names


def test_the_held_line_names_what_changed_and_each_change_is_said_once(
    root: Path, tmp_path: Path
) -> None:
    world = World(root)
    world.review_and_apply(tmp_path / "v1")
    loop, log = world.loop()
    ticks(loop, 1)
    edit_min_replicas(world.paths, 3)
    ticks(loop, 2)
    (root / "services" / "llama.hedgeform.yaml").write_text(REVIEW_SIDECAR + "# edited\n")
    ticks(loop, 2)
    said = [r.held for r in log.named("held for review")]  # type: ignore[attr-defined]
    assert len(said) == 2
    assert said[0].startswith("llama.yaml changed since the reviewed v1")
    assert said[1].startswith("llama.yaml and llama.hedgeform.yaml changed since")
    (root / "services" / "llama.yaml").unlink()
    ticks(loop, 1)
    assert "cannot be read" in (loop.held or "")


def test_status_still_shows_a_review_service_whose_file_is_broken(
    root: Path, tmp_path: Path
) -> None:
    """From the user-eye check: with the service file broken or gone, `status` failed
    while the loop kept running the reviewed version; it now shows that version."""
    world = World(root)
    world.review_and_apply(tmp_path / "v1")
    (root / "services" / "llama.yaml").write_text("service: [broken\n")
    result = CliRunner().invoke(main, ["status", "llama", "--root", str(root), "--json"])
    assert result.exit_code == 0, result.output
    assert "showing the reviewed version the record keeps" in result.stderr
    view = json.loads(result.stdout)
    assert view["service"] == "llama" and view["version"] == 1
    assert any("llama.yaml changed since the reviewed v1" in n for n in view["notes"])
    listing = CliRunner().invoke(main, ["status", "--root", str(root)])
    assert "llama  v1" in listing.output and "held for review" in listing.output
    (root / "services" / "llama.yaml").unlink()
    result = CliRunner().invoke(main, ["status", "llama", "--root", str(root), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["version"] == 1
    # a service with nothing reviewed: what its state knows, and the file's error in a line
    (root / "state" / "llama" / "reconciler.json").unlink()
    result = CliRunner().invoke(main, ["status", "llama", "--root", str(root)])
    assert result.exit_code == 0, result.output
    assert "no such service file: shown from state/llama alone" in result.stdout
