"""`hedgeform plan|apply|status|destroy|run SERVICE`: the local sandbox cloud, or AWS / GCP /
Azure region stacks when the spec names them (backends/base.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path

import click

from reconciler.backends.sandbox import (
    SandboxCloud,
    SandboxSettings,
    copied_state_message,
    started_elsewhere,
    uses_sandbox,
)
from reconciler.click_types import Finite, Whole
from reconciler.clouds.settings import load_state_backend
from reconciler.engine import teardown
from reconciler.engine.lease import LEASE_DURATION_S
from reconciler.engine.reconcile import (
    PassResult,
    Reconciler,
    crash_point,
    record_store,
    replica_seq,
    service_lock,
)
from reconciler.engine.review import held_change
from reconciler.engine.review import mode as review_mode
from reconciler.engine.state_store import (
    FileRecords,
    Record,
    destroy_started_at,
    destroyed_at,
    load_record,
    mark_destroyed,
    mark_destroying,
)
from reconciler.engine.status_view import StatusView, from_state, is_service_dir
from reconciler.errors import (
    HedgeformError,
    InputError,
    ReconcileError,
    SpecError,
    StalePlanError,
    TerraformError,
)
from reconciler.paths import ServicePaths
from reconciler.plan_summary import FORMATS
from reconciler.policy import POLICIES, Decision, Memory, ReplicaState
from reconciler.policy.rollout import ROLLING, UPDATE_MODES, current_version, surge_refusal
from reconciler.sandbox import market_daemon, replicas
from reconciler.sandbox.haproxy import HAProxyLB
from reconciler.spec.envs import require_environment
from reconciler.spec.loading import load_spec_texts, read_service_texts
from reconciler.spec.model import ReadinessProbe
from reconciler.spec.sidecar import REVIEW
from reconciler.stacks import in_pools
from reconciler.terraform.backend import StateBackend
from reconciler.terraform.runner import DEFAULT_VARS
from reconciler.terraform.state import wait_for_state_locks

EXIT_NOT_SERVING = 3  # `apply --wait`: still converging when --timeout passed
EXIT_STALE_PLAN = StalePlanError.exit_code  # `apply --plan`: the reviewed plan is stale (4)


def _reconciler(
    service: str,
    policy: str,
    lb_port: int | None,
    root: Path | None,
    *,
    check_env: bool = True,
    replace_all: bool = False,
    update_mode: str = ROLLING,
    max_surge: int | None = None,
    texts: Mapping[str, str] | None = None,
) -> Reconciler:
    """The service's reconciler. `check_env` (every command that plans or applies) first
    refuses, in one line, a `null` env the environment does not set, before any cloud or
    Terraform is touched; `status` and `destroy` do without it. `texts`: run the spec these
    texts hold (`read_service_texts`' shape) instead of the service file's (a `review`
    loop's approved spec, engine/review.py)."""
    paths = ServicePaths.for_service(service, **({"root": root} if root else {}))
    if texts is None:
        texts = read_service_texts(paths.spec_file)
    spec = load_spec_texts(paths.spec_file, texts)
    if check_env:
        shown = paths.spec_file
        with contextlib.suppress(ValueError):
            shown = paths.spec_file.relative_to(paths.root)
        require_environment(spec, os.environ, str(shown))
    refusal = surge_refusal(update_mode, max_surge, spec.service.replica_policy.num_overprovision)
    if refusal is not None:
        raise InputError(refusal)
    settings = None  # the sandbox's HEDGEFORM_* settings mean nothing to a cloud service
    if uses_sandbox(spec):
        settings = SandboxSettings.from_env(lb_port=lb_port)  # type: ignore[arg-type]
    return Reconciler(
        paths,
        spec,
        settings,
        policy=policy,
        replace_all=replace_all,
        update_mode=update_mode,
        max_surge=max_surge,
        spec_texts=texts,
    )


def _reading_reconciler(service: str, lb_port: int | None, root: Path | None) -> Reconciler:
    """The reconciler `status`, `logs` and `cost` read through: the service file's; when the
    file no longer loads (or is gone) and the service's record keeps its reviewed texts
    (`changes: review`, engine/review.py), those, after a warning line on stderr: the loop
    runs them, and an operator needs to see it most when the file is broken."""
    try:
        return _reconciler(service, "hedgeform", lb_port, root, check_env=False)
    except SpecError as exc:
        paths = ServicePaths.for_service(service, **({"root": root} if root else {}))
        try:
            approved = load_record(paths.memory_file).approved
        except HedgeformError:
            approved = {}
        if not approved:
            raise
        click.echo(
            f"warning: {str(exc).splitlines()[0]}; showing the reviewed version the record "
            "keeps (changes: review)",
            err=True,
        )
        return _reconciler(service, "hedgeform", lb_port, root, check_env=False, texts=approved)


def _file_texts(rec: Reconciler) -> dict[str, str] | None:
    """The service file's texts now (None: unreadable), for a held change's line: `rec` may
    run the reviewed texts instead (`_reading_reconciler`)."""
    try:
        return read_service_texts(rec.paths.spec_file)
    except HedgeformError:
        return None


def _endpoint(rec: Reconciler) -> str:
    """The endpoint to show: on the sandbox, the load balancer actually running (whatever
    port the settings name now), the settings' port only when none runs."""
    if isinstance(rec.cloud, SandboxCloud):
        return rec.cloud.running_endpoint() or f"{rec.cloud.endpoint()} (not running)"
    return rec.cloud.endpoint()


class Seconds(Finite):
    """A finite number of seconds in a range (`Finite`)."""

    name = "seconds"


def _fail(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc))


service_arg = click.argument("service")
policy_opt = click.option(
    "--policy",
    type=click.Choice(sorted(POLICIES)),
    default="hedgeform",
    show_default=True,
    help="Placement policy.",
)
port_opt = click.option(
    "--lb-port",
    type=Whole(1, 65535),
    default=None,
    help="Load balancer port [env HEDGEFORM_LB_PORT; 30001].",
)
replace_all_opt = click.option(
    "--replace-all",
    is_flag=True,
    help="Apply a plan that replaces every replica of a region at once (a changed image, "
    "instance type or script); without it such a plan is refused in one line.",
)
mode_opt = click.option(
    "--mode",
    "update_mode",
    type=click.Choice(UPDATE_MODES),
    default=ROLLING,
    show_default=True,
    help="How a changed service file rolls out (as `sky serve update --mode`): rolling stops "
    "an old replica each time a new one is ready; blue_green keeps the old version serving "
    "until the new one alone carries the target. Used when the file changed.",
)
max_surge_opt = click.option(
    "--max-surge",
    type=Whole(0, 1000),
    default=None,
    help="Replicas a rollout may run beyond target + num_overprovision (default: 25% of "
    "the target, at least 1, when rolling; a whole second fleet for blue_green).",
)
root_opt = click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    hidden=True,
    help="Project root (tests).",
)


