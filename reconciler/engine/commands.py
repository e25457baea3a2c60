"""`hedgeform plan|apply|status|destroy|run SERVICE`: the local sandbox cloud, or AWS / GCP /
Azure region stacks when the spec names them (engine/backends.py)."""

from __future__ import annotations

from pathlib import Path

import click

from reconciler.adapters.base import AdapterError
from reconciler.clouds import CloudConfigError
from reconciler.engine.paths import BadNameError, ServicePaths
from reconciler.engine.reconcile import PassResult, ReconcileError, Reconciler, service_lock
from reconciler.engine.sandbox_cloud import SandboxSettings
from reconciler.engine.state_store import StateError, load_record
from reconciler.engine.tfstate import TfStateError
from reconciler.policy import POLICIES, ReplicaState
from reconciler.rendering import RenderError
from reconciler.sandbox import market_daemon, replicas
from reconciler.sandbox.errors import SandboxError
from reconciler.sandbox.haproxy import HAProxyLB
from reconciler.spec import SpecError, load_spec
from reconciler.stacks import FRONT
from reconciler.terraform.errors import TerraformError

USER_ERRORS = (
    SpecError,
    BadNameError,
    ReconcileError,
    StateError,
    TfStateError,
    SandboxError,
    TerraformError,
    AdapterError,  # a cloud API: missing credentials, throttling (one line each)
    CloudConfigError,  # a missing cloud setting, an unknown region or accelerator
    RenderError,
)


