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
import functools
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from reconciler.engine.reconcile import Reconciler, default_runner_factory
from reconciler.errors import SandboxError
from reconciler.paths import NAME_RE, ServicePaths
from reconciler.sandbox import market_daemon, processes, replicas
from reconciler.sandbox.haproxy import HAProxyLB
from reconciler.sandbox.processes import OwnedProcess
from reconciler.stacks import FRONT
from reconciler.terraform.runner import MODULE_NAME, ROOT_CONFIG, RunnerConfig, TerraformRunner
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


def recorded_alive(sandbox: Path) -> list[OwnedProcess]:
    """Live processes the sandbox's pid files and records still name and that are still what
    they were started as (HAProxy with a `haproxy/haproxy.cfg`, the market daemon, a replica
    server of that id), whatever path their arguments and marker hold: after the project was
    moved, neither the marker nor the argv carries the new path. Not those started for
    another sandbox directory that still exists: the records were copied with a project,
    and the processes are the original's."""
    named: dict[int, Callable[[tuple[str, ...]], bool]] = {}
    for path in (sandbox / "haproxy" / "haproxy.pid", sandbox / "market.pid"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int(path.read_text().split()[0])
            named[pid] = _is_haproxy if path.name == "haproxy.pid" else _is_market_daemon
    rdir = replicas.replicas_dir(sandbox)
    for path in sorted(rdir.glob("*.json")) if rdir.is_dir() else []:
        with contextlib.suppress(SandboxError):
            record = replicas.get(sandbox, path.stem)
            if record is not None:
                named[record.pid] = functools.partial(_is_replica, record.replica_id)
    here = str(sandbox.resolve())
    alive = []
    for pid, looks_right in sorted(named.items()):
        argv = processes.cmdline(pid) if pid > 1 else None
        if argv is None or not looks_right(tuple(argv)):
            continue
        origin = processes.sandbox_of(argv)
        if origin is not None and origin != here and Path(origin).exists():
            continue  # a copied project's records: the process is the original's
        alive.append(OwnedProcess(pid, tuple(argv)))
    return alive


def _is_replica(replica_id: str, argv: tuple[str, ...]) -> bool:
    return replicas.replica_id_of(argv) == replica_id


def _is_haproxy(argv: tuple[str, ...]) -> bool:
    return os.path.basename(argv[0]) == "haproxy" and any(
        a.endswith("/haproxy/haproxy.cfg") for a in argv
    )


def _is_market_daemon(argv: tuple[str, ...]) -> bool:
    return market_daemon.MODULE in argv


def stop_leftovers(
    sandbox: Path, stack_dirs: Sequence[Path], named: Sequence[OwnedProcess] = ()
) -> list[OwnedProcess]:
    """Stop every process still carrying the marker of `sandbox`, named by its records now or
    in `named` (recorded_alive taken before the records were cleared) (SIGTERM, then SIGKILL
    after 5 s; only while its argv is the one found), and the stray provider plugins of these
    stacks. Returns those that were running, by pid."""
    found = {p.pid: p for p in [*processes.owned_by(sandbox), *recorded_alive(sandbox)]}
    found.update({p.pid: p for p in named if _unchanged(p)})
    ended = [p for p in found.values() if processes.terminate(p.pid, p.argv)]
    return sorted([*ended, *stop_stray_providers(stack_dirs)], key=lambda p: p.pid)


def _unchanged(proc: OwnedProcess) -> bool:
    """Still running the argv it was found with (not exited, its pid not reused)."""
    return tuple(processes.cmdline(proc.pid) or ()) == proc.argv


def still_running(
    sandbox: Path, stack_dirs: Sequence[Path], named: Sequence[OwnedProcess] = ()
) -> list[OwnedProcess]:
    """The verification scan: processes carrying the marker of `sandbox` or named by its
    records (recorded_alive), and any Terraform
    or provider plugin whose working directory is one of these stacks, by pid."""
    found = {p.pid: p for p in [*processes.owned_by(sandbox), *recorded_alive(sandbox)]}
    found.update({p.pid: p for p in named if _unchanged(p)})
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


@dataclass(frozen=True)
class StackToDestroy:
    """One stack `destroy` runs Terraform in, and how to get its runner."""

    name: str
    dir: Path
    runner: Callable[[], TerraformRunner]

    @property
    def var_file(self) -> Path:
        return self.dir / "terraform.tfvars.json"


def stacks_on_disk(paths: ServicePaths) -> dict[str, Path]:
    """Stacks a past apply left under `state/<service>/`: name -> the module its root
    configuration (terraform/runner.py ROOT_CONFIG) uses. Only directories with a plain name,
    their tfvars and a root configuration naming one of the project's modules count; the
    rest (plans, the sandbox, a hand-edited source) is left alone."""
    found: dict[str, Path] = {}
    if not paths.state_dir.is_dir():
        return found
    modules = paths.root / "terraform" / "modules"
    for stack_dir in sorted(p for p in paths.state_dir.iterdir() if p.is_dir()):
        if not NAME_RE.fullmatch(stack_dir.name):
            continue
        config = stack_dir / ROOT_CONFIG
        if not (stack_dir / "terraform.tfvars.json").is_file() or not config.is_file():
            continue
        try:
            source = json.loads(config.read_text())["module"][MODULE_NAME]["source"]
            module = (stack_dir / str(source)).resolve()
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if module.parent == modules.resolve() and NAME_RE.fullmatch(module.name):
            found[stack_dir.name] = module
    return found


def stacks_to_destroy(paths: ServicePaths, rec: Reconciler | None) -> list[StackToDestroy]:
    """The service file's stacks (when it loads) and every stack on disk, front first."""
    disk = stacks_on_disk(paths)
    known = rec.stack_names if rec is not None else []
    names = [FRONT, *known, *sorted(disk)]
    factory = default_runner_factory(paths.root, RunnerConfig(lock_timeout_s=30))
    out: list[StackToDestroy] = []
    for name in dict.fromkeys(names):
        stack_dir = paths.stack_dir(name)
        if rec is not None and name in rec.stacks:
            out.append(StackToDestroy(name, stack_dir, functools.partial(rec.runner, name)))
        elif name in disk:
            make = functools.partial(factory, name, stack_dir, disk[name])
            out.append(StackToDestroy(name, stack_dir, make))
    return out
