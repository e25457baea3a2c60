"""`hedgeform sandbox ...`: the commands Terraform's provisioners (and people) use to drive the
local sandbox cloud. Errors print one line to stderr; exit codes: 1 error, 2 usage,
3 capacity error (a spot launch into a full zone)."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any, Literal

import click

from reconciler.click_types import Finite, Whole
from reconciler.errors import SandboxError
from reconciler.files import write_json_atomic
from reconciler.sandbox import market_daemon, replicas
from reconciler.sandbox.haproxy import HAProxyLB, HealthCheck
from reconciler.sandbox.market import (
    DEFAULT_SPEED,
    DEFAULT_TRACE_DIR,
    DEFAULT_WARNING_SECONDS,
    NoticeFeed,
    SpotMarket,
    market_path,
    notices_path,
)
from reconciler.sandbox.replica_server import PROBE_PATHS, faults_path, parse_faults
from reconciler.sandbox.statefiles import check_name
from reconciler.spec.model import TLSFiles
from reconciler.spec.tls import absolute

STATE_DIR_ENV = "HEDGEFORM_SANDBOX_STATE_DIR"


class _SandboxGroup(click.Group):
    """Turns a `SandboxError` anywhere below into `Error: <message>` and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SandboxError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)


def _state_dir_option(f: Any) -> Any:
    return click.option(
        "--state-dir",
        required=True,
        envvar=STATE_DIR_ENV,
        type=click.Path(file_okay=False, path_type=Path),
        help=f"Sandbox state directory (replicas, market, LB). Env: {STATE_DIR_ENV}.",
    )(f)


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


@click.group(cls=_SandboxGroup, context_settings={"help_option_names": ["-h", "--help"]})
def sandbox() -> None:
    """The local sandbox cloud: replicas are local processes in zones like local-1a, the load
    balancer is a real HAProxy, and each zone's spot capacity replays a real trace.

    Exit codes: 0 ok, 1 error, 2 usage error, 3 capacity error (no spot capacity).
    """


# -- replicas ---------------------------------------------------------------------------------


@sandbox.group()
def replica() -> None:
    """Launch, stop and list replica processes (the sandbox's VMs)."""


@replica.command("launch")
@_state_dir_option
@click.option("--id", "replica_id", required=True, help="Replica id, e.g. llama-3.")
@click.option("--zone", required=True, help="Zone, e.g. local-1a.")
@click.option("--market", type=click.Choice(["spot", "on_demand"]), required=True)
@click.option("--cold-start", type=float, default=0.0, show_default=True, help="Seconds.")
@click.option("--latency-ms", type=float, default=0.0, show_default=True)
@click.option("--model", default=None, help="Model name to report (default: sandbox-model).")
@click.option(
    "--version",
    "version",
    type=Whole(1, 10**9),
    default=1,
    show_default=True,
    help="Service version the replica runs (reported on /, kept in its record).",
)
@click.option(
    "--max-rps",
    type=Finite(0, replicas.MAX_RPS),
    default=0.0,
    show_default=True,
    help="Requests/s the simulated GPU serves, one after another, so latency grows with the "
    "queue near it (a GPU type's throughput, issue 15); 0: no limit.",
)
def replica_launch(
    state_dir: Path,
    replica_id: str,
    zone: str,
    market: str,
    cold_start: float,
    latency_ms: float,
    model: str | None,
    version: int,
    max_rps: float,
) -> None:
    """Launch a replica; prints {"id", "port", "pid"} as JSON.

    A spot launch first asks the spot market for capacity in the zone and fails with exit
    code 3 (InsufficientInstanceCapacity) when the zone is full. Launching an id that already
    runs in the same zone and market returns the running replica.
    """
    check_name(replica_id, "replica id")
    check_name(zone, "zone")
    spot_market = _market_for_launch(state_dir, market)
    if spot_market is None:
        record = replicas.launch(
            state_dir,
            replica_id,
            zone,
            market,
            cold_start_s=cold_start,
            latency_ms=latency_ms,
            model=model,
            version=version,
            max_rps=max_rps,
        )
    else:
        existing = replicas.get(state_dir, replica_id)
        with spot_market.zone_lock(zone):
            if existing is None or not replicas.is_alive(existing):
                spot_market.try_acquire(zone, market, time.time())
            record = replicas.launch(
                state_dir,
                replica_id,
                zone,
                market,
                cold_start_s=cold_start,
                latency_ms=latency_ms,
                model=model,
                version=version,
                max_rps=max_rps,
            )
    _echo_json({"id": record.replica_id, "port": record.port, "pid": record.pid})


