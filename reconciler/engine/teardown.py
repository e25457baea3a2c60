"""What `destroy` must not leave running, found by more than the records.

The records (replica JSON files, `haproxy.pid`, `market.pid`, Terraform's state) say what a
service runs, but a record can be lost: a `kill -9` between a spawn and its record, a file
deleted by hand. So `destroy` also finds the service's processes without them: every daemon
the sandbox starts carries `HEDGEFORM_SANDBOX=<sandbox dir>` in its environment
(processes.owned_by), and Terraform's provider plugins run in their stack directory
(tfstate.terraform_processes). It stops what it finds, then scans again, and says that
nothing is left running only when that scan found nothing (`verify`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from reconciler.errors import SandboxError
from reconciler.sandbox import market_daemon, processes, replicas
from reconciler.sandbox.haproxy import HAProxyLB
from reconciler.sandbox.processes import OwnedProcess
from reconciler.terraform.state import (
    stop_stray_terraform,
    stray_terraform_processes,
    terraform_processes,
)


def label(proc: OwnedProcess) -> str:
    """What a process is, for a message: `replica <id>`, `market daemon`, or its program's
    file name (`haproxy`, `terraform-provider-null`)."""
    replica_id = replicas.replica_id_of(proc.argv)
    if replica_id is not None:
        return f"replica {replica_id}"
    if market_daemon.MODULE in proc.argv:
        return "market daemon"
    return proc.name or "unknown"


def describe(procs: Iterable[OwnedProcess]) -> str:
    """`12345 (replica local-1a-spot-3), 12399 (haproxy)`: by pid, each pid once."""
    unique = {p.pid: p for p in procs}
    return ", ".join(f"{pid} ({label(unique[pid])})" for pid in sorted(unique))


def _recorded_pids(sandbox: Path) -> set[int]:
    """Pids the sandbox's records name (replicas, HAProxy, the market daemon), alive or not;
    an unreadable record names none."""
    pids: set[int] = set()
    rdir = replicas.replicas_dir(sandbox)
    for path in sorted(rdir.glob("*.json")) if rdir.is_dir() else []:
        if path.name.startswith("."):
            continue
        with contextlib.suppress(SandboxError):
            record = replicas.get(sandbox, path.stem)
            if record is not None:
                pids.add(record.pid)
    with contextlib.suppress(SandboxError):
        pid = HAProxyLB(sandbox).pid()
        if pid is not None:
            pids.add(pid)
    pid = market_daemon.running_pid(sandbox)
    if pid is not None:
        pids.add(pid)
    return pids


def unrecorded(sandbox: Path) -> list[OwnedProcess]:
    """Processes carrying the marker of `sandbox` that no record of it names (a replica whose
    JSON is gone, a HAProxy whose pid file is), by pid. Nothing is stopped."""
    recorded = _recorded_pids(sandbox)
    return [p for p in processes.owned_by(sandbox) if p.pid not in recorded]


def stop_stray_providers(stack_dirs: Sequence[Path]) -> list[OwnedProcess]:
    """Stop the provider plugins whose Terraform died in these stacks
    (tfstate.stop_stray_terraform: SIGTERM, then SIGKILL) and return them, by pid."""
    seen = {pid: processes.cmdline(pid) for pid in stray_terraform_processes(stack_dirs)}
    stopped = stop_stray_terraform(stack_dirs)
    return [OwnedProcess(pid, tuple(seen.get(pid) or ("terraform-provider",))) for pid in stopped]


def stop_leftovers(sandbox: Path, stack_dirs: Sequence[Path]) -> list[OwnedProcess]:
    """Stop every process still carrying the marker of `sandbox` (SIGTERM, then SIGKILL after
    5 s; only while its argv is the one found) and the stray provider plugins of these
    stacks. Returns those that were running, by pid."""
    ended = [p for p in processes.owned_by(sandbox) if processes.terminate(p.pid, p.argv)]
    return sorted([*ended, *stop_stray_providers(stack_dirs)], key=lambda p: p.pid)


def still_running(sandbox: Path, stack_dirs: Sequence[Path]) -> list[OwnedProcess]:
    """The verification scan: processes carrying the marker of `sandbox`, and any Terraform
    or provider plugin whose working directory is one of these stacks, by pid."""
    found = {p.pid: p for p in processes.owned_by(sandbox)}
    for pid in terraform_processes(stack_dirs):
        argv = processes.cmdline(pid)
        if argv is not None:
            found.setdefault(pid, OwnedProcess(pid, tuple(argv)))
    return [found[pid] for pid in sorted(found)]


def verify(
    stopped: Sequence[OwnedProcess], scan: Callable[[], Sequence[OwnedProcess]]
) -> tuple[list[str], list[str]]:
    """Run `scan` once (still_running) after a teardown that stopped `stopped` (processes
    the records did not name). Returns (lines to print, error lines):
    `stopped unrecorded processes: <describe>` naming those of `stopped` the scan no longer
    finds, and, when the scan finds anything, `still running after destroy: <describe>`.
    No error line means the scan found nothing."""
    left = list(scan())
    left_pids = {p.pid for p in left}
    gone = [p for p in stopped if p.pid not in left_pids]
    lines = [f"stopped unrecorded processes: {describe(gone)}"] if gone else []
    errors = (
        [f"still running after destroy: {describe(left)} (stop them with `kill PID`)"]
        if left
        else []
    )
    return lines, errors