def _print_pass(result: PassResult, verbose: bool = True) -> None:
    for outcome in result.outcomes:
        for rid, (kind, message) in sorted(outcome.launch_failures.items()):
            click.echo(f"launch {rid} failed ({kind.value}): {message}")
    for message in dict.fromkeys(str(o.error) for o in result.failed):
        click.echo(f"error: {message}", err=True)
    if verbose:
        click.echo(result.summary_line)
        if result.rollout:
            click.echo(f"Update: {result.rollout}")
        if result.plan_file:
            click.echo(f"plan diff: {result.plan_file}")
    if result.orphans:
        click.echo(
            f"warning: stopped replica processes unknown to Terraform: {', '.join(result.orphans)}",
            err=True,
        )
    if result.adopted:
        click.echo(
            f"warning: replicas running without Terraform state, taken back into their "
            f"stacks: {', '.join(result.adopted)}",
            err=True,
        )


@click.command("plan")
@service_arg
@policy_opt
@port_opt
@root_opt
@click.option(
    "--render-only",
    is_flag=True,
    help="Write each stack's terraform.tfvars.json and root configuration for review, and "
    "stop: no Terraform command and no cloud API call.",
)
@click.option("--wait-lock", is_flag=True, help="Wait for a running reconcile instead of exiting.")
@click.option(
    "--out",
    "out",
    type=click.Path(path_type=Path),
    default=None,
    metavar="DIR",
    help="Keep the plans for review and for `apply --plan DIR`: per stack DIR/STACK/tfplan "
    "(the saved plan) and DIR/STACK/plan.json (its show -json, sensitive values masked), "
    "plus DIR/plan.md (one pull-request comment, the same bytes for the same plan) and "
    "DIR/manifest.json (each stack's state lineage and serial, the sha256 of the service, "
    "settings and sidecar files, "
    "the version, the policy). DIR is created when missing. tfplan holds variable values "
    "in clear, as Terraform's plans do: post plan.md, keep DIR private.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="github",
    show_default=True,
    help="Markup of DIR/plan.md: GitHub- or GitLab-flavoured markdown, or plain text.",
)
def plan(
    service: str,
    policy: str,
    lb_port: int | None,
    root: Path | None,
    render_only: bool,
    wait_lock: bool,
    out: Path | None,
    fmt: str,
) -> None:
    """Decide and plan every stack of SERVICE without changing anything.

    Writes a markdown plan diff (counts of create/update/delete by stack, market, GPU type
    and version; each replica's change with the policy's reason; a warning block when
    anything is destroyed or replaced; load-balancer membership changes; the raw plan
    collapsed) to state/SERVICE/plans/<timestamp>.md for review. With --out DIR the plans
    themselves are kept for review and `hedgeform apply SERVICE --plan DIR`. With
    --render-only the decision is made from Terraform state alone (replicas taken as ready,
    request rate held, catalog prices) and only the files Terraform would read are written.

    Exit codes: 0 planned; 1 an error (a stack failed, bad input).
    """
    from reconciler.engine.saved_plans import out_dir, write_plan_dir

    written: list[Path] = []
    try:
        if out is not None and render_only:
            raise InputError("--out keeps Terraform's plans: it cannot go with --render-only")
        source = click.get_current_context().get_parameter_source("fmt")
        if out is None and source is click.core.ParameterSource.COMMANDLINE:
            raise InputError("--format shapes the review document of --out DIR: give --out too")
        rec = _reconciler(service, policy, lb_port, root)
        if out is not None:
            out_dir(out, rec.paths.state_dir.parent)  # a bad DIR is refused before planning
        rec.plan_cache = out is None  # --out keeps a saved plan of every stack
        with service_lock(rec.paths, wait=wait_lock):
            result = rec.run_pass(apply=False, render_only=render_only)
            if out is not None and not result.failed:
                written = write_plan_dir(rec, result, out, fmt)
    except HedgeformError as exc:
        raise _fail(exc) from None
    if render_only:
        for path in result.rendered:
            click.echo(f"wrote {path}")
    if written:
        click.echo(f"review: {written[0]} (apply it with `hedgeform apply {service} --plan {out}`)")
    _print_pass(result)
    for note in rec.notes:
        click.echo(f"note: {note}")
    for reason in result.decision.reasons:
        click.echo(f"  {reason}")
    if result.failed:
        raise SystemExit(1)