def _market_for_launch(state_dir: Path, market: str) -> SpotMarket | None:
    """Spot launches need the market; on-demand ones use it (to validate the zone) if any."""
    if market == "spot" or market_path(state_dir).exists():
        return SpotMarket.load(state_dir)
    return None


@replica.command("stop")
@_state_dir_option
@click.option("--id", "replica_id", required=True)
def replica_stop(state_dir: Path, replica_id: str) -> None:
    """Stop a replica (SIGTERM, then SIGKILL) and forget it; succeeds when already gone."""
    stopped = replicas.stop(state_dir, replica_id)
    click.echo(f"{replica_id}: {'stopped' if stopped else 'not running'}")


@replica.command("stop-all")
@_state_dir_option
def replica_stop_all(state_dir: Path) -> None:
    """Stop every replica recorded in the state dir."""
    ids = replicas.stop_all(state_dir)
    click.echo(f"stopped {len(ids)} replica(s)")


@replica.command("list")
@_state_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def replica_list(state_dir: Path, as_json: bool) -> None:
    """List recorded replicas and whether their process is alive."""
    statuses = replicas.list_replicas(state_dir)
    if as_json:
        _echo_json([s.to_json() for s in statuses])
        return
    click.echo(f"{'ID':<24} {'ZONE':<12} {'MARKET':<10} {'PID':>8} {'PORT':>6}  ALIVE")
    for s in statuses:
        r = s.record
        click.echo(
            f"{r.replica_id:<24} {r.zone:<12} {r.market:<10} {r.pid:>8} {r.port:>6}  "
            f"{'yes' if s.alive else 'no'}"
        )


@replica.command("fault")
@_state_dir_option
@click.option("--id", "replica_id", required=True, help="Replica id, e.g. llama-3.")
@click.option(
    "--delay-ms",
    type=Whole(min=1, max=600_000),
    default=None,
    help="Answer the paths this many milliseconds late.",
)
@click.option(
    "--status",
    type=Whole(min=100, max=599),
    default=None,
    help="Answer the paths with this HTTP status instead, e.g. 500.",
)
@click.option(
    "--path",
    "paths",
    multiple=True,
    help=f"A path to fault; repeat for several. Default: {', '.join(PROBE_PATHS)}.",
)
@click.option("--clear", is_flag=True, help="Remove the replica's faults.")
def replica_fault(
    state_dir: Path,
    replica_id: str,
    delay_ms: int | None,
    status: int | None,
    paths: tuple[str, ...],
    clear: bool,
) -> None:
    """Make a replica answer its probe paths late (--delay-ms) or with an error (--status), as
    a sick model server would; --clear ends it. The replica picks the change up on its next
    request (it may be set before the replica is launched).

    Writes <state-dir>/replicas/faults/<id>.json atomically.
    """
    path = faults_path(replicas.replicas_dir(state_dir), check_name(replica_id, "replica id"))
    if clear:
        if delay_ms is not None or status is not None or paths:
            raise click.UsageError("--clear takes no --delay-ms, --status or --path")
        path.unlink(missing_ok=True)
        click.echo(f"{replica_id}: faults cleared")
        return
    if delay_ms is None and status is None:
        raise click.UsageError("give --delay-ms, --status (or both), or --clear")
    raw: dict[str, Any] = {"paths": list(paths or PROBE_PATHS)}
    if delay_ms is not None:
        raw["delay_ms"] = delay_ms
    if status is not None:
        raw["status"] = status
    try:
        faults = parse_faults(raw)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    write_json_atomic(path, faults.to_json())
    effects = [f"{delay_ms} ms late"] if delay_ms is not None else []
    effects += [f"HTTP {status}"] if status is not None else []
    click.echo(f"{replica_id}: {' and '.join(effects)} on {', '.join(faults.paths)}")


# -- spot market ------------------------------------------------------------------------------


@sandbox.group()
def market() -> None:
    """The spot market: per-zone capacity from a trace, preemptions with a warning."""


