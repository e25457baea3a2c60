"""Daemon processes that outlive their launcher (like VMs outlive the API call that made them),
and liveness checks that cannot be fooled by a recycled pid."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import reconciler

# The directory that holds the `reconciler` package, so a daemon started with `python -m`
# imports this same code even when the project is not installed.
PROJECT_ROOT = str(Path(reconciler.__file__).resolve().parent.parent)


def python_module_argv(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


# Every daemon the sandbox starts for a state dir carries `HEDGEFORM_SANDBOX=<that dir,
# resolved>` in its environment, so `owned_by` finds it when its record (a replica's JSON, a
# pid file) is lost. Nothing else sets it: `child_env` drops an inherited one.
OWNER_ENV = "HEDGEFORM_SANDBOX"


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment for a child: the project on PYTHONPATH, unbuffered output,
    then `extra`; without an inherited HEDGEFORM_SANDBOX (only `owned_env` sets it)."""
    env = dict(os.environ)
    env.pop(OWNER_ENV, None)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = PROJECT_ROOT if not path else f"{PROJECT_ROOT}{os.pathsep}{path}"
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env


def owner_marker(owner: Path) -> str:
    """`HEDGEFORM_SANDBOX=<owner resolved to an absolute path>`: the environment entry that
    marks a daemon as belonging to the sandbox state dir `owner`."""
    return f"{OWNER_ENV}={Path(owner).resolve()}"


def owned_env(owner: Path, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """`env` (default: `child_env()`) plus the marker of the sandbox state dir `owner`."""
    out = dict(child_env() if env is None else env)
    out[OWNER_ENV] = str(Path(owner).resolve())
    return out


def spawn_daemon(argv: Sequence[str], log_path: Path, env: Mapping[str, str], owner: Path) -> int:
    """Start `argv` in a new session with stdio on `log_path`; return its pid without waiting.

    A new session detaches it from the caller's terminal and process group, so Ctrl-C or the
    caller's exit (Terraform finishing a provisioner) does not reach it; init reaps it later.
    Its environment is `env` marked as owned by the sandbox state dir `owner` (owned_env),
    so `owned_by(owner)` finds it even if the caller's record of its pid is lost.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            cwd="/",
            env=owned_env(owner, env),
        )
    return proc.pid


def cmdline(pid: int) -> list[str] | None:
    """argv of a running (non-zombie) process, or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # Field 3 (after the parenthesised command name) is the state; Z = zombie, X = dead.
    state = stat.rsplit(")", 1)[-1].split()[0] if ")" in stat else "?"
    if state in ("Z", "X") or not raw:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


@dataclass(frozen=True)
class OwnedProcess:
    """A live process found by `owned_by`: its pid and argv."""

    pid: int
    argv: tuple[str, ...]

    @property
    def name(self) -> str:
        """The program's file name (`haproxy`, `python3.11`, `terraform-provider-null`)."""
        return os.path.basename(self.argv[0]) if self.argv else ""


def owned_by(owner: Path) -> list[OwnedProcess]:
    """Live, non-zombie processes whose environment holds exactly `owner_marker(owner)`, by
    pid; never the calling process. A process whose environment cannot be read (another
    user's, or one that exits meanwhile) is skipped. Linux /proc only; elsewhere [].

    Reads only `/proc/<pid>/environ` of each process (the environment it was started with,
    NUL-separated), then the argv of the few that match."""
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    needle = owner_marker(owner).encode()
    me = os.getpid()
    found: list[OwnedProcess] = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            raw = (entry / "environ").read_bytes()
        except OSError:  # gone, or not ours to read (PermissionError)
            continue
        if needle not in raw or needle not in raw.split(b"\0"):
            continue
        argv = cmdline(int(entry.name))
        if argv is not None:
            found.append(OwnedProcess(int(entry.name), tuple(argv)))
    return sorted(found, key=lambda p: p.pid)


def is_alive(pid: int, markers: Sequence[str]) -> bool:
    """True when `pid` runs and its argv contains every marker (so a pid recycled by an
    unrelated process does not count)."""
    if pid <= 1:
        return False
    argv = cmdline(pid)
    if argv is None:
        return False
    return all(m in argv for m in markers)


def _reap(pid: int) -> None:
    """Collect the exit status when `pid` is our own child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _exited(pid: int, markers: Sequence[str]) -> bool:
    """Gone, a zombie, or the pid now belongs to another program. A process that is still
    exiting (empty cmdline, not yet a zombie) may hold its ports, so it does not count yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    state = stat.rsplit(")", 1)[-1].split()[0] if ")" in stat else "?"
    if state in ("Z", "X"):
        return True
    argv = cmdline(pid)
    return argv is not None and not all(m in argv for m in markers)


def _wait_gone(pid: int, markers: Sequence[str], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        _reap(pid)
        if _exited(pid, markers):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def terminate(pid: int, markers: Sequence[str], grace_seconds: float = 5.0) -> bool:
    """SIGTERM, then SIGKILL after `grace_seconds`; returns once the process has fully exited
    (its ports are free). True when a live process was ended, False when it was already gone.
    Only signals a pid whose argv matches `markers`."""
    if not is_alive(pid, markers):
        _wait_gone(pid, markers, grace_seconds)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if _wait_gone(pid, markers, grace_seconds):
        return True
    if is_alive(pid, markers):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _wait_gone(pid, markers, 5.0)
    return True


def wait_port_free(port: int, timeout: float, host: str = "127.0.0.1") -> bool:
    """Wait for a port held by a process that is still exiting (e.g. a crashed HAProxy)."""
    deadline = time.monotonic() + timeout
    while port_in_use(port, host):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (callers that can should bind port 0 themselves)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def sandbox_of(argv: Sequence[str]) -> str | None:
    """The sandbox directory a sandbox daemon was started for, read from its arguments: a
    replica's `--port-file=<sandbox>/replicas/<id>.port`, HAProxy's
    `-f <sandbox>/haproxy/haproxy.cfg`, the market daemon's `--state-dir=<sandbox>`; None for
    anything else. The marker in the environment names it too, but only this survives in a
    process started before the project was moved or copied."""
    for n, arg in enumerate(argv):
        if arg.startswith("--port-file="):
            return str(Path(arg.removeprefix("--port-file=")).parent.parent)
        if arg.startswith("--state-dir="):
            return arg.removeprefix("--state-dir=")
        if arg == "-f" and n + 1 < len(argv):
            return str(Path(argv[n + 1]).parent.parent)
    return None
