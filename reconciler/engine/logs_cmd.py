"""`hedgeform logs SERVICE [REPLICA]`: a replica's output, the reconciler's own log, the load
balancer's.

On the sandbox a replica's output is its log file (`state/<service>/sandbox/replicas/<id>.log`,
kept after the replica stops); on a cloud the command says in one line where to read a VM's
console (no adapter reads one yet). The reconciler's log is the tick log
(`state/<service>/ticks.jsonl`, one JSON record per tick of `hedgeform run` and per pass of
`hedgeform apply`). The sandbox's
HAProxy runs as a daemon without syslog and writes no log file: its log (each request, each
server going up or down) is a ring buffer in its memory (the last 256 KiB), which `--lb` reads
over the admin socket.

`--tail N` prints the last N lines (read from the end of the file, never the whole of it);
`--follow` then polls the file, starting over when it is truncated or replaced (rotation),
until Ctrl-C (exit 0).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import click

from reconciler.backends.sandbox import SandboxCloud
from reconciler.click_types import Whole
from reconciler.engine.commands import (
    _fail,
    _reading_reconciler,
    port_opt,
    root_opt,
    service_arg,
)
from reconciler.engine.reconcile import Reconciler
from reconciler.engine.status_view import TICKS_FILE
from reconciler.errors import HedgeformError, InputError, SandboxError, SpecError
from reconciler.paths import ServicePaths
from reconciler.sandbox import replicas
from reconciler.sandbox.haproxy import HAProxyLB

BLOCK = 64 * 1024
POLL_S = 0.5
# Where a cloud keeps a VM's console, for the one line `logs` prints on a cloud.
CONSOLE_HINTS = {
    "aws": "aws ec2 get-console-output --latest --output text --region {region} "
    "--instance-id {instance} (or the EC2 console: Actions > Monitor and troubleshoot > "
    "Get system log)",
    "gcp": "gcloud compute instances get-serial-port-output {name} --zone {zone} (or Cloud "
    "Logging, resource type gce_instance)",
    "azure": "az vm boot-diagnostics get-boot-log --ids {instance} (boot diagnostics must be on)",
}
LB_HINTS = {
    "aws": "the ALB's access logs, when enabled on it, in their S3 bucket",
    "gcp": "Cloud Logging, resource type http_load_balancer",
    "azure": "the load balancer's diagnostic settings (Log Analytics)",
}


def tail_lines(path: Path, n: int) -> list[str]:
    """The last `n` lines of a file (without their newlines), read backwards by blocks."""
    if n <= 0:
        return []
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        end = fh.tell()
        data = b""
        while end > 0 and data.count(b"\n") <= n:
            start = max(0, end - BLOCK)
            fh.seek(start)
            data = fh.read(end - start) + data
            end = start
    lines = data.decode(errors="replace").splitlines()
    return lines[-n:]


def follow(
    path: Path,
    echo: Callable[[str], object],
    *,
    poll_s: float = POLL_S,
    keep_going: Callable[[], bool] = lambda: True,
    sleep: Callable[[float], object] = time.sleep,
) -> None:
    """Print what is appended to `path` from its current end, line by line, while
    `keep_going()`; a file truncated (smaller than what was read) or replaced (another inode:
    rotated) is read again from its start; a missing file is waited for."""
    position, inode = _end(path)
    pending = b""
    while keep_going():
        try:
            stat = path.stat()
        except FileNotFoundError:
            sleep(poll_s)
            continue
        if stat.st_ino != inode or stat.st_size < position:
            position, inode, pending = 0, stat.st_ino, b""
        if stat.st_size > position:
            with open(path, "rb") as fh:
                fh.seek(position)
                chunk = fh.read(stat.st_size - position)
            position += len(chunk)
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                echo(line.decode(errors="replace"))
            continue
        sleep(poll_s)


def _end(path: Path) -> tuple[int, int | None]:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return 0, None
    return stat.st_size, stat.st_ino


def known_replicas(sandbox: Path) -> list[str]:
    """Replica ids with a record or a log file in a sandbox (a stopped one keeps its log)."""
    rdir = replicas.replicas_dir(sandbox)
    if not rdir.is_dir():
        return []
    ids = {p.stem for p in rdir.glob("*.json") if not p.name.startswith(".")}
    ids |= {p.stem for p in rdir.glob("*.log") if not p.name.startswith(".")}
    return sorted(ids)


def _unknown(service: str, rid: str, known: list[str]) -> InputError:
    listed = ", ".join(known) if known else "none"
    return InputError(f"{service} has no replica {rid!r}; its replicas: {listed}")


@click.command("logs")
@service_arg
@click.argument("replica", required=False)
@port_opt
@root_opt
@click.option(
    "--lb", is_flag=True, help="The load balancer's log instead (sandbox: HAProxy's ring buffer)."
)
@click.option(
    "--tail",
    "tail",
    type=Whole(0, 100_000, unit="lines"),
    default=50,
    show_default=True,
    help="Print the last N lines (0 to 100000).",
)
@click.option(
    "--follow", "-f", "follow_", is_flag=True, help="Keep printing new lines until Ctrl-C (exit 0)."
)
def logs(
    service: str,
    replica: str | None,
    lb_port: int | None,
    root: Path | None,
    lb: bool,
    tail: int,
    follow_: bool,
) -> None:
    """Print a log of SERVICE: with REPLICA, that replica's output; with --lb, the load
    balancer's; else the reconciler's own (state/SERVICE/ticks.jsonl, one JSON record per
    tick of `hedgeform run`: the decision and its reasons, the plan, errors).

    \b
    Sandbox: a replica's output is state/SERVICE/sandbox/replicas/REPLICA.log (kept after
    it stops). HAProxy keeps its log (each request; each server going up or down, and why)
    in a ring buffer in its memory, the last 256 KiB: --lb reads it over the admin socket.
    Clouds: one line saying where to read the VM's console (AWS get-console-output, GCP
    serial port output, Azure boot diagnostics); no API is called.

    \b
    Without the service file (moved, deleted, broken): the tick log, and on the sandbox the
    replicas' logs and HAProxy's, are read from state/SERVICE alone (as `status` and `cost`
    then show what the state knows).
    """
    try:
        if replica is not None and lb:
            raise InputError("give REPLICA or --lb, not both")
        try:
            rec = _reading_reconciler(service, lb_port, root)
        except SpecError as exc:  # gone or broken: the logs are on disk all the same
            paths = ServicePaths.for_service(service, **({"root": root} if root else {}))
            path = _state_only(service, paths, replica, lb, exc)
            if path is None:
                _lb_view(paths.sandbox_dir, tail, follow_)
                return
        else:
            if isinstance(rec.cloud, SandboxCloud):
                path = _sandbox_log(service, rec.paths, replica, lb)
                if path is None:
                    _lb_view(rec.paths.sandbox_dir, tail, follow_)
                    return
            elif replica is None and not lb:
                path = rec.paths.state_dir / TICKS_FILE
            else:
                _cloud_hint(rec, service, replica)
                return
    except HedgeformError as exc:
        raise _fail(exc) from None
    _print_file(path, tail, follow_)


def _sandbox_log(service: str, paths: ServicePaths, replica: str | None, lb: bool) -> Path | None:
    """The file to print for a sandbox service: REPLICA's log, else the tick log; None for
    --lb (HAProxy's ring buffer, `_lb_view`)."""
    if lb:
        return None
    if replica is None:
        return paths.state_dir / TICKS_FILE
    sandbox = paths.sandbox_dir
    known = known_replicas(sandbox)
    if replica not in known:
        raise _unknown(service, replica, known)
    return replicas.replicas_dir(sandbox) / f"{replica}.log"


def _state_only(
    service: str, paths: ServicePaths, replica: str | None, lb: bool, problem: SpecError
) -> Path | None:
    """`_sandbox_log` without a usable service file, from what the state directory holds
    (as `status` of a destroyed service reads it): the tick log always, a sandbox's replica logs and
    HAProxy's. A cloud's hints need the spec's stacks: one line saying so."""
    if not paths.state_dir.is_dir():
        raise problem
    if paths.sandbox_dir.is_dir() or (replica is None and not lb):
        return _sandbox_log(service, paths, replica, lb)
    why = str(problem).splitlines()[0]
    what = "the load balancer's log" if lb else f"{replica}'s console"
    raise InputError(
        f"{why} (needed to say where {what} is; `hedgeform logs {service}`, the tick log, "
        "works without it)"
    )


def _cloud_hint(rec: Reconciler, service: str, replica: str | None) -> None:
    """One line saying where a cloud keeps a VM's console (REPLICA) or the load balancer's
    log (--lb); no API is called."""
    clouds = sorted({s.cloud for s in rec.stacks.values() if s.region})
    if replica is None:
        where = "; ".join(f"{c}: {LB_HINTS.get(c, 'its console')}" for c in clouds)
        click.echo(f"{service}: hedgeform does not read a cloud load balancer's log; {where}")
        return
    managed = {m.id: m for m in rec.managed()}
    if replica not in managed:
        raise _unknown(service, replica, sorted(managed))
    m = managed[replica]
    stack = rec.stacks.get(m.stack)
    cloud, region = (stack.cloud, stack.region) if stack else ("", "")
    hint = CONSOLE_HINTS.get(cloud, "the cloud's console")
    instance = m.instance_id or f"<the instance of {replica}>"
    name = m.name or instance
    click.echo(
        f"{replica}: hedgeform does not read a cloud VM's console; see "
        + hint.format(region=region, zone=m.zone, instance=instance, name=name)
    )


def _print_file(path: Path, tail: int, follow_: bool) -> None:
    if not path.exists() and not follow_:
        click.echo(f"{path}: no log yet")
        return
    if path.exists():
        for line in tail_lines(path, tail):
            click.echo(line)
    if follow_:
        try:
            follow(path, click.echo)
        except KeyboardInterrupt:
            return


def new_lines(before: list[str], now: list[str]) -> list[str]:
    """The lines of `now` after those already seen in `before` (a ring buffer's two reads:
    the old part may have rotated out); all of `now` when they share nothing."""
    if not before:
        return now
    for start in range(len(now), 0, -1):  # the longest suffix of `before` `now` starts with
        if now[:start] == before[-start:]:
            return now[start:]
    return now


def _lb_view(sandbox: Path, tail: int, follow_: bool) -> None:
    """HAProxy's log from its ring buffer: the last `tail` lines, then, with `follow_`, new
    ones every POLL_S seconds until Ctrl-C."""
    balancer = HAProxyLB(sandbox)
    if not balancer.is_running():
        raise InputError("the load balancer is not running: it keeps its log in memory only")
    seen = balancer.log_lines()
    for line in seen[-tail:] if tail else []:
        click.echo(line)
    try:
        while follow_:
            time.sleep(POLL_S)
            try:
                now = balancer.log_lines()
            except SandboxError:  # restarted meanwhile: its new log when it answers again
                now = []
            for line in new_lines(seen, now):
                click.echo(line)
            seen = now
    except KeyboardInterrupt:
        return
