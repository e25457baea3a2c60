"""One reconcile: observe -> decide (pure policy) -> render -> plan -> apply the saved plan ->
record. Level-triggered: every pass recomputes from what Terraform and the cloud report now.

Stacks are planned in parallel; a stack whose Terraform fails is reported with its name and
Terraform's message and the others go on. The front stack (load balancer) applies first, so a
replica leaves the target group before its region stack destroys it.

The loop is the same for every cloud; what differs sits behind `CloudBackend`
(backends/base.py): `SandboxCloud` for `cloud: local` specs, `ProviderCloud` for AWS, GCP
and Azure. The pass asks it for one `Observed` (observe), hands it one `Layout` (render),
and stops through it only what no Terraform state holds (orphans, adopted replicas).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.backends.base import (
    CloudBackend,
    Layout,
    Look,
    Observed,
    Samples,
    Since,
    StackDef,
    root_config,
)
from reconciler.backends.sandbox import SandboxCloud, SandboxSettings
from reconciler.clouds.settings import ProviderSettings, load_settings, load_state_backend
from reconciler.engine.backend_store import (
    aws_cli_target,
    item_key,
    lock_table_client,
    object_name,
    object_store,
)
from reconciler.engine.serving import ServingCheck, ServingChecker
from reconciler.engine.state_store import (
    DynamoDBRecords,
    FileRecords,
    ObjectRecords,
    Record,
    RecordStore,
    clear_destroyed,
)
from reconciler.errors import BusyError, PlanRefusedError, ReconcileError, TerraformError
from reconciler.files import find_executable, write_atomic, write_if_changed
from reconciler.paths import ServicePaths, ensure_private_dir
from reconciler.plan_summary import (
    ReplicaNote,
    StackSummary,
    one_line,
    summarize_stack,
    to_markdown,
)
from reconciler.policy import (
    DEFAULT_POLICY,
    MIXING_POLICIES,
    Decision,
    FailureKind,
    LaunchResult,
    Market,
    Observation,
    Replica,
    ReplicaState,
    Signals,
    decide,
)
from reconciler.policy.guardrails import Limits, apply_guardrails
from reconciler.policy.rollout import BY_HAND, ROLLING, current_runs, progress, register
from reconciler.rendering import render_tfvars, write_tfvars
from reconciler.solver_output import banner_discarded
from reconciler.spec import ReplicaPolicy, ServiceSpec
from reconciler.spec.fingerprint import fingerprint, replica_fingerprint, replica_part
from reconciler.spec.sidecar import REVIEW, SIDECAR_SUFFIX
from reconciler.stacks import FRONT, ManagedReplica, in_pools, split_pool, zone_regions
from reconciler.terraform.backend import StateBackend
from reconciler.terraform.runner import ROOT_CONFIG, RunnerConfig, TerraformRunner, runner_for
from reconciler.terraform.state import REMOTE, recover_killed_terraform, state_bytes

RunnerFactory = Callable[[str, Path, Path], TerraformRunner]
NOOP_MARKER = ".hedgeform-noop-plan"
# What the record keeps of versions no replica runs any more: the last few that were ready,
# so `hedgeform rollback` can return to one (a spec part is a few KB; the record, at most
# DynamoDB's 400 KB item).
KEEP_READY_SPECS = 5


@dataclass
class StackOutcome:
    stack: str
    summary: StackSummary | None = None
    changed: bool = False
    applied: bool = False
    error: TerraformError | None = None
    launch_failures: dict[str, tuple[FailureKind, str]] = field(default_factory=dict)
    plan_path: Path | None = None


@dataclass
class Convergence:
    """What `converge` did: every pass, the last serving check (None when it did not wait),
    how long it took (s), and whether the layout settled (module `settled`)."""

    results: list[PassResult]
    serving: ServingCheck | None
    elapsed_s: float
    settled: bool
    notes: tuple[str, ...] = ()  # said once by the serving check (an unreachable endpoint)

    @property
    def last(self) -> PassResult:
        return self.results[-1]


@dataclass(frozen=True)
class Seen:
    """What one pass observed (Reconciler._observe), handed from step to step."""

    record: Record
    now: float
    managed: list[ManagedReplica]
    orphans: list[str]  # stopped: unknown to Terraform
    adopted: list[ManagedReplica]  # unknown to Terraform, kept serving
    observed: Observation  # the replicas in the spec's zones: what the policy sees
    retiring: tuple[Replica, ...]  # replicas in zones the spec no longer names
    signals: Signals
    cursor: int  # the notice cursor to save
    samples: Samples  # request counter samples to save
    offline: bool  # Terraform state only (plan --render-only)
    lb_lost_members: bool = False  # the load balancer lost members Terraform set


def _summaries(outcomes: Sequence[StackOutcome]) -> list[StackSummary]:
    return [o.summary for o in outcomes if o.summary is not None]


@dataclass
class PassResult:
    decision: Decision
    outcomes: list[StackOutcome]
    plan_file: Path | None
    summary_line: str
    endpoint: str
    durations: dict[str, float] = field(default_factory=dict)
    orphans: list[str] = field(default_factory=list)  # stopped: unknown to Terraform
    adopted: list[str] = field(default_factory=list)  # unknown to Terraform, kept serving
    observed: Observation | None = None
    signals: Signals | None = None
    rendered: list[Path] = field(default_factory=list)  # files written (`--render-only`)
    rollout: str | None = None  # the rollout step (policy/rollout.py `progress`), if one runs
    # For review (engine/saved_plans.py): each stack's `show -json`, what the policy says of
    # each replica the plans change, the record the pass started from, and the record an
    # apply of these plans saves (None once recorded, or when nothing was decided).
    plans: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, ReplicaNote] = field(default_factory=dict)
    record_before: Record | None = None
    record_after: Record | None = None
    # The pass's id in the tick log: its `tick decided` record and its outcome share it
    # (engine/observability.py). "" when no decision was announced (nothing to apply).
    pass_id: str = ""

    @property
    def changed(self) -> bool:
        return any(o.changed for o in self.outcomes)

    @property
    def failed(self) -> list[StackOutcome]:
        return [o for o in self.outcomes if o.error is not None]


def default_runner_factory(root: Path, config: RunnerConfig) -> RunnerFactory:
    def make(stack: str, stack_dir: Path, module_dir: Path) -> TerraformRunner:
        return runner_for(root, stack_dir, module_dir, name=stack, config=config)

    return make


@contextlib.contextmanager
def service_lock(paths: ServicePaths, wait: bool = False) -> Iterator[None]:
    """One reconcile per service at a time (Terraform's own state lock guards each stack)."""
    ensure_private_dir(paths.state_dir.parent)
    ensure_private_dir(paths.state_dir)
    with open(paths.lock_file, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise BusyError(
                f"another reconcile of {paths.service} is running (lock {paths.lock_file}); "
                "it exits when done (apply, plan, rollback and destroy wait for it with "
                "--wait-lock)"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def sizing_note(policy: ReplicaPolicy, target: float | None, in_use: frozenset[str]) -> str:
    """One line: the requests/s per replica the policy sizes with, from a per-accelerator map."""
    where = (
        f"the smallest target of the accelerators in use ({', '.join(sorted(in_use))})"
        if in_use
        else "the smallest target of the map (no accelerator is chosen on this cloud)"
    )
    targets = ", ".join(f"{k}: {v:g}" for k, v in policy.target_qps_per_accelerator.items())
    return f"replicas sized at {target:g} requests/s each: {where}; targets {{{targets}}}"


def record_store(paths: ServicePaths, state_backend: StateBackend) -> RecordStore:
    """Where the service's record lives: beside a remote state (S3: the lock table; another
    host continues it), else `state/<service>/reconciler.json`. `status` reads it through
    this without a service file too."""
    if state_backend.kind == "s3":
        return DynamoDBRecords(
            lock_table_client(state_backend),
            state_backend.lock_table,
            item_key(state_backend, paths.service, "record"),
            aws_cli_target(state_backend),
        )
    if state_backend.remote:
        name = object_name(state_backend, paths.service, "record")
        return ObjectRecords(object_store(state_backend), name)
    return FileRecords(paths.memory_file)


class Reconciler:
    def __init__(
        self,
        paths: ServicePaths,
        spec: ServiceSpec,
        settings: SandboxSettings | None = None,
        *,
        policy: str = DEFAULT_POLICY,
        limits: Limits | None = None,
        runner_factory: RunnerFactory | None = None,
        clock: Callable[[], float] = time.time,
        backend: CloudBackend | None = None,
        cloud_settings: ProviderSettings | None = None,
        replace_all: bool = False,
        state_backend: StateBackend | None = None,
        update_mode: str = ROLLING,
        max_surge: int | None = None,
        spec_texts: Mapping[str, str] | None = None,
    ) -> None:
        self.paths = paths
        self.spec = spec
        # The texts `spec` was read from (spec.loading.read_service_texts), recorded as the
        # service's approved texts by each pass (state_store.Record.approved); None: unknown
        # (a spec built in code), the record's are kept.
        self.spec_texts = dict(spec_texts) if spec_texts is not None else None
        # How a new version of the spec rolls out (policy/rollout.py); used when one appears.
        self.update_mode = update_mode
        self.max_surge = max_surge
        self.settings = settings
        self.policy = policy
        self.limits = limits or Limits()
        self.clock = clock
        self.replace_all = replace_all  # apply a plan that replaces every replica of a stack
        # False: plan every stack with Terraform even when inputs match a plan that changed
        # nothing (`plan --out` keeps a saved plan of each stack).
        self.plan_cache = True
        self.state_backend = state_backend or load_state_backend(paths.settings_file)
        self.runner_factory = runner_factory or default_runner_factory(
            paths.root,
            RunnerConfig(
                lock_timeout_s=30,
                sigint_grace_s=10,
                state_backend=self.state_backend,
                service=paths.service,
            ),
        )
        self.cloud: CloudBackend = backend or self._backend(cloud_settings)
        # What the policy sizes with: one requests/s target per replica, from the spec's
        # per-accelerator map for the accelerators the stacks run (ReplicaPolicy.sized_for).
        rp = spec.service.replica_policy
        sized = rp if self.cloud.typed_pools else rp.sized_for(self.cloud.accelerators_in_use)
        self.policy_spec = (
            spec
            if sized is rp
            else replace(spec, service=replace(spec.service, replica_policy=sized))
        )
        # SkyServe fields read and ignored (spec/schema.py), then the cloud's own notes.
        self.notes = (
            spec.notes
            + self.cloud.accelerator_notes
            + (
                ()
                if sized is rp
                else (
                    sizing_note(rp, sized.target_qps_per_replica, self.cloud.accelerators_in_use),
                )
            )
        )
        if spec.mix is not None and not self.cloud.typed_pools:
            why = (
                f"policy {policy} does not run"
                if policy not in MIXING_POLICIES
                else "no region runs"
            )
            self.notes += (
                f"{paths.service}{SIDECAR_SUFFIX}: its mix settings are unused: {why} "
                "several GPU types as pools (docs/mix.md)",
            )
        self._runners: dict[str, TerraformRunner] = {}
        self._digests: dict[Path, bytes] = {}
        # Called with (pass id, decision) once an applying pass has planned a change, before
        # Terraform applies it: the tick log's `tick decided` record, written durably first
        # so a kill -9 mid-apply still leaves what was being done, and why. `decided_pass`:
        # the id it was last called with in the running pass (None: not called yet).
        self.on_decided: Callable[[str, Decision], None] | None = None
        self.decided_pass: str | None = None
        self.records: RecordStore = record_store(paths, self.state_backend)
        if self.state_backend.remote:
            # Observation reads each stack's state through Terraform (`state pull`), never
            # from a file: with a remote backend there is no local copy to read.
            for stack in self.stacks:
                REMOTE.register(self.paths.stack_dir(stack), self._puller(stack))

    def _puller(self, stack: str) -> Callable[[], bytes]:
        return lambda: self.runner(stack).state_pull()

    def forget_pulled_states(self) -> None:
        """Read remote states afresh from now on (a new pass, or after an apply)."""
        REMOTE.forget(self.paths.stack_dir(s) for s in self.stacks)

    def _backend(self, cloud_settings: ProviderSettings | None) -> CloudBackend:
        """`local` specs drive the sandbox; specs naming only aws/gcp/azure drive the clouds."""
        paths, spec, settings = self.paths, self.spec, self.settings
        # Several GPU types as pools of their own only for the policy that mixes them; the
        # others place by zone and run one type per region (the catalog's choice).
        several_types = self.policy in MIXING_POLICIES
        clouds = {loc.cloud or "?" for loc in spec.resources.locations}
        if "local" not in clouds:
            from reconciler.backends.clouds import ProviderCloud

            if cloud_settings is None:
                cloud_settings = load_settings(paths.settings_file)
            return ProviderCloud(paths, spec, cloud_settings, several_types=several_types)
        settings = settings or SandboxSettings.from_env()
        if not 0 < settings.lb_port < 65536:
            raise ReconcileError(f"load balancer port {settings.lb_port} is not in 1..65535")
        if clouds != {"local"}:
            raise ReconcileError(
                f"{paths.spec_file}: the spec mixes the local sandbox with "
                f"{', '.join(sorted(clouds - {'local'}))}; a service runs on the sandbox or "
                "on real clouds, not both"
            )
        if not zone_regions(spec):
            raise ReconcileError(
                f"{paths.spec_file}: the local sandbox needs zones: list them under "
                "resources.any_of with cloud: local, region and zone"
            )
        cloud = SandboxCloud(
            paths.sandbox_dir,
            settings,
            paths=paths,
            spec=spec,
            hedgeform_bin=self._hedgeform_bin(),
            several_types=several_types,
        )
        known = cloud.known_zones()
        unknown = sorted(set(zone_regions(spec)) - set(known)) if known else []
        if unknown:
            raise ReconcileError(
                f"{paths.spec_file}: {', '.join(unknown)} "
                f"{'is not a zone' if len(unknown) == 1 else 'are not zones'} of the local "
                f"sandbox; its zones are {', '.join(known)}"
            )
        return cloud

    # -- stacks ----------------------------------------------------------------------------

    @functools.cached_property
    def stacks(self) -> dict[str, StackDef]:
        return {s.name: s for s in self.cloud.stacks()}

    @property
    def stack_names(self) -> list[str]:
        return list(self.stacks)

    def runner(self, stack: str) -> TerraformRunner:
        if stack not in self._runners:
            self._runners[stack] = self.runner_factory(
                stack, self.paths.stack_dir(stack), self._module_dir(stack)
            )
        return self._runners[stack]

    def _module_dir(self, stack: str) -> Path:
        return self.paths.module_dir(self.stacks[stack].module)

    def managed(self) -> list[ManagedReplica]:
        return self.cloud.managed()

    # -- one pass --------------------------------------------------------------------------

    def run_pass(self, *, apply: bool, render_only: bool = False) -> PassResult:
        """One reconcile: observe, decide, render, plan, apply, record. `apply=False` plans
        and writes the plan diff but changes nothing; `render_only` writes each stack's
        tfvars and root configuration and stops there, without Terraform or any cloud API
        (replicas as Terraform state last recorded them)."""
        apply = apply and not render_only
        self.decided_pass = None
        t0 = time.perf_counter()
        self.forget_pulled_states()
        seen = self._observe(offline=render_only, consume=apply)
        durations = {"observe_s": time.perf_counter() - t0}
        decision, epoch = self._decide(seen)
        t1 = time.perf_counter()
        crash_point("before_plan")
        var_files = self._render(decision, seen, epoch)
        if render_only:
            durations["total_s"] = time.perf_counter() - t0
            return self._result(seen, decision, [StackOutcome(s) for s in var_files], durations,
                                rendered=self._write_root_configs(var_files))  # fmt: skip
        outcomes = self._plan_all(var_files)
        durations["plan_s"] = time.perf_counter() - t1
        rollout = progress(
            decision.memory, seen.observed.replicas, decision.target, self.paths.service
        )
        notes = replica_notes(seen, decision)
        plan_file = self._write_plan_doc(
            _summaries(outcomes), outcomes, seen.now, rollout, notes, decision.reasons
        )
        crash_point("before_apply")
        if apply:
            self._announce(decision, outcomes)
            t2 = time.perf_counter()
            clear_destroyed(self.paths.state_dir)  # it exists again: status stops saying so
            self._apply_all(outcomes, decision, seen)
            outcomes = self._apply_without_refused(outcomes, decision, seen, epoch)
            self._stop_terminated(seen.adopted, decision)
            durations["apply_s"] = time.perf_counter() - t2
            self._record(seen, decision, epoch, self._launch_results(decision, outcomes))
        durations["total_s"] = time.perf_counter() - t0
        result = self._result(
            seen, decision, outcomes, durations, plan_file=plan_file, rollout=rollout
        )
        result.plans = dict(getattr(self, "_plan_json", {}))
        result.notes = notes
        result.record_before = seen.record
        result.pass_id = self.decided_pass or ""
        if not apply:
            result.record_after = self._pending_record(seen, decision, epoch, ())
        return result

    def _announce(self, decision: Decision, outcomes: Sequence[StackOutcome]) -> None:
        """Hand a decision about to change something to `on_decided` under a new pass id, before
        any Terraform apply; a pass that changes nothing announces nothing."""
        if self.on_decided is None:
            return
        if not (decision.launches or decision.terminations or any(o.changed for o in outcomes)):
            return
        self.decided_pass = uuid.uuid4().hex[:12]
        self.on_decided(self.decided_pass, decision)

    def _observe(self, *, offline: bool, consume: bool) -> Seen:
        """What the pass starts from: the record and the backend's observation (the managed
        replicas with their states, orphans adopted or to stop, notices, the request rate).
        `offline` reads Terraform state only (no cloud API, nothing started or stopped).

        Orphans are looked for only once no Terraform of a killed pass holds a stack's state
        lock (one may still be applying, about to record a replica; the plan would wait for it
        with `-lock-timeout` anyway). Held means an fcntl lock a live process holds
        (terraform/state.py), not the `.terraform.tfstate.lock.info` a kill -9 leaves behind."""
        record = self.records.load()
        now = self.clock()
        crash_point("before_observe")
        look = Look.OFFLINE if offline else Look.APPLY if consume else Look.PLAN
        stack_dirs = [self.paths.stack_dir(s) for s in self.stack_names]
        collect = not offline and not recover_killed_terraform(stack_dirs)
        since = Since(
            record.notice_cursor,
            record.request_samples,
            frozenset(p[0] for p in record.memory.recent_preemptions),
            record.version_specs,
        )
        got = self.cloud.observe(self.spec, since, now, look, collect=collect)
        orphans = list(got.orphans) if consume else []  # plan only reports what apply stops
        if orphans:
            self.cloud.stop(orphans)
        # With several GPU types a replica's place is its (zone, type) pool (stacks.pool_name),
        # and so is the place of a notice about it.
        observed = in_pools(got.observation, (*got.managed, *got.adopted))
        pools = {r.id: r.zone for r in observed.replicas}
        signals = Signals(
            qps=got.qps,
            qps_at=now if got.qps is not None else None,
            notices=tuple(replace(n, zone=pools.get(n.replica_id, n.zone)) for n in got.notices),
            launch_results=record.launch_results,
        )
        zones = {o.zone for o in observed.zones}
        retiring = tuple(r for r in observed.replicas if r.zone not in zones)
        observed = replace(
            observed, replicas=tuple(r for r in observed.replicas if r.zone in zones)
        )
        return Seen(record, now, list(got.managed), orphans, list(got.adopted), observed,
                    retiring, signals, got.notice_cursor, got.request_samples, offline,
                    got.lb_lost_members)  # fmt: skip

    def _decide(self, seen: Seen) -> tuple[Decision, int]:
        """The policy's decision (pure) within the guardrails, and the load balancer epoch
        (bumped when HAProxy lost the members Terraform set, so they are added again)."""
        memory = seen.record.memory
        top = max((replica_seq(m.id) for m in seen.managed), default=-1)
        if memory.launch_seq <= top:  # a crashed pass launched replicas it did not record
            memory = replace(memory, launch_seq=top + 1)
        note = None
        if self.cloud.carries_versions:
            memory, note = register(
                memory,
                fingerprint(self.spec),
                replica_fingerprint(self.spec),
                seen.now,
                mode=self.update_mode,
                max_surge=self.max_surge,
            )
        with banner_discarded():  # the mix's solver (HiGHS) greets on fd 1 once per process
            decision = decide(
                self.policy_spec, seen.observed, seen.signals, memory, seen.now, self.policy
            )
        decision = apply_guardrails(decision, seen.observed, self.policy_spec, self.limits)
        if note is not None:
            decision = replace(decision, reasons=(note, *decision.reasons))
        epoch = seen.record.lb_epoch + (1 if seen.lb_lost_members else 0)
        return decision, epoch

    def _record(
        self, seen: Seen, decision: Decision, epoch: int, results: tuple[LaunchResult, ...]
    ) -> None:
        crash_point("before_record")
        self.records.save(self._pending_record(seen, decision, epoch, results))

    def _pending_record(
        self, seen: Seen, decision: Decision, epoch: int, results: tuple[LaunchResult, ...]
    ) -> Record:
        """The record a pass saves once it applied `decision`."""
        return Record(
            memory=decision.memory,
            notice_cursor=seen.cursor,
            launch_results=results,
            request_samples=seen.samples,
            last_tick=seen.now,
            lb_epoch=epoch,
            version_specs=self._version_specs(seen, decision),
            approved=self._approved(seen.record),
        )

    def _approved(self, record: Record) -> dict[str, str]:
        """The texts a pass records as reviewed (engine/review.py): its spec's, under
        `changes: review` only (a record need not keep a service file it never runs from);
        the record's own when the spec was built in code."""
        if self.spec_texts is None:
            return dict(record.approved)
        return dict(self.spec_texts) if self.spec.changes == REVIEW else {}

    def _result(
        self,
        seen: Seen,
        decision: Decision,
        outcomes: list[StackOutcome],
        durations: dict[str, float],
        *,
        plan_file: Path | None = None,
        rendered: list[Path] | None = None,
        rollout: str | None = None,
    ) -> PassResult:
        summary = (
            "rendered only: no Terraform command ran"
            if rendered is not None
            else one_line(_summaries(outcomes))
        )
        return PassResult(
            decision=decision,
            outcomes=outcomes,
            plan_file=plan_file,
            summary_line=summary,
            endpoint=self.cloud.endpoint(),
            durations=durations,
            orphans=seen.orphans,
            adopted=[m.id for m in seen.adopted],
            observed=seen.observed,
            signals=seen.signals,
            rendered=rendered or [],
            rollout=rollout,
        )

    def converge(
        self,
        timeout_s: float,
        on_pass: Callable[[PassResult], None] = lambda _: None,
        poll_s: float = 0.25,
    ) -> Convergence:
        """Reconcile until the endpoint serves: no replica starting, the target group holding
        exactly the ready replicas (at least the target), and requests through the load
        balancer to the probe path answered 200 (engine/serving.py). Between passes, wait for
        launched replicas to pass readiness (cheap probes) rather than planning again right
        away. Retrying spot in full zones is the periodic loop's job, not a reason to keep
        going. `timeout_s` 0: one pass, no waiting and no serving check."""
        start = time.monotonic()
        deadline = start + timeout_s
        checker = ServingChecker(self, self.spec) if timeout_s > 0 else None
        results: list[PassResult] = []
        while True:
            result = self.run_pass(apply=True)
            results.append(result)
            on_pass(result)
            if result.failed or checker is None:
                return Convergence(results, None, time.monotonic() - start, False)
            settled = self.settled(result)
            if settled or time.monotonic() > deadline:
                check = self._serving(checker, result)
                if check.serving or time.monotonic() > deadline:
                    elapsed = time.monotonic() - start
                    return Convergence(results, check, elapsed, settled, tuple(checker.notes))
            poll_s = max(poll_s, self.cloud.poll_s)
            if settled or not result.changed:
                # Nothing launched to wait for (the LB's own check has not passed a member yet,
                # a failing replica's threshold is still running): look again in a second
                # instead of planning pass after pass.
                time.sleep(max(0.0, min(max(1.0, poll_s), deadline - time.monotonic())))
            while time.monotonic() < deadline and self._starting():
                time.sleep(poll_s)

    def _serving(self, checker: ServingChecker, result: PassResult) -> ServingCheck:
        if result.decision.target == 0 and not result.decision.lb_members:
            return ServingCheck(True, "policy", "target 0: no replica should serve")
        return checker.check()

    def look(self) -> Observed:
        """Each replica's state and the load balancer's members now (`Look.STATES`: no
        notice consumed, nothing started or stopped)."""
        record = self.records.load()
        since = Since(
            preempted=frozenset(p[0] for p in record.memory.recent_preemptions),
            version_specs=record.version_specs,
        )
        self.forget_pulled_states()
        return self.cloud.observe(self.spec, since, self.clock(), Look.STATES)

    def current_replicas(self) -> list[Replica]:
        return sorted(self.look().observation.replicas, key=lambda r: r.id)

    def endpoint(self) -> str:
        return self.cloud.endpoint()

    def lb_members(self) -> set[str] | None:
        """The replicas the load balancer serves from now; None when unknown."""
        members = self.look().lb_members
        return None if members is None else set(members)

    def _starting(self) -> bool:
        return any(r.state is ReplicaState.STARTING for r in self.current_replicas())

    def settled(self, result: PassResult) -> bool:
        """No replica starting, and the target group holds exactly the ready replicas (those
        under a preemption warning excluded), at least the target."""
        now = self.look()
        replicas = now.observation.replicas
        if any(r.state is ReplicaState.STARTING for r in replicas):
            return False
        warned = {rid for rid, _ in self.records.load().memory.warned}
        ready = {r.id for r in replicas if r.state is ReplicaState.READY} - warned
        return ready == (now.lb_members or set()) and len(ready) >= result.decision.target

    def _render(self, decision: Decision, seen: Seen, epoch: int) -> dict[str, Path]:
        """Each stack's tfvars for the replicas to keep and the load balancer's members.

        Replicas in zones the spec no longer names (`seen.retiring`) are not the policy's:
        they keep serving, in the load balancer, until the policy's own members reach the
        target (add before remove); then their stacks render empty and Terraform destroys
        them, after the front stack took them out of the load balancer."""
        stopped = {t.replica_id for t in decision.terminations}
        hold = len(decision.lb_members) < decision.target
        retiring = {r.id: r for r in seen.retiring}
        version_of = {r.id: r.version for r in (*seen.observed.replicas, *seen.retiring)}
        kept: list[ManagedReplica] = [
            ManagedReplica(
                m.id,
                m.zone,
                Market(m.market),
                stack=m.stack,
                version=version_of.get(m.id, 1),
                accelerator=m.accelerator,
            )
            for m in seen.managed
            if m.id not in stopped and not m.tainted and (hold or m.id not in retiring)
        ]
        kept += [
            ManagedReplica(x.replica_id, zone, x.market, version=x.version, accelerator=accelerator)
            for x in decision.launches
            for zone, accelerator in (split_pool(x.zone),)
        ]
        kept_ids = {r.id for r in kept}
        serving = [rid for rid, r in retiring.items() if hold and r.state is ReplicaState.READY]
        members = sorted(m for m in [*decision.lb_members, *serving] if m in kept_ids)
        draining = {rid for rid, _ in decision.memory.warned} | {
            r.id for r in (*seen.observed.replicas, *seen.retiring) if r.state.terminal
        }
        layout = Layout(
            tuple(kept),
            tuple(members),
            epoch,
            frozenset(draining),
            self._version_specs(seen, decision),
        )
        files: dict[str, Path] = {}
        for rendered in self.cloud.render(layout, seen.now):
            stack_dir = self.paths.stack_dir(rendered.stack.name)
            variables = render_tfvars(rendered.template, rendered.context)
            files[rendered.stack.name] = write_tfvars(stack_dir, variables)
            for name, text in rendered.root_files.items():
                write_if_changed(stack_dir / name, text)
        return files

    def _version_specs(self, seen: Seen, decision: Decision) -> dict[int, dict[str, Any]]:
        """What each version in use runs: the record's, and the current spec's for the
        current version when it is new. Kept: the versions some replica, the current or the
        stable version carry, and the last KEEP_READY_SPECS that were ready (what `hedgeform
        rollback` may return to)."""
        specs = {k: dict(v) for k, v in seen.record.version_specs.items()}
        memory = decision.memory
        specs.setdefault(current_runs(memory), replica_part(self.spec))
        stable = next((v.runs for v in memory.versions if v.number == memory.stable_version), 1)
        in_use = {r.version for r in (*seen.observed.replicas, *seen.retiring)}
        in_use |= {x.version for x in decision.launches} | {current_runs(memory), stable}
        # Left by hand: it was fine, and `hedgeform rollback` may return to it.
        ready = [
            v.runs
            for v in memory.versions
            if v.state == "ready" or (v.state == "failed" and v.reason == BY_HAND)
        ]
        in_use |= set(ready[-KEEP_READY_SPECS:])
        return {k: v for k, v in specs.items() if k in in_use}

    def render_for_destroy(self, stacks: Sequence[str]) -> None:
        """Write tfvars and root configuration for `stacks` as if they held nothing: with a
        remote state, a host that never applied the service (the old one is gone) has none
        of a stack's files, and Terraform needs its variables to run `destroy`, which then
        removes everything the state holds, whatever the variables say."""
        wanted = set(stacks)
        for rendered in self.cloud.render(Layout((), ()), self.clock()):
            if rendered.stack.name not in wanted:
                continue
            stack_dir = self.paths.stack_dir(rendered.stack.name)
            variables = render_tfvars(rendered.template, rendered.context)
            var_file = write_tfvars(stack_dir, variables)
            for name, text in rendered.root_files.items():
                write_if_changed(stack_dir / name, text)
            self._write_root_configs({rendered.stack.name: var_file})

    def _write_root_configs(self, var_files: Mapping[str, Path]) -> list[Path]:
        """What Terraform would read, for review: the root configuration next to each tfvars
        (the runner writes the same file before `init`)."""
        written: list[Path] = []
        for stack, var_file in sorted(var_files.items()):
            stack_dir = self.paths.stack_dir(stack)
            path = stack_dir / ROOT_CONFIG
            backend = self.state_backend.block(self.paths.service, stack)
            text = root_config(stack, stack_dir, self._module_dir(stack), var_file, backend)
            write_if_changed(path, text)
            extra = sorted(p for p in stack_dir.glob("*.tf.json") if p.name != ROOT_CONFIG)
            written += [var_file, path, *extra]
        return written

    def _plan_all(self, var_files: Mapping[str, Path]) -> list[StackOutcome]:
        def plan(stack: str) -> StackOutcome:
            outcome = StackOutcome(stack)
            stack_dir = self.paths.stack_dir(stack)
            fingerprint = self._fingerprint(stack_dir)
            marker = stack_dir / NOOP_MARKER
            if not (self.cloud.plan_cache and self.plan_cache):
                fingerprint = ""
            if fingerprint and marker.exists() and marker.read_text() == fingerprint:
                outcome.summary = summarize_stack(stack, {})
                return outcome  # same inputs, module and state as a plan that changed nothing
            marker.unlink(missing_ok=True)
            try:
                result = self.runner(stack).plan(var_files[stack])
            except TerraformError as exc:
                outcome.error = exc
                return outcome
            outcome.changed = result.changed
            outcome.plan_path = result.plan_path
            outcome.summary = summarize_stack(stack, result.json)
            self._plan_json[stack] = result.json
            if outcome.summary.replaces_every_replica and not self.replace_all:
                outcome.error = replace_all_refused(stack, outcome.summary)
                return outcome
            if not result.changed and fingerprint:
                write_atomic(marker, fingerprint)
            return outcome

        self._plan_json: dict[str, Any] = {}
        with ThreadPoolExecutor(max_workers=len(var_files)) as pool:
            return list(pool.map(plan, sorted(var_files, key=lambda s: (s != FRONT, s))))

    def _stop_terminated(self, adopted: Sequence[ManagedReplica], decision: Decision) -> None:
        """An adopted replica the policy terminates is in no Terraform state to destroy it
        from: stop it directly, after the apply took it out of the load balancer."""
        terminated = {t.replica_id for t in decision.terminations}
        ended = [m.id for m in adopted if m.id in terminated]
        if ended:
            self.cloud.stop(ended)

    def cancel(self) -> None:
        """Stop any Terraform command of this reconciler (and the next ones): for shutdown."""
        for runner in list(self._runners.values()):
            runner.cancel()

    def _fingerprint(self, stack_dir: Path) -> str:
        """Everything a local-module plan depends on. The local module holds only
        null_resources, which have nothing to refresh, so equal fingerprints mean an equal
        (empty) plan; cloud modules are always planned (`plan_cache` False), since the cloud
        can drift."""
        if not self.cloud.plan_cache:
            return ""
        digest = hashlib.sha256()
        tfvars = stack_dir / "terraform.tfvars.json"
        digest.update(tfvars.read_bytes() if tfvars.exists() else b"-")
        digest.update(state_bytes(stack_dir) or b"-")
        digest.update(self._module_digest(self._module_dir(stack_dir.name)))
        return digest.hexdigest()

    def _module_digest(self, module: Path) -> bytes:
        """A module's files, hashed once per Reconciler."""
        if module not in self._digests:
            digest = hashlib.sha256()
            for path in sorted(module.rglob("*")):
                if path.is_file() and ".terraform" not in path.parts:
                    digest.update(str(path.relative_to(module)).encode() + path.read_bytes())
            self._digests[module] = digest.digest()
        return self._digests[module]

    def _apply_all(self, outcomes: Sequence[StackOutcome], decision: Decision, seen: Seen) -> None:
        def apply(outcome: StackOutcome) -> None:
            if outcome.error is not None or not outcome.changed or outcome.plan_path is None:
                return
            runner = self.runner(outcome.stack)
            stack_dir = self.paths.stack_dir(outcome.stack)
            try:
                try:
                    runner.apply_saved_plan(outcome.plan_path)
                finally:
                    REMOTE.forget([stack_dir])  # the state changed, or partly
                outcome.applied = True
                if self.cloud.plan_cache:
                    # A saved plan applied without error leaves state matching these inputs:
                    # the next plan of them would be empty (null resources do not drift).
                    write_atomic(stack_dir / NOOP_MARKER, self._fingerprint(stack_dir))
            except TerraformError as exc:
                failures, other = self.cloud.launch_failures(
                    outcome.stack, exc.detail or exc.message, zones
                )
                outcome.launch_failures = failures
                # Capacity errors are the spot market talking, not a broken stack: the
                # placer learns from them next tick. Anything else is reported.
                if (
                    other
                    or not failures
                    or any(k is not FailureKind.CAPACITY for k, _ in failures.values())
                ):
                    outcome.error = exc

        crash_point("during_apply", delay_s=0.5)
        zones = {m.id: m.zone for m in seen.managed}
        zones.update({x.replica_id: split_pool(x.zone)[0] for x in decision.launches})
        front = [o for o in outcomes if o.stack == FRONT]
        regions = [o for o in outcomes if o.stack != FRONT]
        for o in front:
            apply(o)
        with ThreadPoolExecutor(max_workers=max(1, len(regions))) as pool:
            list(pool.map(apply, regions))

    def _apply_without_refused(
        self, outcomes: list[StackOutcome], decision: Decision, seen: Seen, epoch: int
    ) -> list[StackOutcome]:
        """Apply again, at once, the stacks whose apply the spot market refused a launch in,
        with those launches left out.

        Terraform orders an apply by resource, not by instance: one refused instance of the
        replicas' `for_each` resource stops everything that depends on that resource, so the
        load balancer registrations of the replicas that did launch (the on-demand cover
        among them) would wait for an apply that no spot refusal spoils, and while zones keep
        refusing that never comes. The second plan renders the same layout minus the refused
        launches; the placer learns of them on the next tick as before. Returns the outcomes
        with each such stack's second plan and apply in place of its first, keeping the first
        apply's launch failures."""
        refused = {
            o.stack: set(o.launch_failures)
            for o in outcomes
            if o.launch_failures and o.error is None and o.stack != FRONT
        }
        if not refused:
            return outcomes
        left_out = set().union(*refused.values())
        kept = tuple(x for x in decision.launches if x.replica_id not in left_out)
        retry = replace(decision, launches=kept)
        var_files = self._render(retry, seen, epoch)
        again = {o.stack: o for o in self._plan_all({s: var_files[s] for s in refused})}
        self._apply_all(list(again.values()), retry, seen)
        for stack, outcome in again.items():
            first = next(o for o in outcomes if o.stack == stack)
            outcome.launch_failures = {**first.launch_failures, **outcome.launch_failures}
            outcome.summary = first.summary  # the plan reviewed (the plan doc) and logged
        return [again.get(o.stack, o) for o in outcomes]

    def _launch_results(
        self, decision: Decision, outcomes: Sequence[StackOutcome]
    ) -> tuple[LaunchResult, ...]:
        """What became of each launch: created, or failed with Terraform's reason."""
        if not decision.launches:
            return ()
        present = {m.id: m for m in self.managed()}
        failures: dict[str, tuple[FailureKind, str]] = {}
        for o in outcomes:
            failures.update(o.launch_failures)
        results = []
        for launch in decision.launches:
            m = present.get(launch.replica_id)
            if m is not None and not m.tainted:
                results.append(LaunchResult(launch.zone, launch.market, ok=True))
                continue
            kind, message = failures.get(
                launch.replica_id, (FailureKind.OTHER, "launch failed (see the apply output)")
            )
            results.append(LaunchResult(launch.zone, launch.market, False, kind, message))
        return tuple(results)

    def _write_plan_doc(
        self,
        summaries: list[StackSummary],
        outcomes: Sequence[StackOutcome],
        now: float,
        rollout: str | None = None,
        notes: Mapping[str, ReplicaNote] | None = None,
        reasons: Sequence[str] = (),
    ) -> Path | None:
        if not any(o.changed for o in outcomes):
            return None
        stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        plans = getattr(self, "_plan_json", {})
        text = to_markdown(
            self.spec.name,
            stamp,
            summaries,
            plans,
            rollout,
            notes=notes,
            reasons=reasons,
            aliases=self.path_aliases(),
        )
        self.paths.plans_dir.mkdir(parents=True, exist_ok=True)
        path = self.paths.plans_dir / f"{stamp}.md"
        write_atomic(path, text)
        return path

    def path_aliases(self) -> dict[str, str]:
        """Absolute paths a review document names by a short alias instead (the project
        root; the sandbox's `hedgeform` executable), so it reads the same on every host."""
        aliases = {str(self.paths.root.absolute()): "<root>"}
        binary = getattr(self.cloud, "hedgeform_bin", None)
        if binary is not None:
            aliases[str(binary)] = "<hedgeform>"
        return aliases

    def _hedgeform_bin(self) -> Path:
        """The executable the provisioners call: this interpreter's `hedgeform`."""
        found = find_executable("hedgeform")
        if found is None:
            raise ReconcileError("cannot find the `hedgeform` executable: run `make setup`")
        return found.resolve()


def replace_all_refused(stack: str, summary: StackSummary) -> PlanRefusedError:
    """The one line that refuses a plan replacing every replica of `stack` at once."""
    n = len(summary.replicas_replaced)
    return PlanRefusedError(
        stack,
        "plan",
        f"refused: it replaces all {n} replica(s) at once ({', '.join(summary.replicas_replaced)})"
        " because their image, instance type or scripts changed, and the region would serve "
        "nothing until the new ones start; to accept that, apply with --replace-all (with "
        "other regions serving, or in a quiet hour)",
    )


def replica_notes(seen: Seen, decision: Decision) -> dict[str, ReplicaNote]:
    """What the policy says of each replica it launches or stops, by replica id (for the
    review document): its zone, market, GPU type (of several), version and reason."""
    known = {r.id: r for r in (*seen.observed.replicas, *seen.retiring)}
    types = {m.id: m.accelerator for m in (*seen.managed, *seen.adopted)}
    notes: dict[str, ReplicaNote] = {}
    for x in decision.launches:
        zone, accelerator = split_pool(x.zone)
        notes[x.replica_id] = ReplicaNote(zone, x.market.value, accelerator, x.version, x.reason)
    for t in decision.terminations:
        zone, accelerator = split_pool(t.zone)
        version = known[t.replica_id].version if t.replica_id in known else None
        accelerator = accelerator or types.get(t.replica_id, "")
        notes[t.replica_id] = ReplicaNote(zone, t.market.value, accelerator, version, t.reason)
    for rid, r in known.items():  # stopped because its zone left the service file
        if rid not in notes and r in seen.retiring:
            zone, accelerator = split_pool(r.zone)
            notes[rid] = ReplicaNote(
                zone,
                r.market.value,
                accelerator or types.get(rid, ""),
                r.version,
                "its zone is no longer in the service file",
            )
    return notes


def replica_seq(replica_id: str) -> int:
    """The launch number at the end of a replica id (`local-1a-spot-12` -> 12)."""
    tail = replica_id.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def crash_point(name: str, delay_s: float = 0.0) -> None:
    """Fault injection for the crash-safety tests: `HEDGEFORM_CRASH_AT=<name>` kills this
    process with SIGKILL here (after `delay_s`, from a thread, for `during_*`). Points: a
    pass's `before_observe`, `before_plan`, `before_apply`, `during_apply`, `before_record`;
    `destroy`'s `before_destroy` (first stack), `before_destroy:<stack>`, `during_destroy`,
    `before_teardown` (engine/commands.py)."""
    if os.environ.get("HEDGEFORM_CRASH_AT") != name:
        return
    import signal
    import threading

    def die() -> None:
        time.sleep(delay_s)
        os.kill(os.getpid(), signal.SIGKILL)

    if delay_s:
        threading.Thread(target=die, daemon=True).start()
    else:
        die()
