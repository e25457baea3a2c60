"""The unattended loop: reconcile every `interval` seconds (on `schedule`), at once when a
preemption notice arrives or a starting replica passes readiness, later (with jitter) after a
failure. The interval is a floor for ticks that would only retry spot: a zone that refused
capacity is retried after its own delay, which the policy keeps (policy/capacity_backoff.py).

Ticks run in a worker thread so the main thread can react to SIGTERM at any moment: it
cancels Terraform by process group (reconciler.terraform.process) and waits for the tick to
end, so nothing is left applying and holding a state lock. Every tick is level-triggered:
it recomputes from what is observed now, never from a remembered delta.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import random
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO

import schedule

from reconciler.engine.drift import check_drift
from reconciler.engine.lease import STANDBY_RETRY_S, Lease, LeaseKeeper, lease_for
from reconciler.engine.observability import DECIDED, LoopMetrics, decided_record, tick_record
from reconciler.engine.reconcile import PassResult, Reconciler, service_lock
from reconciler.engine.review import review
from reconciler.engine.serving import ServingCheck, ServingChecker
from reconciler.errors import BusyError, HedgeformError, LoopBusyError, ReconcileError
from reconciler.policy import Decision, Replica, ReplicaState
from reconciler.sandbox import processes
from reconciler.spec.loading import read_service_texts
from reconciler.spec.sidecar import REVIEW


@dataclass(frozen=True)
class LoopSettings:
    interval_s: float = 30.0
    max_backoff_s: float = 300.0
    poll_s: float = 0.25
    # Check drift (engine/drift.py) after every Nth tick this loop acts in (the Nth, 2Nth,
    # ...; standby and skipped ticks do not count); 0: never. Report only: no fix beyond
    # what the passes do anyway.
    drift_every: int = 0


@contextlib.contextmanager
def loop_lock(lock_file: Path, service: str, wait: bool) -> Iterator[None]:
    """One loop per service for its whole life (each tick also takes the service lock).

    The holder's pid is written into the lock file once the lock is taken, so `hedgeform
    destroy` can stop the loop (SIGTERM) before destroying; destroy holds the same lock
    while it runs, so a loop started meanwhile exits here."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise LoopBusyError(
                f"a reconcile loop (or a destroy) of {service} is already running (lock "
                f"{lock_file}); stop it first, or pass --wait to take over when it exits"
            ) from None
        _record_holder(fh)
        yield


def _record_holder(fh: IO[str]) -> None:
    """Write this process's pid into a lock file it holds (read by `loop_stopped`)."""
    fh.seek(0)
    fh.truncate()
    fh.write(f"{os.getpid()}\n")
    fh.flush()


LOOP_STOP_TIMEOUT_S = 60.0


def _flock(fh: IO[str]) -> bool:
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _loop_holder(lock_file: Path, service: str) -> int:
    """The pid of the `hedgeform run SERVICE` holding the loop lock (loop.loop_lock writes it
    into the lock file). Refuses, in one line, a pid it cannot read or that is not such a
    loop (/proc/PID/cmdline): destroy never signals anything else."""
    pid, deadline = None, time.monotonic() + 2.0
    while pid is None:  # a loop writes its pid right after it takes the lock
        with contextlib.suppress(OSError, ValueError):
            pid = int(lock_file.read_text().split()[0])
        if pid is None and time.monotonic() > deadline:
            raise ReconcileError(
                f"a reconcile loop of {service} holds {lock_file} but its pid is not recorded "
                f"there: stop it (systemctl stop hedgeform-{service}.service) and run destroy "
                "again"
            )
        if pid is None:
            time.sleep(0.1)
    argv = processes.cmdline(pid) or []
    names = {os.path.basename(a) for a in argv[:2]} | set(argv[1:3])
    run_at = argv.index("run") if "run" in argv else len(argv)
    if not ({"hedgeform", "reconciler.cli"} & names and service in argv[run_at + 1 :]):
        shown = " ".join(argv) or "no such process"
        raise ReconcileError(
            f"cannot stop the reconcile loop of {service}: {lock_file} is held by pid {pid} "
            f"({shown}), not `hedgeform run {service}`; stop that first and run destroy again"
        )
    return pid


@contextlib.contextmanager
def loop_stopped(
    lock_file: Path, service: str, echo: Callable[[str], object] = print
) -> Iterator[None]:
    """Stop a running `hedgeform run` loop of the service and hold the loop lock until the
    block ends, so nothing re-creates what is being destroyed (a loop restarted meanwhile by
    systemd or cron exits "already running"). Progress lines go to `echo`."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a+") as fh:
        if not _flock(fh):
            pid = _loop_holder(lock_file, service)
            echo(
                f"stopping the reconcile loop of {service} (pid {pid}); waiting up to "
                f"{LOOP_STOP_TIMEOUT_S:.0f} s for it to exit"
            )
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass  # exited meanwhile: its lock is free or about to be
            except PermissionError as exc:
                raise ReconcileError(
                    f"cannot stop the reconcile loop of {service} (pid {pid}): {exc.strerror}"
                ) from None
            deadline = time.monotonic() + LOOP_STOP_TIMEOUT_S
            while not _flock(fh):
                if time.monotonic() > deadline:
                    raise ReconcileError(
                        f"the reconcile loop of {service} (pid {pid}) did not exit within "
                        f"{LOOP_STOP_TIMEOUT_S:.0f} s of SIGTERM; nothing was destroyed"
                    )
                time.sleep(0.1)
            echo(f"stopped the reconcile loop of {service} (pid {pid})")
        try:
            _record_holder(fh)  # who holds it now (not a loop: never signalled)
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class ReconcileLoop:
    def __init__(
        self,
        rec: Reconciler,
        settings: LoopSettings,
        logger: logging.Logger,
        metrics: LoopMetrics | None = None,
        textfile: Path | None = None,
        rng: random.Random | None = None,
        wait: Callable[[threading.Event, float], object] | None = None,
        lease: Lease | None = None,
        reload: Callable[..., Reconciler] | None = None,
    ) -> None:
        """`wait(stop, seconds)` is how the loop idles between looks (default `stop.wait`);
        tests pass one that returns at once and drives the world instead of sleeping.
        `lease` decides whether this loop acts when several run for the service (default:
        the state backend's, engine/lease.py). `reload(texts=...)` builds the reconciler again
        from service texts (spec.loading.read_service_texts); each tick checks the service
        file for a change (a new version to roll out, or under `changes: review` one to
        hold, engine/review.py)."""
        self.rec = rec
        self.reload = reload
        self._tried: Mapping[str, str] | None = rec.spec_texts  # texts last loaded (or tried)
        self._consulted = False  # the record's approved texts read once (engine/review.py)
        self.held: str | None = None  # a change waiting for review, as the tick log says
        self._held_texts: Mapping[str, str] | None = None  # the file texts held (said once)
        self._hold_all = False  # `review` with nothing approved: no pass runs
        self.keeper = LeaseKeeper(lease or lease_for(rec.state_backend, rec.paths.service))
        self.wait = wait or (lambda stop, seconds: stop.wait(seconds))
        self.settings = settings
        self.logger = logger
        self.metrics = metrics
        self.textfile = textfile
        self.rng = rng or random.Random()
        self.failures = 0
        self.ticks = 0
        self._due = True  # the first tick runs at once
        self._starting: set[str] = set()  # replicas that were starting at the last look
        self._acting = 0  # ticks this loop acted in (held the lease): for drift_every
        self._next_look = 0.0
        self.serving = ServingChecker(rec, rec.spec)  # backs hedgeform_endpoint_serving
        self._notices = rec.cloud.state_dir / "notices.jsonl"
        self._notice_size = self._feed_size()
        if metrics is not None:  # the backend of the reconciler in use at each scrape
            metrics.watch_traffic(lambda: self.rec.cloud.replica_traffic(), logger)

    def run(self, stop: threading.Event, max_ticks: int | None = None) -> int:
        scheduler = schedule.Scheduler()
        # schedule takes whole seconds; sub-second intervals (tests) round up to one
        every = max(1, round(self.settings.interval_s))
        job = scheduler.every(every).seconds.do(self._mark_due)
        start = {"service": self.rec.spec.name, "interval_s": self.settings.interval_s}
        self.logger.info("loop started", extra=start)
        while not stop.is_set() and (max_ticks is None or self.ticks < max_ticks):
            scheduler.run_pending()
            size = self._feed_size()
            if size != self._notice_size:  # a preemption notice: act now, not at the next tick
                self._notice_size = size
                self._due = True
            if not self._due and self._starting and time.monotonic() >= self._next_look:
                self._due = self._a_replica_became_ready()
            if self._due:
                self._due = False
                delay = self._tick_in_worker(stop)
                job.next_run = datetime.now() + timedelta(seconds=delay)
            self.wait(stop, self.settings.poll_s)
        self.keeper.stop()  # a clean stop hands the lease over at once
        self.logger.info("loop stopped", extra={"service": self.rec.spec.name, "ticks": self.ticks})
        return self.ticks

    def _mark_due(self) -> None:
        self._due = True

    def _a_replica_became_ready(self) -> bool:
        """Between ticks, watch replicas that were starting (cheap probes on the sandbox, at
        the backend's pace on clouds): one that passes readiness should join the target
        group now, not at the next tick (the soak saw an empty LB wait 9 s for that)."""
        self._next_look = time.monotonic() + self.rec.cloud.poll_s
        try:
            now = {r.id: r for r in self.rec.current_replicas()}
        except Exception:  # a failed look is not a reason to tick; the schedule still runs
            return False
        # A launch that never shows up (a capacity error) is not "done": the capacity retry
        # delay decides when to try again, and the next tick resets this watch.
        done = {rid for rid in self._starting if rid in now and not _starting(now[rid])}
        self._starting -= done
        return bool(done)

    def _feed_size(self) -> int:
        try:
            return self._notices.stat().st_size
        except OSError:
            return 0

    def _tick_in_worker(self, stop: threading.Event) -> float:
        outcome: list[float] = []
        worker = threading.Thread(target=lambda: outcome.append(self._tick()), daemon=True)
        worker.start()
        cancelled = False
        while worker.is_alive():
            if stop.is_set() and not cancelled:
                self.logger.info("stopping: cancelling Terraform", extra={"tick": self.ticks})
                self.rec.cancel()
                cancelled = True
            worker.join(self.settings.poll_s)
        self.ticks += 1
        return outcome[0] if outcome else self.settings.interval_s

    def _read_texts(self) -> dict[str, str] | None:
        try:
            return read_service_texts(self.rec.paths.spec_file)
        except HedgeformError:
            return None

    def _reload_if_changed(self) -> None:
        """A changed service file becomes this loop's spec (policy/rollout.py rolls it out);
        one that no longer loads is logged once and the last good one kept. Under the
        sidecar's `changes: review` the loop runs the texts the last reviewed plan recorded
        instead, and says once per change what it holds (engine/review.py)."""
        if self.reload is None:
            return
        texts = self._read_texts()
        if self._consulted and self.rec.spec.changes != REVIEW and texts == self._tried:
            return  # `auto`, nothing new: the record need not be read
        self._consulted = True
        choice = review(self.rec.paths.spec_file, texts, self.rec.records.load())
        if choice.held is not None and (choice.held != self.held or texts != self._held_texts):
            self.logger.warning("held for review", extra={"tick": self.ticks, "held": choice.held})
        self.held = choice.held
        self._held_texts = texts if choice.held is not None else None
        self._hold_all = choice.texts is None
        if choice.texts is None or choice.texts == self._tried:
            return
        self._tried = choice.texts
        reviewed = choice.texts != texts or self.rec.spec.changes == REVIEW
        try:
            rec = self.reload(texts=choice.texts)
        except HedgeformError as exc:
            self.logger.error(
                "service file changed but does not load; keeping the last good one",
                extra={"tick": self.ticks, "error": str(exc)},
            )
            return
        self.rec = rec
        self.serving = ServingChecker(rec, rec.spec)
        what = "a reviewed version: reloaded" if reviewed else "service file changed: reloaded"
        self.logger.info(what, extra={"tick": self.ticks})

    def _tick(self) -> float:
        """One tick; returns seconds until the next one."""
        self._reload_if_changed()
        self.rec.decided_pass = None
        try:
            if not self.keeper.take():
                holder = self.keeper.lease.holder()
                extra: dict[str, object] = {"tick": self.ticks}
                if holder is not None:
                    extra.update(leader=holder.holder, lease_until=round(holder.expires_at, 1))
                self.logger.info("standby: another loop holds the lease", extra=extra)
                return min(self.settings.interval_s, STANDBY_RETRY_S)
            if self._hold_all:
                self.logger.info("tick held", extra={"tick": self.ticks, "held": self.held})
                return self.settings.interval_s
            with service_lock(self.rec.paths):
                self.rec.on_decided = self._decided
                result = self.rec.run_pass(apply=True)
                self._check_drift()
        except BusyError as exc:
            self.logger.info("tick skipped", extra={"tick": self.ticks, "reason": str(exc)})
            return self.settings.interval_s
        except HedgeformError as exc:  # a known fault, already one line: no trace
            return self._failed(str(exc), None)
        except Exception as exc:  # never let one bad tick end an unattended loop
            return self._failed(str(exc) or type(exc).__name__, traceback.format_exc())
        try:
            check: ServingCheck | None = self.serving.check()
        except Exception as exc:  # a failed check is reported, never the end of the loop
            check = ServingCheck(False, "error", str(exc) or type(exc).__name__)
        for note in self.serving.notes:
            self.logger.warning(note, extra={"tick": self.ticks})
        self.serving.notes.clear()
        self._report(result, check)
        if result.observed is not None:
            self._starting = {
                r.id
                for r in result.observed.replicas
                if r.state.value in ("STARTING", "PROVISIONING")
            } | {x.replica_id for x in result.decision.launches}
        if result.failed:
            return self._failed("; ".join(str(o.error) for o in result.failed), None)
        self.failures = 0
        return self.settings.interval_s

    def _check_drift(self) -> None:
        """Every `drift_every`th acting tick, after its pass (the service lock still held):
        a drift found is one warning line and the drift metrics; a check that fails is a
        warning too, never a failed tick."""
        every = self.settings.drift_every
        if not every:
            return
        self._acting += 1
        if self._acting % every:
            return
        try:
            report = check_drift(self.rec)
        except Exception as exc:  # the pass itself went fine: the tick does not fail
            self.logger.warning(
                "drift check failed",
                extra={"tick": self.ticks, "error": str(exc) or type(exc).__name__},
            )
            return
        unknown = len(report.unknown_instances)
        if self.metrics:
            self.metrics.observe_drift(report.changed_count, unknown)
        extra: dict[str, object] = {"tick": self.ticks}
        if report.errors:
            self.logger.warning(
                "drift check incomplete", extra={**extra, "errors": "; ".join(report.errors)}
            )
        if report.drift:
            extra.update(changed=report.changed_count, unknown_instances=unknown)
            self.logger.warning(report.one_line(), extra=extra)

    def _failed(self, message: str, trace: str | None) -> float:
        self.failures += 1
        base = min(self.settings.max_backoff_s, self.settings.interval_s * 2 ** (self.failures - 1))
        delay: float = base * self.rng.uniform(0.5, 1.5)
        extra: dict[str, object] = {
            "tick": self.ticks,
            "error": message,
            "consecutive_failures": self.failures,
            "retry_in_s": round(delay, 1),
        }
        if self.rec.decided_pass:  # the outcome of the decision this tick announced
            extra["pass"] = self.rec.decided_pass
        if trace:
            extra["trace"] = trace
        self.logger.error("tick failed", extra=extra)
        if self.metrics:
            self.metrics.tick_errors.labels(self.rec.spec.name).inc()
            self._write_metrics()
        return delay

    def _decided(self, pass_id: str, decision: Decision) -> None:
        """The decision this tick is about to apply, durably in the tick log first."""
        self.logger.info(DECIDED, extra=decided_record(self.ticks, pass_id, decision, "run"))

    def _report(self, result: PassResult, check: ServingCheck | None) -> None:
        record = tick_record(self.ticks, result, check)
        record["source"] = "run"
        if self.held is not None:
            record["held"] = self.held
        self.logger.info("tick", extra=record)
        if self.metrics:
            # A replica's GPU type where its pool names none: what the backend runs, else
            # what the spec asks for (nominal on the sandbox).
            cloud, spec = self.rec.cloud, self.rec.spec
            self.metrics.accelerator = "|".join(
                sorted(cloud.accelerators_in_use) or spec.resources.accelerator_names
            )
            self.metrics.observe(result, check)
            self._write_metrics()

    def _write_metrics(self) -> None:
        """The textfile was writable at start; a later failure (a full disk, the directory
        removed) is a warning in the tick log, never the end of the loop."""
        if self.metrics and self.textfile:
            try:
                self.metrics.write_textfile(self.textfile)
            except OSError as exc:
                self.logger.warning(
                    "metrics textfile not written",
                    extra={"path": str(self.textfile), "error": exc.strerror or str(exc)},
                )


def _starting(replica: Replica) -> bool:
    return replica.state in (ReplicaState.STARTING, ReplicaState.PROVISIONING)