@click.command("apply")
@service_arg
@policy_opt
@port_opt
@root_opt
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="Keep reconciling until new replicas are ready and in the load balancer.",
)
@click.option(
    "--timeout",
    type=Seconds(1, 86_400),
    default=120.0,
    show_default=True,
    help="Seconds to wait at most for the service to serve, 1 to 86400 (exit 3 when it does "
    "not); --no-wait does not wait at all.",
)
@click.option("--wait-lock", is_flag=True, help="Wait for a running reconcile instead of exiting.")
@replace_all_opt
@mode_opt
@max_surge_opt
@click.option(
    "--plan",
    "plan_dir",
    type=click.Path(path_type=Path),
    default=None,
    metavar="DIR",
    help="Apply exactly the plans `hedgeform plan SERVICE --out DIR` kept, and nothing else "
    "(no new decision, no further pass; the plan's policy is used). Refused in one line, "
    "exit 4, with nothing applied, when any stack's state (lineage, serial), a service, "
    "settings or sidecar file or the service version moved since the plan "
    '(Terraform\'s "saved plan is stale" too).',
)
def apply(
    service: str,
    policy: str,
    lb_port: int | None,
    root: Path | None,
    wait: bool,
    timeout: float,
    wait_lock: bool,
    replace_all: bool,
    update_mode: str,
    max_surge: int | None,
    plan_dir: Path | None,
) -> None:
    """Reconcile SERVICE: observe -> decide -> render -> plan -> apply the saved plan ->
    record; then print the endpoint and the replicas.

    With --wait (the default) it reconciles again until the service serves: the replicas it
    launched are ready and in the load balancer, and requests through the load balancer to
    the readiness probe's path answer 200 (where this host cannot reach the endpoint, the
    load balancer's own health view decides; the output says which check did).

    Each pass is logged to state/SERVICE/ticks.jsonl as the loop's ticks are (`hedgeform
    status` reads it): its decision before Terraform applies it, its outcome after.

    A changed service file rolls out as a new version (--mode). With a remote state it
    holds the service's leader lease while it runs, and refuses in one line while a loop on
    another host holds it.

    With --plan DIR it applies the plans reviewed in DIR instead, once it checked that none
    is stale, makes no decision of its own, and prints the replicas (--wait, --timeout,
    --mode, --max-surge and --replace-all do not apply: the plan was made with its own).

    Exit codes: 0 serving (or applied, with --no-wait or --plan); 1 an error (a stack
    failed, bad input, or under `changes: review` a service file not yet reviewed, without
    --plan); 3 still converging when --timeout passed; 4 the --plan is stale (nothing
    applied).
    """
    if plan_dir is not None:
        source = click.get_current_context().get_parameter_source("policy")
        given = policy if source is click.core.ParameterSource.COMMANDLINE else None
        _apply_reviewed(service, lb_port, root, plan_dir, wait_lock, given)
        return
    try:
        rec = _reconciler(
            service,
            policy,
            lb_port,
            root,
            replace_all=replace_all,
            update_mode=update_mode,
            max_surge=max_surge,
        )
        held = held_change(rec.paths.spec_file, rec.spec_texts, rec.records.load())
        if held is not None:  # `changes: review`: only a reviewed plan changes the spec
            raise InputError(f"not applied: {held}")
        with (
            service_lock(rec.paths, wait=wait_lock),
            _lease_held(rec, service, "applied"),
            _apply_tick_log(rec) as logged,
        ):
            printed = _pass_printer()

            def on_pass(result: PassResult) -> None:
                logged(result)
                printed(result)

            done = rec.converge(timeout if wait else 0.0, on_pass)
            result = done.last
    except HedgeformError as exc:
        raise _fail(exc) from None
    _print_status(rec)
    if result.failed:
        raise SystemExit(1)
    check = done.serving
    if check is None:
        return
    for note in done.notes:
        click.echo(f"note: {note}", err=True)
    if check.serving and done.settled:
        click.echo(f"serving after {done.elapsed_s:.1f} s (checked by {check.via}: {check.detail})")
        return
    if check.serving:  # the endpoint answers, but the layout has not converged
        why = (
            "the endpoint serves, but not every replica the policy wants is ready and in the "
            "load balancer yet (see the table above)"
        )
    else:
        why = f"not serving (checked by {check.via}: {check.detail})"
    click.echo(
        f"error: {service} is still converging after {timeout:g} s: {why}; "
        "run apply again, or see `hedgeform status`",
        err=True,
    )
    raise SystemExit(EXIT_NOT_SERVING)


def _apply_reviewed(
    service: str,
    lb_port: int | None,
    root: Path | None,
    plan_dir: Path,
    wait_lock: bool,
    policy_given: str | None,
) -> None:
    """`apply --plan DIR` (engine/saved_plans.py); `policy_given`: a --policy typed too."""
    from reconciler.engine.saved_plans import apply_plan_dir, read_manifest

    try:
        paths = ServicePaths.for_service(service, **({"root": root} if root else {}))
        manifest = read_manifest(plan_dir, paths.service)
        policy = str(manifest.get("policy"))
        if policy not in POLICIES:
            raise InputError(f"--plan {plan_dir}: unknown policy {policy!r} in its manifest")
        if policy_given is not None and policy_given != policy:
            raise InputError(
                f"--policy {policy_given}: the plan in {plan_dir} was made with policy {policy}"
            )
        rec = _reconciler(service, policy, lb_port, root)
        # Under `changes: review` a running loop waits for this very plan: it is applied
        # beside the loop (no leader lease), serialised by the service lock and Terraform's
        # state lock, and refused as stale (exit 4) if a tick moved the state meanwhile.
        reviewed = review_mode(rec.paths.spec_file, rec.spec_texts, rec.records.load())
        lease = (
            contextlib.nullcontext() if reviewed == REVIEW else _lease_held(rec, service, "applied")
        )
        with service_lock(rec.paths, wait=wait_lock), lease:
            done = apply_plan_dir(rec, plan_dir, manifest)
    except StalePlanError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_STALE_PLAN) from None
    except HedgeformError as exc:
        raise _fail(exc) from None
    if done.stacks:
        summary = manifest.get("summary", "")
        click.echo(f"applied the reviewed plan of {', '.join(done.stacks)}: {summary}")
    elif not done.errors:
        click.echo("the reviewed plan changes nothing: nothing to apply")
    for error in done.errors:
        click.echo(f"error: {error}", err=True)
    _print_status(rec)
    if done.errors:
        raise SystemExit(1)


@contextlib.contextmanager
def _apply_tick_log(rec: Reconciler) -> Iterator[Callable[[PassResult], None]]:
    """`apply`'s passes in the tick log (state/SERVICE/ticks.jsonl), as the loop's ticks are
    (`source` "apply", `tick` the pass's number in this apply): each decision that changes
    something before Terraform applies it (`tick decided`), each pass's outcome after (the
    callback yielded), and a `tick failed` when a pass raises. Nothing goes to stdout."""
    from reconciler.engine.observability import (
        DECIDED,
        close_handlers,
        decided_record,
        json_logger,
        tick_record,
    )

    logger = json_logger(
        f"hedgeform.{rec.paths.service}.apply", rec.paths.state_dir / "ticks.jsonl", stdout=False
    )
    passes = 0

    def decided(pass_id: str, decision: Decision) -> None:
        logger.info(DECIDED, extra=decided_record(passes + 1, pass_id, decision, "apply"))

    def done(result: PassResult) -> None:
        nonlocal passes
        passes += 1
        logger.info("tick", extra={**tick_record(passes, result), "source": "apply"})

    rec.on_decided = decided
    try:
        yield done
    except HedgeformError as exc:
        extra: dict[str, object] = {"tick": passes + 1, "error": str(exc), "source": "apply"}
        if rec.decided_pass:
            extra["pass"] = rec.decided_pass
        logger.error("tick failed", extra=extra)
        raise
    finally:
        rec.on_decided = None
        close_handlers(logger)