def _reconciler(service: str, policy: str, lb_port: int | None, root: Path | None) -> Reconciler:
    paths = ServicePaths.for_service(service, **({"root": root} if root else {}))
    spec = load_spec(paths.spec_file)
    settings = SandboxSettings.from_env(lb_port=lb_port)  # type: ignore[arg-type]
    return Reconciler(paths, spec, settings, policy=policy)


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
    "--lb-port", type=int, default=None, help="Load balancer port [env HEDGEFORM_LB_PORT; 30001]."
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
        if result.plan_file:
            click.echo(f"plan diff: {result.plan_file}")
    if result.orphans:
        click.echo(
            f"warning: replica processes unknown to Terraform: {', '.join(result.orphans)}",
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
def plan(
    service: str, policy: str, lb_port: int | None, root: Path | None, render_only: bool
) -> None:
    """Decide and plan every stack of SERVICE without changing anything.

    Writes a markdown plan diff (counts of create/update/delete, replacements with why,
    grouped by stack and market, load-balancer membership changes, the raw plan collapsed)
    to state/SERVICE/plans/<timestamp>.md for review. With --render-only the decision is
    made from Terraform state alone (replicas taken as ready, request rate held, catalog
    prices) and only the files Terraform would read are written.
    """
    try:
        rec = _reconciler(service, policy, lb_port, root)
        with service_lock(rec.paths):
            result = rec.run_pass(apply=False, render_only=render_only)
    except USER_ERRORS as exc:
        raise _fail(exc) from None
    if render_only:
        for path in result.rendered:
            click.echo(f"wrote {path}")
    _print_pass(result)
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
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait at most.")
@click.option("--wait-lock", is_flag=True, help="Wait for a running reconcile instead of exiting.")
def apply(
    service: str,
    policy: str,
    lb_port: int | None,
    root: Path | None,
    wait: bool,
    timeout: float,
    wait_lock: bool,
) -> None:
    """Reconcile SERVICE once: observe -> decide -> render -> plan -> apply the saved plan ->
    record; then print the endpoint and the replicas.

    With --wait (the default) it reconciles again every second until the replicas it
    launched are ready and in the load balancer, or --timeout passes.
    """
    try:
        rec = _reconciler(service, policy, lb_port, root)
        with service_lock(rec.paths, wait=wait_lock):
            results = rec.converge(timeout if wait else 0.0, _print_pass)
            result = results[-1]
            if wait and not result.failed and not rec.settled(result):
                click.echo(f"still converging after {timeout:.0f} s; run apply again later")
    except USER_ERRORS as exc:
        raise _fail(exc) from None
    _print_status(rec)
    if result.failed:
        raise SystemExit(1)


def _current_states(rec: Reconciler) -> list[tuple[str, str, str, str, bool]]:
    """(id, zone, market, state, in LB) for every replica Terraform manages."""
    replicas = rec.current_replicas()  # first: a cloud backend learns its members here
    members = rec.cloud.lb_members() or set()
    return [(r.id, r.zone, r.market.value, r.state.value, r.id in members) for r in replicas]


def _print_status(rec: Reconciler) -> None:
    rows = _current_states(rec)
    record = load_record(rec.paths.memory_file)
    ready = sum(1 for r in rows if r[3] == ReplicaState.READY.value)
    target = record.memory.target
    click.echo(f"endpoint: {rec.cloud.endpoint()}")
    click.echo(f"target: {target if target is not None else '-'}   ready: {ready}")
    if not rows:
        click.echo("no replicas")
        return
    click.echo(f"{'replica':<24} {'zone':<10} {'market':<10} {'state':<12} in LB")
    for rid, zone, market, state, in_lb in rows:
        click.echo(f"{rid:<24} {zone:<10} {market:<10} {state:<12} {'yes' if in_lb else 'no'}")


@click.command("status")
@service_arg
@port_opt
@root_opt
def status(service: str, lb_port: int | None, root: Path | None) -> None:
    """Show SERVICE's endpoint, target and replicas (zone, market, state, load balancer)."""
    try:
        rec = _reconciler(service, "hedgeform", lb_port, root)
        _print_status(rec)
    except USER_ERRORS as exc:
        raise _fail(exc) from None


@click.command("destroy")
@service_arg
@port_opt
@root_opt
@click.option("--wait-lock", is_flag=True, help="Wait for a running reconcile instead of exiting.")
def destroy(service: str, lb_port: int | None, root: Path | None, wait_lock: bool) -> None:
    """Destroy every stack of SERVICE (front first) and, on the sandbox, stop its cloud: no
    replica process, no HAProxy server, no market daemon is left behind."""
    try:
        rec = _reconciler(service, "hedgeform", lb_port, root)
        errors: list[str] = []
        with service_lock(rec.paths, wait=wait_lock):
            order = [s for s in [FRONT, *rec.stack_names] if s in rec.stack_names]
            order = list(dict.fromkeys(order))
            for stack in order:
                var_file = rec.paths.stack_dir(stack) / "terraform.tfvars.json"
                if not var_file.exists():
                    continue
                try:
                    rec.runner(stack).destroy(var_file)
                    click.echo(f"destroyed stack {stack}")
                except TerraformError as exc:
                    errors.append(str(exc))
            sandbox = rec.paths.sandbox_dir
            if sandbox.exists():
                stopped = replicas.stop_all(sandbox)
                if stopped:
                    click.echo(f"stopped leftover replicas: {', '.join(stopped)}")
                HAProxyLB(sandbox).down()
                market_daemon.stop(sandbox)
            rec.paths.memory_file.unlink(missing_ok=True)
    except USER_ERRORS as exc:
        raise _fail(exc) from None
    for line in errors:
        click.echo(f"error: {line}", err=True)
    if errors:
        raise SystemExit(1)
    click.echo(f"{service}: nothing left running")


@click.command("run")
@service_arg
@policy_opt
@port_opt
@root_opt
@click.option("--interval", default=30.0, show_default=True, help="Seconds between ticks.")
@click.option(
    "--metrics-port", type=int, default=None, help="Serve Prometheus metrics on 127.0.0.1:PORT."
)
@click.option(
    "--metrics-textfile",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write Prometheus metrics to this file after each tick (node_exporter textfile).",
)
@click.option("--max-ticks", type=int, default=None, help="Stop after this many ticks.")
@click.option("--wait", "wait_lock", is_flag=True, help="Wait for a running loop to exit.")
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
) -> None:
    """Reconcile SERVICE every --interval seconds until stopped (SIGTERM or Ctrl-C).

    A tick also starts at once when a preemption notice arrives, and soon after a capacity
    error; a failing tick is retried later, with exponential backoff and jitter. Each tick
    logs one JSON record (stdout and state/SERVICE/ticks.jsonl). On SIGTERM the running
    Terraform is cancelled by process group and the loop exits cleanly. One loop per
    service: a second one exits at once (or waits with --wait).
    """
    import signal
    import threading

    from reconciler.engine.loop import LoopSettings, ReconcileLoop, loop_lock
    from reconciler.engine.observability import LoopMetrics, json_logger

    if interval <= 0:
        raise click.UsageError("--interval must be > 0")
    try:
        rec = _reconciler(service, policy, lb_port, root)
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        with loop_lock(rec.paths.state_dir / ".loop.lock", service, wait_lock):
            logger = json_logger(f"hedgeform.{service}", rec.paths.state_dir / "ticks.jsonl")
            metrics = LoopMetrics(service)
            if metrics_port:
                metrics.serve(metrics_port)
            loop = ReconcileLoop(
                rec, LoopSettings(interval_s=interval), logger, metrics, metrics_textfile
            )
            loop.run(stop, max_ticks)
    except USER_ERRORS as exc:
        raise _fail(exc) from None
