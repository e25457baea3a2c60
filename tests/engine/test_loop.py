"""The unattended loop, with Terraform faked per stack: when ticks run, backoff, shutdown."""

from __future__ import annotations

import json
import logging
import random
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.backends.fake import FakeBackend
from reconciler.engine.loop import LoopSettings, ReconcileLoop, loop_lock
from reconciler.engine.observability import LoopMetrics
from reconciler.engine.reconcile import Reconciler
from reconciler.errors import CancelledError, LoopBusyError, StateError
from reconciler.paths import ServicePaths
from reconciler.sandbox import market_daemon
from reconciler.spec import load_spec
from reconciler.terraform.fake import FakeTerraformRunner
from reconciler.terraform.runner import PlanResult

REPO = Path(__file__).resolve().parents[2]


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self) -> list[str]:
        return [r.getMessage() for r in self.records]


class BlockingRunner(FakeTerraformRunner):
    """A plan that runs until cancelled, like a long Terraform command."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name)
        self.started = threading.Event()
        self.cancelled = threading.Event()

    def plan(self, var_file: Path | None = None, *, destroy: bool = False) -> PlanResult:
        self.started.set()
        if not self.cancelled.wait(10):
            raise AssertionError("never cancelled")
        raise CancelledError(self.stack, "plan", "cancelled")

    def cancel(self) -> None:
        self.cancelled.set()


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "services").mkdir()
    shutil.copy(REPO / "services" / "llama.yaml", tmp_path / "services" / "llama.yaml")
    (tmp_path / "terraform").symlink_to(REPO / "terraform")
    yield tmp_path
    assert market_daemon.running_pid(tmp_path / "state" / "llama" / "sandbox") is None


def make_loop(
    root: Path, runners: dict[str, FakeTerraformRunner], interval: float = 30.0
) -> tuple[ReconcileLoop, Records]:
    paths = ServicePaths.for_service("llama", root=root)

    def factory(stack: str, stack_dir: Path, module_dir: Path) -> FakeTerraformRunner:
        return runners.setdefault(stack, FakeTerraformRunner(name=stack))

    spec = load_spec(paths.spec_file)
    backend = FakeBackend(spec, paths.sandbox_dir)  # no market daemon, no process
    rec = Reconciler(paths, spec, runner_factory=factory, backend=backend)
    logger = logging.getLogger(f"test-loop-{id(runners)}")
    logger.propagate = False
    handler = Records()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    settings = LoopSettings(interval_s=interval, poll_s=0.05, max_backoff_s=120)
    loop = ReconcileLoop(rec, settings, logger, LoopMetrics("llama"), rng=random.Random(7))
    return loop, handler


def run_looks(loop: ReconcileLoop, looks: int, on_look: Any = None) -> int:
    """Run the loop for `looks` idle looks without sleeping: its `wait` returns at once
    (calling `on_look(n)` first, to change the world), then stops the loop."""
    seen: list[int] = []

    def wait(stop: threading.Event, seconds: float) -> None:
        seen.append(len(seen) + 1)
        if on_look is not None:
            on_look(len(seen))
        if len(seen) >= looks:
            stop.set()

    loop.wait = wait
    return loop.run(threading.Event())


def test_first_tick_at_once_then_wait_for_the_interval(root: Path) -> None:
    loop, log = make_loop(root, {}, interval=30)
    assert run_looks(loop, 20) == 1  # twenty looks, no second tick before the interval
    tick = next(r for r in log.records if r.getMessage() == "tick")
    assert tick.decision["launches"]  # type: ignore[attr-defined]
    assert "plan" in tick.__dict__ and "durations" in tick.__dict__


def test_a_preemption_notice_makes_a_tick_run_at_once(root: Path) -> None:
    loop, _ = make_loop(root, {}, interval=30)
    notices = root / "state" / "llama" / "sandbox" / "notices.jsonl"

    def preempt_after_the_first_tick(look: int) -> None:
        if look == 2:
            with notices.open("a") as fh:
                notice = {"kind": "preempted", "replica_id": "local-1a-spot-0", "zone": "local-1a"}
                fh.write(json.dumps({**notice, "at": time.time(), "deadline": 0}) + "\n")

    assert run_looks(loop, 5, preempt_after_the_first_tick) == 2  # well before the interval


def test_failures_back_off_with_jitter_and_are_logged(root: Path) -> None:
    runners = {"local-1": FakeTerraformRunner(name="local-1")}
    runners["local-1"].fail("plan", "Error: boom", times=5)
    loop, log = make_loop(root, runners, interval=10)
    delays = [loop._tick() for _ in range(3)]
    assert delays[0] < delays[1] < delays[2] or delays[2] == 120 * 1.5
    assert 5 <= delays[0] <= 15  # interval x jitter in [0.5, 1.5]
    assert 20 <= delays[2] <= 60  # 10 x 2^2 x jitter
    failed = [r for r in log.records if r.getMessage() == "tick failed"]
    assert len(failed) == 3
    assert "stack local-1: plan failed: Error: boom" in failed[0].error  # type: ignore[attr-defined]
    assert failed[-1].consecutive_failures == 3  # type: ignore[attr-defined]


def test_a_known_fault_is_logged_in_one_line_and_only_a_bug_carries_a_trace(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing lock table is the operator's to fix, and its message says how: a Python
    traceback in the tick's record only buries it. An unexpected exception keeps its trace."""
    loop, log = make_loop(root, {}, interval=10)
    faults: list[Exception] = [
        StateError("leader lease in DynamoDB table t: the table does not exist"),
        KeyError("bug"),
    ]

    def take() -> bool:
        raise faults.pop(0)

    monkeypatch.setattr(loop.keeper, "take", take)
    loop._tick()
    loop._tick()
    known, bug = [r for r in log.records if r.getMessage() == "tick failed"]
    assert known.error.startswith("leader lease in DynamoDB table t")  # type: ignore[attr-defined]
    assert not hasattr(known, "trace")
    assert "Traceback" in bug.trace  # type: ignore[attr-defined]