def _pass_printer() -> Callable[[PassResult], None]:
    """Print the first pass and every pass that changed or failed something; a waiting
    `apply` does not repeat "no changes" for each look."""
    shown: list[bool] = []

    def show(result: PassResult) -> None:
        failures = any(o.launch_failures for o in result.outcomes)
        unknown = result.orphans or result.adopted
        if not shown or result.changed or result.failed or failures or unknown:
            _print_pass(result)
            shown.append(True)

    return show


def _current_states(rec: Reconciler) -> list[tuple[str, str, str, str, bool, int]]:
    """(id, zone, market, state, in LB, version) for every replica Terraform manages; the
    zone is its pool `<zone>/<GPU type>` when its zone runs several types (issue 15)."""
    now = rec.look()
    observed = in_pools(now.observation, (*now.managed, *now.adopted))
    replicas = sorted(observed.replicas, key=lambda r: r.id)
    members: frozenset[str] = now.lb_members or frozenset()
    return [
        (r.id, r.zone, r.market.value, r.state.value, r.id in members, r.version) for r in replicas
    ]


def _print_status(rec: Reconciler) -> None:
    rows = _current_states(rec)
    record = rec.records.load()
    ready = sum(1 for r in rows if r[3] == ReplicaState.READY.value)
    target = record.memory.target
    if record.memory.groups:  # several GPU types: the replicas the mix runs, not its units
        target = sum(group.target or 0 for _, group in record.memory.groups)
    click.echo(f"endpoint: {_endpoint(rec)}")
    if rec.state_backend.remote:
        click.echo(f"state: {rec.state_backend.describe()}")
        click.echo(f"leader: {_leader(rec.state_backend, rec.paths.service, rec.clock())}")
    click.echo(f"target: {target if target is not None else '-'}   ready: {ready}")
    memory = record.memory
    line = version_line(memory)
    if line:
        click.echo(line)
    held = held_change(rec.paths.spec_file, _file_texts(rec), record)
    if held is not None:
        click.echo(f"held: {held}")
    if not rows:
        click.echo("no replicas")
    else:
        width = max([10, *(len(row[1]) for row in rows)])
        click.echo(
            f"{'replica':<24} {'zone':<{width}} {'market':<10} {'state':<20} {'in LB':<6} version"
        )
    for rid, zone, market, state, in_lb, version in rows:
        state = memory.failed.get(rid, state)  # the policy's verdict, while being replaced
        lb = "yes" if in_lb else "no"
        click.echo(f"{rid:<24} {zone:<{width}} {market:<10} {state:<20} {lb:<6} v{version}")
    for line in health_lines(memory, rec.spec.service.readiness_probe, rec.clock()):
        click.echo(line)


@contextlib.contextmanager
def _lease_held(rec: Reconciler | None, service: str, doing: str) -> Iterator[None]:
    """With a remote state, `apply` and `destroy` hold the service's leader lease while they
    run, so no loop acts meanwhile (and two hosts' timers never apply at once); while a loop
    holds it (on another host, or this host's own running loop for `apply`) they are
    refused in one line, `doing` nothing."""
    from reconciler.engine.lease import LeaseKeeper, lease_for

    if rec is None or not rec.state_backend.remote:
        yield
        return
    keeper = LeaseKeeper(lease_for(rec.state_backend, service))
    if not keeper.take():
        holder = keeper.lease.holder()
        who = holder.holder if holder is not None else "another loop"
        why = (
            "would create the service again: stop the loops of every host first"
            if doing == "destroyed"
            else "reconciles the service already: let it, or stop it first"
        )
        raise ReconcileError(
            f"a reconcile loop of {service} ({who}, host:pid:nonce) holds the leader lease "
            f"and {why} (systemctl stop hedgeform-{service}.service or .timer on its host); "
            f"nothing was {doing}"
        )
    try:
        yield
    finally:
        keeper.stop()


def _leader(backend: StateBackend, service: str, now: float) -> str:
    """Who holds the service's leader lease (engine/lease.py), for `status`."""
    from reconciler.engine.lease import lease_for

    if not backend.remote:
        return "no lease with local state (one loop per service, on this host)"
    holder = lease_for(backend, service).holder()
    if holder is None:
        return "none (no loop holds the lease)"
    left = holder.expires_at - now
    if left <= 0:
        return f"none (the lease of {holder.holder} expired {-left:.0f} s ago)"
    return f"{holder.holder} (lease for {left:.0f} s more)"


def version_line(memory: Memory) -> str:
    """`version: v4 (rolling), last ready v3`, `version: v5 (ready, replicas of v4)`, `...;
    v6 failed: why`; "" before any version."""
    version = current_version(memory)
    if version is None:
        return ""
    text = f"version: v{version.number} ({version.state}"
    if version.runs != version.number:
        text += f", replicas of v{version.runs}"
    text += ")"
    if memory.stable_version is not None and memory.stable_version != version.number:
        text += f", last ready v{memory.stable_version}"
    failed = [v for v in memory.versions if v.state == "failed"]
    if failed and failed[-1].number > version.number:
        text += f"; v{failed[-1].number} failed: {failed[-1].reason}"
    return text