@market.command("run")
@_state_dir_option
@click.option(
    "--traces",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help=f"Trace directory, one <zone>_<gpu>_<n>.json per zone [default: {DEFAULT_TRACE_DIR}]",
)
@click.option(
    "--speed",
    type=float,
    default=DEFAULT_SPEED,
    show_default=True,
    help="Trace seconds per wall second (360: a trace hour in 10 s).",
)
@click.option(
    "--offset-hours",
    type=float,
    default=0.0,
    show_default=True,
    help="Start this far into the trace.",
)
@click.option(
    "--warning-seconds",
    type=float,
    default=DEFAULT_WARNING_SECONDS,
    show_default=True,
    help="Wall seconds between a preemption warning and the kill.",
)
@click.option(
    "--interval",
    type=float,
    default=market_daemon.DEFAULT_INTERVAL_S,
    show_default=True,
    help="Seconds between preemption checks.",
)
@click.option("--reset", is_flag=True, help="Restart the trace clock with these options.")
@click.option("--foreground", is_flag=True, help="Run in this process instead of a daemon.")
def market_run(
    state_dir: Path,
    traces: Path | None,
    speed: float,
    offset_hours: float,
    warning_seconds: float,
    interval: float,
    reset: bool,
    foreground: bool,
) -> None:
    """Create the market (the trace clock starts now) and start its daemon.

    Idempotent: when the market exists its clock and options are kept (use --reset to
    change them), and a running daemon is left alone.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    spot_market = SpotMarket.init(
        state_dir,
        now=time.time(),
        trace_dir=traces,
        speed=speed,
        offset_s=offset_hours * 3600,
        warning_seconds=warning_seconds,
        reset=reset,
    )
    if foreground:
        stop = threading.Event()
        try:
            market_daemon.run(state_dir, interval, stop)
        except KeyboardInterrupt:
            stop.set()
        return
    pid, started = market_daemon.start(state_dir, interval)
    _echo_json(
        {"pid": pid, "started": started, "zones": spot_market.zones, **spot_market.config.to_json()}
    )


@market.command("stop")
@_state_dir_option
def market_stop(state_dir: Path) -> None:
    """Stop the market daemon (the market's clock and overrides stay)."""
    stopped = market_daemon.stop(state_dir)
    click.echo("market daemon stopped" if stopped else "market daemon not running")


@market.command("status")
@_state_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def market_status(state_dir: Path, as_json: bool) -> None:
    """Capacity and usage per zone now, and whether the daemon runs."""
    status = SpotMarket.load(state_dir).status(time.time())
    status["daemon_pid"] = market_daemon.running_pid(state_dir)
    if as_json:
        _echo_json(status)
        return
    hours = status["trace_seconds"] / 3600
    click.echo(
        f"speed {status['speed']}x, trace hour {hours:.2f}, warning {status['warning_seconds']}s, "
        f"daemon {'pid ' + str(status['daemon_pid']) if status['daemon_pid'] else 'not running'}"
    )
    click.echo(f"{'ZONE':<12} {'CAPACITY':>8} {'SPOT':>5} {'ON-DEMAND':>9}  NOTE")
    for z in status["zones"]:
        note = "override" if z["override"] is not None else "trace"
        if z["warned"]:
            note += ", warned: " + ",".join(z["warned"])
        click.echo(
            f"{z['zone']:<12} {z['capacity']:>8} {z['spot_running']:>5} "
            f"{z['on_demand_running']:>9}  {note}"
        )


@market.command("set-capacity")
@_state_dir_option
@click.option("--zone", required=True)
@click.option("--capacity", type=Whole(min=0), default=None, help="Pin to N.")
@click.option("--follow-trace", is_flag=True, help="Drop the override; follow the trace.")
def market_set_capacity(
    state_dir: Path, zone: str, capacity: int | None, follow_trace: bool
) -> None:
    """Pin a zone's spot capacity (tests, demos) or let it follow the trace again."""
    if (capacity is None) == (not follow_trace):
        raise click.UsageError("give exactly one of --capacity N or --follow-trace")
    SpotMarket.load(state_dir).set_capacity(zone, None if follow_trace else capacity)
    click.echo(f"{zone}: {'follows the trace' if follow_trace else f'capacity {capacity}'}")


@market.command("check")
@_state_dir_option
def market_check(state_dir: Path) -> None:
    """Run one preemption check now (the daemon does this every interval)."""
    report = SpotMarket.load(state_dir).preemption_check(time.time())
    _echo_json([n.to_json() for n in (*report.warned, *report.preempted)])


@market.command("notices")
@_state_dir_option
@click.option(
    "--cursor",
    type=Whole(min=0),
    default=0,
    show_default=True,
    help="Byte offset returned by the previous call.",
)
def market_notices(state_dir: Path, cursor: int) -> None:
    """Print notices since a cursor, and the next cursor, as JSON."""
    notices, nxt = NoticeFeed(notices_path(state_dir)).read(cursor)
    _echo_json({"cursor": nxt, "notices": [n.to_json() for n in notices]})


# -- load balancer ----------------------------------------------------------------------------


@sandbox.group()
def lb() -> None:
    """The HAProxy load balancer; its backend `replicas` is the target group."""


def _lb_options(f: Any) -> Any:
    """--port, --check-path, --check-timeout, --tls-certfile/--tls-keyfile: the load balancer
    to start when none runs."""
    f = click.option(
        "--tls-cert-sha256",
        default=None,
        help="With the TLS files: serve them only if the certificate file still has this "
        "SHA-256 (the one the plan was made with).",
    )(f)
    f = click.option(
        "--tls-keyfile",
        default=None,
        help="With --tls-certfile: serve HTTPS with this PEM private key (service.tls); "
        "both empty: plain HTTP (default: as recorded).",
    )(f)
    f = click.option(
        "--tls-certfile",
        default=None,
        help="With --tls-keyfile: the PEM certificate (chain) to serve.",
    )(f)
    f = click.option(
        "--check-timeout",
        type=Whole(1, 3600),
        default=None,
        help="Seconds a health check may take (default: the recorded one, else 2).",
    )(f)
    f = click.option(
        "--check-path",
        default=None,
        help="HAProxy's health check: GET this path, expecting 200 (default: the recorded "
        "one, else /health); an empty value checks a TCP connect only.",
    )(f)
    return click.option(
        "--port",
        type=Whole(1, 65535),
        default=None,
        help="Frontend port on 127.0.0.1 (default: the recorded one).",
    )(f)


def _tls(certfile: str | None, keyfile: str | None) -> TLSFiles | Literal[False] | None:
    """None: as recorded; False: plain HTTP (both empty); else the files (both given)."""
    if certfile is None and keyfile is None:
        return None
    if not certfile and not keyfile:
        return False
    if not certfile or not keyfile:
        raise click.UsageError("give --tls-certfile and --tls-keyfile together (or both empty)")
    return TLSFiles(keyfile=absolute(keyfile), certfile=absolute(certfile))


def _balancer(
    state_dir: Path,
    port: int | None,
    check_path: str | None,
    check_timeout: int | None,
    tls_certfile: str | None = None,
    tls_keyfile: str | None = None,
    tls_cert_sha256: str | None = None,
) -> HAProxyLB:
    check = None
    if check_path is not None or check_timeout is not None:
        recorded = HAProxyLB(state_dir).check
        check = HealthCheck(
            recorded.path if check_path is None else (check_path or None),
            recorded.timeout_s if check_timeout is None else check_timeout,
        )
    return HAProxyLB(
        state_dir, port, check, _tls(tls_certfile, tls_keyfile), tls_cert_sha256 or None
    )


@lb.command("up")
@_state_dir_option
@_lb_options
def lb_up(
    state_dir: Path,
    port: int | None,
    check_path: str | None,
    check_timeout: int | None,
    tls_certfile: str | None,
    tls_keyfile: str | None,
    tls_cert_sha256: str | None,
) -> None:
    """Start HAProxy (idempotent); after a crash it restarts and re-adds the recorded servers.
    Running with TLS, a renewed certificate and key are swapped in without a restart."""
    state_dir.mkdir(parents=True, exist_ok=True)
    balancer = _balancer(
        state_dir, port, check_path, check_timeout, tls_certfile, tls_keyfile, tls_cert_sha256
    )
    if not balancer.port:
        raise click.UsageError("--port is required the first time")
    started = balancer.up()
    _echo_json({"port": balancer.port, "pid": balancer.pid(), "started": started})


@lb.command("down")
@_state_dir_option
def lb_down(state_dir: Path) -> None:
    """Stop HAProxy and forget its servers (like deleting the LB)."""
    stopped = HAProxyLB(state_dir).down()
    click.echo("load balancer stopped" if stopped else "load balancer not running")


@lb.command("status")
@_state_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def lb_status(state_dir: Path, as_json: bool) -> None:
    """Running or not, servers with health and request counts, and the request rate."""
    balancer = HAProxyLB(state_dir)
    running = balancer.is_running()
    data: dict[str, Any] = {
        "running": running,
        "port": balancer.port,
        "pid": balancer.pid(),
        "tls": balancer.tls,
    }
    if running:
        members = balancer.members()
        stats = balancer.server_stats()
        data["request_rate"] = balancer.request_rate()
        data["requests_total"] = balancer.requests_total()
        data["servers"] = {
            name: {
                "address": f"{host}:{port}",
                "status": stats[name].status if name in stats else "?",
                "req_tot": stats[name].req_tot if name in stats else 0,
            }
            for name, (host, port) in sorted(members.items())
        }
    if as_json:
        _echo_json(data)
        return
    if not running:
        click.echo("load balancer not running")
        return
    click.echo(
        f"HAProxy pid {data['pid']} on {'https' if balancer.tls else 'http'}://127.0.0.1:"
        f"{data['port']}, "
        f"{data['request_rate']} req/s, {data['requests_total']} requests"
    )
    for name, s in data["servers"].items():
        click.echo(f"  {name:<24} {s['address']:<22} {s['status']:<10} {s['req_tot']} requests")


@lb.command("set-members")
@_state_dir_option
@click.argument("replica_ids", nargs=-1)
@click.option(
    "--member",
    "extra",
    multiple=True,
    metavar="NAME=PORT",
    help="A server by explicit port on 127.0.0.1 (repeatable).",
)
@_lb_options
def lb_set_members(
    state_dir: Path,
    replica_ids: tuple[str, ...],
    extra: tuple[str, ...],
    port: int | None,
    check_path: str | None,
    check_timeout: int | None,
    tls_certfile: str | None,
    tls_keyfile: str | None,
    tls_cert_sha256: str | None,
) -> None:
    """Make the backend hold exactly REPLICA_IDS (ports from the replica records) plus any
    --member; no arguments empties it. Ids with no running replica (e.g. preempted) are
    skipped with a warning: a dead server would only fail its health check.

    A load balancer that is not running is started first, with the recorded port and check,
    or with --port/--check-path/--check-timeout/--tls-* when its record is gone (the front stack
    passes them, so a lost `lb.json` and a killed HAProxy are rebuilt by the next apply).
    New servers join before the ones they replace leave, which drain first."""
    members: dict[str, tuple[str, int]] = {}
    for rid in replica_ids:
        record = replicas.get(state_dir, check_name(rid, "replica id"))
        if record is None or not replicas.is_alive(record) or not record.port:
            click.echo(f"warning: replica {rid} is not running; not added", err=True)
            continue
        members[rid] = ("127.0.0.1", record.port)
    for item in extra:
        name, sep, member_port = item.partition("=")
        if not sep or not member_port.isdigit():
            raise click.BadParameter(f"{item!r}: expected NAME=PORT", param_hint="--member")
        members[check_name(name, "server name")] = ("127.0.0.1", int(member_port))
    balancer = _balancer(
        state_dir, port, check_path, check_timeout, tls_certfile, tls_keyfile, tls_cert_sha256
    )
    balancer.ensure_running()
    added, removed = balancer.set_members(members)
    _echo_json({"members": sorted(members), "added": added, "removed": removed})


# -- load -------------------------------------------------------------------------------------


@sandbox.command("load")
@click.option("--url", required=True, help="Loopback URL, e.g. http://127.0.0.1:8080.")
@click.option("--qps", type=Finite(min=0, min_open=True), required=True)
@click.option("--duration", type=Finite(min=0, min_open=True), required=True, help="Seconds.")
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Per request, s.")
@click.option(
    "--slo-ms",
    type=Finite(min=0, min_open=True),
    default=None,
    help="Latency target: also report the share of requests answered within it.",
)
@click.option(
    "--poisson-seed",
    type=Whole(min=0),
    default=None,
    help="Send as a Poisson process of rate --qps with this seed (default: evenly spaced).",
)
@click.option(
    "--cacert",
    type=click.Path(exists=True, dir_okay=False, readable=True),
    default=None,
    help="For an https URL (service.tls): verify against this certificate file only.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the full result as JSON.")
def load(
    url: str,
    qps: float,
    duration: float,
    timeout: float,
    slo_ms: float | None,
    poisson_seed: int | None,
    cacert: str | None,
    as_json: bool,
) -> None:
    """Send POST /v1/completions at a constant rate to a loopback URL and report successes,
    failures, latency percentiles and, with --slo-ms, the SLO attainment."""
    from reconciler.sandbox.loadgen import run_load  # numpy + requests: only this command

    result = run_load(
        url, qps, duration, timeout, slo_ms=slo_ms, poisson_seed=poisson_seed, cacert=cacert
    )
    if as_json:
        _echo_json(result.to_json())
        return

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f} ms"

    click.echo(
        f"sent {result.sent}, successes {result.successes}, failures {result.failures}, "
        f"p50 {ms(result.p50_ms)}, p90 {ms(result.p90_ms)}, p99 {ms(result.p99_ms)}, "
        f"achieved {result.achieved_qps:.1f} qps"
        + (
            ""
            if result.slo_attainment is None
            else f", within {result.slo_ms:g} ms: {100 * result.slo_attainment:.1f} %"
        )
    )
    for error, count in sorted(result.errors.items()):
        click.echo(f"  {error}: {count}")


if __name__ == "__main__":
    sys.exit(sandbox())