def test_stop_cancels_the_running_terraform_and_the_loop_exits(root: Path) -> None:
    blocking = BlockingRunner("local-1")
    loop, log = make_loop(root, {"local-1": blocking}, interval=30)
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,))
    thread.start()
    assert blocking.started.wait(5)
    stop.set()
    thread.join(5)
    assert not thread.is_alive()
    assert blocking.cancelled.is_set()
    assert "stopping: cancelling Terraform" in log.messages()
    assert log.messages()[-1] == "loop stopped"


def test_two_loops_for_one_service_do_not_run(root: Path) -> None:
    lock = root / "state" / "llama" / ".loop.lock"
    with (
        loop_lock(lock, "llama", wait=False),
        pytest.raises(LoopBusyError, match="already"),
        loop_lock(lock, "llama", wait=False),
    ):
        pass


def test_metrics_describe_the_last_tick(root: Path, tmp_path: Path) -> None:
    loop, _ = make_loop(root, {})
    loop.textfile = tmp_path / "metrics.prom"
    assert loop.run(threading.Event(), max_ticks=1) == 1
    text = loop.textfile.read_text()
    assert 'hedgeform_target_replicas{service="llama"} 2.0' in text
    assert "hedgeform_tick_duration_seconds_count" in text


def test_a_starting_replica_that_passes_readiness_makes_a_tick_run(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reconciler.policy import Market, Replica, ReplicaState

    loop, _ = make_loop(root, {})
    loop._starting = {"r-1", "r-2"}
    states = {"r-1": ReplicaState.STARTING}
    monkeypatch.setattr(
        loop.rec,
        "current_replicas",
        lambda: [Replica(k, "local-1a", Market.SPOT, v, 0.0) for k, v in states.items()],
    )
    assert not loop._a_replica_became_ready()  # r-1 still starting, r-2 never showed up
    states["r-1"] = ReplicaState.READY
    assert loop._a_replica_became_ready()
    assert loop._starting == {"r-2"}


def test_a_capacity_refusal_does_not_bring_the_next_tick_forward(root: Path) -> None:
    """The interval is a floor for ticks that only retry spot (issue: 8 ticks in 18 s with
    `--interval 30` while every zone refused capacity); the zone's own retry delay is memory."""
    runners = {s: FakeTerraformRunner(name=s) for s in ("local-1", "local-2")}
    blocks = "\n".join(
        f'Error: local-exec provisioner error\n\n  with null_resource.replica["{zone}-spot-{n}"],\n'
        f"  Error running command: InsufficientInstanceCapacity: no spot capacity in {zone}\n"
        for zone in ("local-1a", "local-1b", "local-2a")
        for n in range(6)
    )
    for runner in runners.values():
        runner.fail("apply", blocks)
    loop, log = make_loop(root, runners, interval=30)
    assert loop._tick() == 30
    tick = next(r for r in log.records if r.getMessage() == "tick")
    failures = [
        kind
        for stack in tick.stacks.values()  # type: ignore[attr-defined]
        for kind in stack["launch_failures"].values()
    ]
    assert failures and set(failures) == {"capacity"}
    assert loop._tick() == 30  # the next tick feeds the refusals to the policy
    record = json.loads((root / "state" / "llama" / "reconciler.json").read_text())
    assert set(record["memory"]["zone_backoff"]) == {"local-1a", "local-1b", "local-2a"}


def test_the_serving_metric_and_record_come_from_the_endpoint_check(
    root: Path, tmp_path: Path
) -> None:
    """Nothing listens on the LB port here: the check says so once, falls back to the LB's
    own view (unknown: HAProxy is not running) and reports not serving."""
    loop, log = make_loop(root, {})
    loop.textfile = tmp_path / "metrics.prom"
    loop._tick()
    loop._tick()
    text = loop.textfile.read_text()
    assert 'hedgeform_endpoint_serving{service="llama"} 0.0' in text
    ticks = [r for r in log.records if r.getMessage() == "tick"]
    assert ticks[-1].serving["ok"] is False  # type: ignore[attr-defined]
    assert ticks[-1].serving["via"] == "load balancer health"  # type: ignore[attr-defined]
    unreachable = [m for m in log.messages() if "not reachable from this host" in m]
    assert len(unreachable) == 1