def health_lines(memory: Memory, probe: ReadinessProbe | None, now: float) -> list[str]:
    """Why replicas are being replaced or launches wait: probes failing, crash loops, spot
    retry delays (policy/lifecycle.py, policy/capacity_backoff.py). `probe` None: the spec's
    probe is not known (no service file), so not when a failing replica is replaced."""
    lines = []
    for rid, since in sorted(memory.failing_since.items()):
        if rid not in memory.failed:
            replaced = (
                ""
                if probe is None
                else f" (replaced at {probe.consecutive_failure_threshold_timeout} s)"
            )
            lines.append(f"{rid}: probes failing for {now - since:.0f} s{replaced}")
    for key, b in sorted(memory.crash_backoff.items()):
        if b.count >= 2 and b.blocks(now):
            zone, market = key.rsplit("/", 1)  # a pool's zone is `<zone>/<type>`
            lines.append(
                f"crash loop: {b.count} replicas {b.kind} in a row in {zone} ({market}); "
                f"next launch there in {b.retry_at - now:.0f} s"
            )
    for zone, b in sorted(memory.zone_backoff.items()):
        if b.blocks(now):
            lines.append(
                f"spot capacity refused {b.count}x in a row in {zone}; "
                f"asking again in {b.retry_at - now:.0f} s"
            )
    return lines


@click.command("status")
@click.argument("service", required=False)
@port_opt
@root_opt
@click.option("--json", "as_json", is_flag=True, help="One JSON object (shape below).")
@click.option(
    "--watch",
    is_flag=True,
    help="Refresh every --interval seconds until Ctrl-C: in place on a terminal, one "
    "printout per interval otherwise.",
)
@click.option(
    "--interval",
    type=Seconds(0.5, 3600),
    default=2.0,
    show_default=True,
    help="Seconds between --watch refreshes (0.5 to 3600).",
)
@click.option(
    "--events",
    "last",
    type=Whole(0, 1000),
    default=15,
    show_default=True,
    help="How many of the last events to show (0 to 1000).",
)
def status(
    service: str | None,
    lb_port: int | None,
    root: Path | None,
    as_json: bool,
    watch: bool,
    interval: float,
    last: int,
) -> None:
    """Show SERVICE: a service line (version, target, ready, $/h now, availability over the
    last hour) and its endpoint; a replica table (id, zone, market, accelerator, version,
    state with the policy's FAILED_* verdicts and PREEMPTED, age, in the load balancer, the
    readiness probe sent now and its latency, $/h, the reason of its last change); and the
    last --events events of the tick log (launches, on-demand fallbacks, preemption
    warnings and preemptions,
    failures, capacity refusals, terminations, rollout steps) with their reasons. With a
    remote state (HEDGEFORM_STATE_BACKEND), also where the state is and which loop holds the
    leader lease. Without SERVICE: one line per service under state/.

    \b
    ready: READY replicas in the load balancer. $/h: the price of the zone offer each live
    replica runs on ("?" when one is unknown). availability 1h: the share of the ticks of the
    last hour (state/SERVICE/ticks.jsonl: `run`'s ticks, `apply`'s passes) after which the ready
    replicas in the load balancer were at least the target; a failed tick counts as down;
    "-" with no tick in the hour. Events come from the tail of the same log. The probe
    column is the sandbox's (clouds: "-", their load balancer probes).

    \b
    A fallback's event says what its on-demand cover cost (its price per hour x how long it
    ran, or so far), a preemption's the fallbacks it caused and their sum. On the sandbox
    every price is its nominal unit, "3.00 (nominal)/h", never dollars.

    \b
    Without a usable service file (moved away, unreadable, invalid, or its sidecar invalid),
    what state/SERVICE knows, and a line saying why and what needs the file: the record's
    version and target, the events, the price per hour the last tick recorded; on the
    sandbox the replicas, their state from each process and HAProxy's health check (no
    probe is sent), and the load balancer; on a cloud no replica table.

    \b
    --json: {"service", "unit" ("USD"|"nominal (sandbox)"), "version" (int|null),
    "version_detail", "target" (int|null), "ready", "endpoint", "usd_per_hour"
    (float|null), "availability_1h" (0..1|null), "replicas": [{"id", "zone", "market",
    "accelerator", "version", "state", "age_s", "in_lb", "probe", "probe_ms",
    "usd_per_hour", "reason"}], "events": [{"at" (unix s|null), "tick", "kind", "replica",
    "zone", "market", "reason", "usd_per_hour", "hours", "cost", "running",
    "covered_by", "covers"}], "notes": [str]}; with --watch one such line per interval.
    """
    from reconciler.engine import status_view
    from reconciler.paths import PROJECT_ROOT, check_name

    if service is None:
        if as_json or watch:
            raise click.UsageError("--json and --watch need a SERVICE")
        _print_services(lb_port, root or PROJECT_ROOT)
        return
    try:
        check_name(service)
    except HedgeformError as exc:
        raise _fail(exc) from None

    def build() -> status_view.StatusView:
        try:
            paths = ServicePaths.for_service(service, **({"root": root} if root else {}))
            gone = destroyed_at(paths.state_dir)
            if gone is not None:  # no look: nothing runs, and its spec may be gone too
                return status_view.destroyed(service, paths.state_dir, gone, last, time.time())
            return _service_view(service, lb_port, root, last)
        except HedgeformError as exc:
            raise _fail(exc) from None

    status_view.show(build, as_json=as_json, watch=watch, interval=interval)


def _service_view(service: str, lb_port: int | None, root: Path | None, last: int) -> StatusView:
    """`hedgeform status`'s view of a service not destroyed: through its service file, or,
    when the file cannot be used (moved away, unreadable, invalid, its sidecar invalid) and
    the service has a state, from that state alone (`_state_view`), as `hedgeform logs`."""
    try:
        rec = _reading_reconciler(service, lb_port, root)
    except SpecError as exc:
        return _state_view(service, root, exc, last)
    return _status_view(rec, last)


def _status_view(rec: Reconciler, last: int) -> StatusView:
    """`hedgeform status`'s view of a service (engine/status_view.py), with the lines the
    old status printed under its table: the state backend and lease, a held change, health."""
    from reconciler.engine.status_view import collect

    record = rec.records.load()
    notes = _state_notes(rec.paths, rec.state_backend, rec.clock())
    held = held_change(rec.paths.spec_file, _file_texts(rec), record)
    if held is not None:
        notes.append(f"held: {held}")
    notes += health_lines(record.memory, rec.spec.service.readiness_probe, rec.clock())
    detail = version_line(record.memory).removeprefix("version: ")
    return collect(rec, _endpoint(rec), detail, notes, last)


def _state_notes(paths: ServicePaths, backend: StateBackend, now: float) -> list[str]:
    """The first lines under `status`'s table: a destroy cut short; with a remote state,
    where it is and who holds the leader lease."""
    notes: list[str] = []
    started = destroy_started_at(paths.state_dir)
    if started is not None:
        notes.append(destroy_unfinished(paths.service, started))
    if backend.remote:
        notes += [f"state: {backend.describe()}", f"leader: {_leader(backend, paths.service, now)}"]
    return notes


def state_paths(service: str, root: Path | None, problem: SpecError) -> ServicePaths:
    """The paths of a service whose service file cannot be used (`problem`), for `status`
    and `cost` to show its state alone; `problem` itself when it has no state (it never ran
    here)."""
    paths = ServicePaths.for_service(service, **({"root": root} if root else {}))
    if not is_service_dir(paths.state_dir):
        raise problem
    return paths


def _state_view(service: str, root: Path | None, problem: SpecError, last: int) -> StatusView:
    """`status` of a service whose service file cannot be used (`problem`), from its state
    (status_view.from_state); `problem` itself when there is no state to show (the service
    never ran here)."""
    paths = state_paths(service, root, problem)
    backend = load_state_backend(paths.settings_file)
    record = record_store(paths, backend).load()
    now = time.time()
    notes = _state_notes(paths, backend, now) + health_lines(record.memory, None, now)
    return from_state(
        paths,
        record,
        str(problem).splitlines()[0],
        notes,
        last,
        now,
        remote=backend.remote,
        version_detail=version_line(record.memory).removeprefix("version: "),
    )


def destroy_unfinished(service: str, started: float) -> str:
    """The note of a destroy that started and did not finish (state_store DESTROYING_FILE)."""
    from reconciler.engine.status_view import stamp

    return (
        f"destroy started {stamp(started)}, not finished: run `hedgeform destroy {service}` "
        "again (unless one is running now)"
    )


def _print_services(lb_port: int | None, root: Path) -> None:
    """`hedgeform status` without SERVICE: a line per service with a state directory."""
    from reconciler.engine import status_view
    from reconciler.engine.status_view import service_dirs

    names = service_dirs(root / "state")
    if not names:
        click.echo(f"no service under {root / 'state'}")
        return
    for name in names:
        gone = destroyed_at(root / "state" / name)
        if gone is not None:
            click.echo(status_view.destroyed_line(name, gone))
            continue
        try:
            view = _service_view(name, lb_port, root, 0)
        except HedgeformError as exc:
            click.echo(f"{name}  ?  ({str(exc).splitlines()[0]})")
            continue
        target = "-" if view.target is None else view.target
        version = f"v{view.version}" if view.version is not None else "-"
        held = "  held for review" if any(n.startswith("held:") for n in view.notes) else ""
        if any(n.startswith("destroy started") for n in view.notes):
            held += "  destroy not finished"
        if view.unread:
            held += "  shown from its state (the service file cannot be used)"
        click.echo(f"{name}  {version}  ready {view.ready}/{target}  {view.endpoint}{held}")


@click.command("destroy")
@service_arg
@port_opt
@root_opt
@click.option("--wait-lock", is_flag=True, help="Wait for a running reconcile instead of exiting.")
def destroy(service: str, lb_port: int | None, root: Path | None, wait_lock: bool) -> None:
    """Destroy every stack of SERVICE (front first) and, on the sandbox, stop its cloud: no
    replica process, no HAProxy server, no market daemon is left behind.

    The stacks are those of the service file and every stack a past apply left under
    state/SERVICE/ (a region since removed from the file included); when the service file
    is missing or no longer loads, those found on disk are destroyed, with a warning.

    Processes no record names are found too (the sandbox's HEDGEFORM_SANDBOX marker,
    provider plugins in a stack directory), stopped and listed; "nothing left running" is
    printed only when a last scan finds nothing, else an error names the pids (exit 1).

    A `hedgeform run` loop of SERVICE is stopped first (SIGTERM, up to 60 s), and its lock
    is held until the destroy ends, so a loop restarted meanwhile exits at once instead of
    creating the service again.

    With a remote state (HEDGEFORM_STATE_BACKEND) it works from any host, one that never
    applied the service included, and holds the leader lease while it runs; a loop on
    another host that holds the lease is refused in one line: stop those loops first.

    state/SERVICE/destroying.json is written first and replaced by destroyed.json at the
    end, so `hedgeform status` says when a destroy was cut short: run it again.
    """
    from reconciler.engine.loop import loop_stopped

    try:
        paths = ServicePaths.for_service(service, **({"root": root} if root else {}))
        rec: Reconciler | None = None
        try:
            rec = _reconciler(service, "hedgeform", lb_port, root, check_env=False)
        except HedgeformError as exc:  # a spec that no longer loads must not block teardown
            reason = str(exc).splitlines()[0]
            click.echo(
                f"warning: {reason}; destroying the stacks found under {paths.state_dir}",
                err=True,
            )
        original = started_elsewhere(paths.sandbox_dir)
        if original is not None and Path(original).exists():  # destroying would stop it
            raise ReconcileError(copied_state_message(original))
        errors: list[str] = []
        with (
            loop_stopped(paths.loop_lock_file, service, click.echo),
            service_lock(paths, wait=wait_lock),
            _lease_held(rec, service, "destroyed"),
        ):
            if rec is not None and rec.state_backend.remote:
                # A host that never applied the service has no tfvars for its stacks.
                rec.render_for_destroy(
                    [s for s in rec.stack_names if not (paths.stack_dir(s) / DEFAULT_VARS).exists()]
                )
            if paths.state_dir.is_dir():  # `status` says so if this destroy is cut short
                mark_destroying(paths.state_dir, time.time())
            stacks = teardown.stacks_to_destroy(paths, rec)
            stack_dirs = [s.dir for s in stacks]
            sandbox = paths.sandbox_dir
            # What a killed command left (tfstate.recover_killed_terraform), and what no record
            # names, noted now: the teardown below may stop it (a replica's destroy provisioner
            # finds its process by marker), and the final sweep stops the rest.
            wait_for_state_locks(stack_dirs)
            unrecorded = teardown.stop_stray_providers(stack_dirs)
            unrecorded += teardown.unrecorded(sandbox)
            named = teardown.recorded_alive(sandbox)  # before the teardown clears the records
            for stack in stacks:
                if not stack.var_file.exists():
                    continue
                crash_point("before_destroy")
                crash_point(f"before_destroy:{stack.name}")
                crash_point("during_destroy", delay_s=0.5)
                try:
                    stack.runner().destroy(stack.var_file)
                    click.echo(f"destroyed stack {stack.name}")
                except TerraformError as exc:
                    errors.append(str(exc))
            crash_point("before_teardown")
            if sandbox.exists():
                stopped = replicas.stop_all(sandbox)
                if stopped:
                    click.echo(f"stopped leftover replicas: {', '.join(stopped)}")
                HAProxyLB(sandbox).down()
                market_daemon.stop(sandbox)
            # By marker and working directory, not by record; then verified by a new scan.
            unrecorded += teardown.stop_leftovers(sandbox, stack_dirs, named)
            lines, left = teardown.verify(
                unrecorded, lambda: teardown.still_running(sandbox, stack_dirs, named)
            )
            for line in lines:
                click.echo(line)
            errors += left
            kept = _kept_by_destroy(rec, paths)
            if rec is not None:
                rec.records.clear()
            paths.memory_file.unlink(missing_ok=True)
            if kept != Record():
                (rec.records if rec is not None else FileRecords(paths.memory_file)).save(kept)
    except HedgeformError as exc:
        raise _fail(exc) from None
    for line in errors:
        click.echo(f"error: {line}", err=True)
    if errors:
        raise SystemExit(1)
    try:  # `hedgeform status` says it is destroyed, and since when
        if paths.state_dir.is_dir():
            mark_destroyed(paths.state_dir, time.time())
    except HedgeformError as exc:
        raise _fail(exc) from None
    click.echo(f"{service}: nothing left running")


def _kept_by_destroy(rec: Reconciler | None, paths: ServicePaths) -> Record:
    """What `destroy` keeps of the service's record: its launch sequence only, past every
    replica id the record or the sandbox's replica files ever named, so the next apply
    numbers new replicas after them and an old replica's tick-log history and log file
    (replicas/<id>.log) never attach to a new one. Empty when there is nothing to keep."""
    seq = 0
    with contextlib.suppress(HedgeformError):  # an unreadable record: the files still count
        seq = (
            rec.records.load() if rec is not None else load_record(paths.memory_file)
        ).memory.launch_seq
    used = replicas.replicas_dir(paths.sandbox_dir)
    if used.is_dir():
        seq = max([seq, *(replica_seq(f.stem) + 1 for f in used.glob("*.log"))])
    return Record(memory=Memory(launch_seq=seq)) if seq else Record()


@click.command("run")
@service_arg
@policy_opt
@port_opt
@root_opt
@click.option(
    "--interval",
    type=Seconds(0.1, 86_400),
    default=30.0,
    show_default=True,
    help="Seconds between ticks (0.1 to 86400).",
)
@click.option(
    "--metrics-port",
    type=Whole(1, 65535),
    default=None,
    help="Serve Prometheus metrics on 127.0.0.1:PORT (not the load balancer's port).",
)
@click.option(
    "--metrics-textfile",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write Prometheus metrics to this file after each tick (node_exporter textfile).",
)
@click.option(
    "--max-ticks",
    type=Whole(1),
    default=None,
    help="Stop after this many ticks (>= 1); exit 1 when the last one failed.",
)
@click.option("--wait", "wait_lock", is_flag=True, help="Wait for a running loop to exit.")
@click.option(
    "--lease",
    "lease_s",
    type=Seconds(10, 3600),
    default=LEASE_DURATION_S,
    show_default=True,
    help="With a remote state: seconds a leader's lease lasts unrenewed (it renews every "
    "third of it); a standby loop on another host takes over that long after the leader died.",
)
@click.option(
    "--drift-every",
    type=Whole(0),
    default=0,
    show_default=True,
    help="Check drift (as `hedgeform drift`) after every Nth tick this loop acts in; a drift "
    "found is a warning line in the tick log and counted in hedgeform_drift_found. 0: never.",
)
@replace_all_opt
@mode_opt
@max_surge_opt
def run(
    service: str,
    policy: str,
    lb_port: int | None,
    root: Path | None,
    interval: float,
    metrics_port: int | None,
    metrics_textfile: Path | None,
    max_ticks: int | None,
    wait_lock: bool,
    lease_s: float,
    drift_every: int,
    replace_all: bool,
    update_mode: str,
    max_surge: int | None,
) -> None:
    """Reconcile SERVICE every --interval seconds until stopped (SIGTERM or Ctrl-C).

    A tick also starts at once when a preemption notice arrives, and soon after a capacity
    error; a failing tick is retried later, with exponential backoff and jitter. Each tick
    logs one JSON record (stdout and state/SERVICE/ticks.jsonl), after a `tick decided`
    record written before Terraform applies a change. On SIGTERM the running
    Terraform is cancelled by process group and the loop exits cleanly. One loop per
    service on a host: a second one exits at once (or waits with --wait). With a remote state
    (S3, GCS, azurerm), loops on several hosts may run: the one holding the leader lease
    (beside the state) acts, the others stand by and take over when it stops or dies.

    The service file is read again at each tick: a change rolls out as --mode says (rolling
    by default); a file that no longer loads is reported and the last good one kept. With
    `changes: review` in services/SERVICE.hedgeform.yaml a changed file is held (logged,
    shown by `status`) and the reviewed one kept until `apply --plan` applies its reviewed
    plan (docs/review.md).

    With --drift-every N, every Nth tick it acts in also checks drift after its pass (a
    refresh-only plan per stack, as `hedgeform drift`): a drift found is logged as one
    warning line and counted (hedgeform_drift_found); nothing more is done about it than
    the passes do anyway.
    """
    import functools
    import threading

    from reconciler.engine.lease import lease_for
    from reconciler.engine.loop import LoopSettings, ReconcileLoop, loop_lock
    from reconciler.engine.observability import LoopMetrics, json_logger

    try:
        make = functools.partial(
            _reconciler,
            service,
            policy,
            lb_port,
            root,
            replace_all=replace_all,
            update_mode=update_mode,
            max_surge=max_surge,
        )
        rec = make()
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        with loop_lock(rec.paths.loop_lock_file, service, wait_lock):
            logger = json_logger(f"hedgeform.{service}", rec.paths.state_dir / "ticks.jsonl")
            metrics = LoopMetrics(service)
            if metrics_port:
                if (
                    isinstance(rec.cloud, SandboxCloud)
                    and metrics_port == rec.cloud.settings.lb_port
                ):
                    raise ReconcileError(
                        f"--metrics-port {metrics_port} is the load balancer's port; choose another"
                    )
                try:
                    metrics.serve(metrics_port)
                except OSError as exc:
                    raise ReconcileError(
                        f"cannot serve metrics on 127.0.0.1:{metrics_port}: {exc.strerror or exc}"
                    ) from None
            if metrics_textfile is not None:
                # prometheus-client renames a temp file over the path: a device (/dev/null),
                # FIFO or symlink there would be replaced by a regular file.
                if metrics_textfile.is_symlink() or (
                    metrics_textfile.exists() and not metrics_textfile.is_file()
                ):
                    raise ReconcileError(
                        f"--metrics-textfile {metrics_textfile}: not a regular file; give a "
                        "file path (node_exporter reads *.prom files from a directory)"
                    )
                try:  # a path that cannot be written is one line now, not a traceback a tick
                    metrics.write_textfile(metrics_textfile)
                except OSError as exc:
                    raise ReconcileError(
                        f"--metrics-textfile {metrics_textfile}: cannot write it "
                        f"({exc.strerror or exc})"
                    ) from None
            lease = lease_for(rec.state_backend, service, duration_s=lease_s)
            loop = ReconcileLoop(
                rec,
                LoopSettings(interval_s=interval, drift_every=drift_every),
                logger,
                metrics,
                metrics_textfile,
                lease=lease,
                reload=make,
            )
            loop.run(stop, max_ticks)
            if max_ticks is not None and loop.failures:  # the exit code tells the truth
                raise ReconcileError(
                    f"the last of {loop.ticks} tick(s) failed (see state/{service}/ticks.jsonl)"
                )
    except HedgeformError as exc:
        raise _fail(exc) from None


@click.group("state")
def state() -> None:
    """Where a service's Terraform state lives (HEDGEFORM_STATE_BACKEND or `state_backend`
    in services/SERVICE.settings.yaml: local, s3://..., gcs://..., azurerm://...)."""


@state.command("migrate")
@service_arg
@port_opt
@root_opt
@click.option("--wait-lock", is_flag=True, help="Wait for a running reconcile instead of exiting.")
def migrate(service: str, lb_port: int | None, root: Path | None, wait_lock: bool) -> None:
    """Move every stack's state of SERVICE to the configured state backend.

    Runs `terraform init -migrate-state -force-copy` in each stack that has been planned
    before, so state kept locally (or in the previous backend) is copied to the new one;
    `plan`, `apply` and `run` refuse, in one line, to start while a stack's state is still
    in the old backend. The reconciler's record (state/SERVICE/reconciler.json: the placer's
    zone states, versions, backoffs) moves beside the state too, unless the backend already
    holds one; the local file is kept as reconciler.json.migrated. Holds the service's lock
    (a running loop is not interrupted: stop it first, or pass --wait-lock)."""
    try:
        rec = _reconciler(service, "hedgeform", lb_port, root, check_env=False)
        with service_lock(rec.paths, wait=wait_lock):
            moved = []
            for stack in rec.stack_names:
                if not (rec.paths.stack_dir(stack) / ".terraform").is_dir():
                    continue  # never initialised: its first init uses the new backend
                rec.runner(stack).migrate_state()
                moved.append(stack)
            record_moved = _migrate_record(rec)
    except HedgeformError as exc:
        raise _fail(exc) from None
    where = rec.state_backend.describe()
    if moved:
        click.echo(f"{service}: state of {', '.join(moved)} now in {where}")
    else:
        click.echo(f"{service}: no stack was initialised yet; the first plan uses {where}")
    if record_moved:
        click.echo(f"{service}: the reconciler's record now in {rec.records.where}")


def _migrate_record(rec: Reconciler) -> bool:
    """Copy the local record into the remote store when that holds none yet (or only the
    launch sequence a destroy keeps, which the copy then continues past); True if so."""
    local = rec.paths.memory_file
    if not rec.state_backend.remote or not local.exists():
        return False
    record = load_record(local)
    there = rec.records.load()
    if there != Record(memory=Memory(launch_seq=there.memory.launch_seq)):
        return False  # the backend's own record wins: another host wrote it
    seq = max(record.memory.launch_seq, there.memory.launch_seq)
    rec.records.save(replace(record, memory=replace(record.memory, launch_seq=seq)))
    local.rename(local.with_name(local.name + ".migrated"))
    return True


@state.command("unlock")
@service_arg
@click.argument("stack")
@click.argument("lock_id")
@root_opt
def unlock(service: str, stack: str, lock_id: str, root: Path | None) -> None:
    """Release STACK's Terraform state lock LOCK_ID, left by a Terraform that is gone.

    A remote backend's lock (the S3 backend's DynamoDB item) outlives a Terraform killed
    mid-apply, and every later plan of the stack waits for it, then fails naming the lock's
    id, holder and age, and this command. Run it only when that holder is gone: releasing
    the lock of a Terraform still running lets two applies overlap."""
    try:
        rec = _reconciler(service, "hedgeform", None, root, check_env=False)
        if stack not in rec.stack_names:
            raise ReconcileError(
                f"{service} has no stack {stack!r}; its stacks: {', '.join(rec.stack_names)}"
            )
        try:
            rec.runner(stack).force_unlock(lock_id)
        except ValueError as exc:
            raise ReconcileError(str(exc)) from None
    except HedgeformError as exc:
        raise _fail(exc) from None
    click.echo(f"{service}: released lock {lock_id} of stack {stack}")
