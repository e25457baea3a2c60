"""What Terraform manages, read from a stack's state (format version 4): its local state file,
or, for a stack whose state is in a remote backend, what `terraform state pull` returned.

This is the level the reconciler works from: the replicas Terraform holds, and which of them
failed to create (Terraform marks those `tainted`). Reading the JSON directly costs
microseconds where `terraform state list` costs a process per stack.

A state file is read exactly as Terraform 1.0 reads it: a 0-byte file is an empty state (what
a Terraform killed between taking its lock and its first write leaves), anything else that is
not a JSON state is refused. The end of the module answers the other questions such a kill
raises: is a stack's state lock still held, and which provider plugins lost their Terraform.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from reconciler.errors import TfStateError

STATE_FILE = "terraform.tfstate"
# How long to wait out a Terraform still holding a stack's state lock (a killed pass's, or
# one run by hand): the runner's `-lock-timeout` (RunnerConfig.lock_timeout_s).
LOCK_WAIT_S = 30.0


class RemoteStates:
    """Stacks whose state is in a remote backend, read through Terraform.

    The reconciler registers each such stack with its runner's `state_pull`; `read_state` of
    the stack's state path then returns the pulled state instead of opening a file (there is
    none: with a remote backend Terraform keeps no local copy). A pull is one Terraform
    process, so it happens once per stack until `forget` (the reconciler forgets at the
    start of every pass and after every apply, so each pass sees the backend as it is).
    Keyed by the stack directory's absolute path, so reconcilers of different services or
    project roots in one process never share an entry."""

    def __init__(self) -> None:
        self._pull: dict[Path, Callable[[], bytes]] = {}
        self._pulled: dict[Path, bytes] = {}
        self._lock = threading.Lock()

    def register(self, stack_dir: Path, pull: Callable[[], bytes]) -> None:
        key = stack_dir.absolute()
        with self._lock:
            self._pull[key] = pull
            self._pulled.pop(key, None)

    def forget(self, stack_dirs: Iterable[Path]) -> None:
        with self._lock:
            for stack_dir in stack_dirs:
                self._pulled.pop(stack_dir.absolute(), None)

    def read(self, stack_dir: Path) -> bytes | None:
        """The pulled state of a registered stack (pulling it if needed), None otherwise."""
        key = stack_dir.absolute()
        pull = self._pull.get(key)
        if pull is None:
            return None
        cached = self._pulled.get(key)
        if cached is None:
            cached = pull()
            with self._lock:
                self._pulled[key] = cached
        return cached


REMOTE = RemoteStates()


def state_bytes(stack_dir: Path) -> bytes:
    """The stack's state as bytes (b"" for none): pulled for a remote backend, else the file."""
    pulled = REMOTE.read(stack_dir)
    if pulled is not None:
        return pulled
    path = stack_dir / STATE_FILE
    return path.read_bytes() if path.exists() else b""


def read_state(path: Path) -> dict[str, Any] | None:
    """A stack's state as Terraform 1.0 reads it, or None for "no state yet". For a stack in
    a remote backend (`REMOTE`), the state `terraform state pull` returned, read the same way.

    Terraform's local backend (internal/states/statemgr/filesystem.go) treats a missing file
    as no state, and `statefile.Read` (internal/states/statefile/read.go) returns ErrNoState
    for a 0-byte one, which the backend accepts as no state either: `plan`, `apply` and
    `destroy` run on it (checked with Terraform 1.0.3). A 0-byte file is what a Terraform
    killed after `Lock` (which opens the file with O_CREATE) and before its first write
    leaves. Anything else must parse as JSON: Terraform refuses even a whitespace-only file
    ("Unsupported state file format: ... syntax error at byte offset 1"), and so do we."""
    pulled = REMOTE.read(path.parent) if path.name == STATE_FILE else None
    try:
        text = pulled if pulled is not None else path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise TfStateError(f"{path}: unreadable Terraform state ({exc})") from exc
    if not text:
        return None
    try:
        raw = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TfStateError(
            f"{path}: unreadable Terraform state ({exc}); Terraform refuses it too"
        ) from exc
    if not isinstance(raw, dict):
        raise TfStateError(f"{path}: not a Terraform state (a JSON object)")
    return raw


def state_resources(path: Path) -> list[dict[str, Any]]:
    raw = read_state(path)
    if raw is None:
        return []
    if raw.get("version") != 4:
        raise TfStateError(f"{path}: not a Terraform state of format version 4")
    resources = raw.get("resources", [])
    return resources if isinstance(resources, list) else []


def state_outputs(stack_dir: Path) -> dict[str, Any]:
    """The module's outputs as the last apply saved them (the root config re-exports the whole
    module as output `stack`), `{}` before the first apply. No Terraform process needed."""
    raw = read_state(stack_dir / STATE_FILE)
    if raw is None:
        return {}
    value = (raw.get("outputs") or {}).get("stack", {}).get("value")
    return dict(value) if isinstance(value, dict) else {}


# -- what a killed Terraform leaves: a lock-info file, provider plugins ----------------------


def state_lock_held(stack_dir: Path) -> bool:
    """Whether a live process holds Terraform's lock on the stack's state.

    Terraform 1.0's local backend locks with fcntl, not with a file: `Lock` opens
    `terraform.tfstate` and takes `fcntl(F_SETLK)` with a write lock on the whole file
    (internal/states/statemgr/filesystem_lock_unix.go); `.terraform.tfstate.lock.info` is
    only information for the error message, written after the lock is taken and removed by
    `Unlock` (filesystem.go). The kernel drops an fcntl lock when its process dies, so after
    a kill -9 the info file outlives a lock nobody holds, and the next Terraform simply takes
    the lock and overwrites it (checked with Terraform 1.0.3). So: try the same lock,
    non-blocking, from a throwaway descriptor. Refused -> a Terraform is still running here
    (`-lock-timeout` waits it out); granted -> released at once; a concurrent Terraform
    that hits the instant we hold it retries within its own `-lock-timeout`. A BSD `flock`
    on the file is a different lock, which Terraform ignores, and so does this.
    """
    try:
        fd = os.open(stack_dir / STATE_FILE, os.O_RDWR)
    except FileNotFoundError:
        return False  # `Lock` creates the file first: no file, no lock
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EAGAIN):
                return True
            raise TfStateError(f"{stack_dir / STATE_FILE}: cannot test its lock ({exc})") from exc
        fcntl.lockf(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)  # this process holds no other fcntl lock on the file to lose


def wait_for_state_locks(stack_dirs: Iterable[Path], timeout_s: float | None = None) -> list[Path]:
    """Wait until no live process holds the state lock of these stacks (state_lock_held),
    up to `timeout_s` (LOCK_WAIT_S); returns the stacks still locked then. A Terraform left
    running by a killed `hedgeform` finishes its command (its output goes to files, not a
    pipe: terraform/process.py) and releases the lock; one killed itself leaves its
    providers orphaned. Either way, wait for the lock before looking."""
    dirs = list(stack_dirs)
    deadline = time.monotonic() + (LOCK_WAIT_S if timeout_s is None else timeout_s)
    while True:
        held = [d for d in dirs if state_lock_held(d)]
        if not held or time.monotonic() >= deadline:
            return held
        time.sleep(0.1)


def _proc_fields(pid: int) -> tuple[int, str, tuple[str, ...]] | None:
    """(parent pid, working directory, argv) of a live process, from /proc."""
    base = Path("/proc") / str(pid)
    try:
        stat = (base / "stat").read_text()
        raw = (base / "cmdline").read_bytes()
        cwd = os.readlink(base / "cwd")
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    if len(fields) < 2 or fields[0] in ("Z", "X") or not raw:
        return None
    argv = tuple(p.decode(errors="replace") for p in raw.split(b"\0") if p)
    return int(fields[1]), cwd, argv


def stray_terraform_processes(stack_dirs: Iterable[Path]) -> list[int]:
    """Provider plugins whose Terraform is gone, in these stack directories.

    Terraform starts each provider as a child in the stack directory and stops it when the
    command ends. When Terraform itself is killed (SIGKILL, or SIGPIPE on its output once
    the `hedgeform` reading it was killed), its providers are re-parented and keep running
    for ever: `terraform-provider-*` processes whose working directory is a stack directory
    and whose parent is not a process in that directory. A provider under a live Terraform
    is never one of them. Linux /proc only; elsewhere none are found."""
    dirs = {str(d.resolve()) for d in stack_dirs}
    proc = Path("/proc")
    if not dirs or not proc.is_dir():
        return []
    stray: list[int] = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:  # cheap first: most processes are elsewhere (or not ours to read)
            if os.readlink(entry / "cwd") not in dirs:
                continue
        except OSError:
            continue
        info = _proc_fields(int(entry.name))
        if info is None:
            continue
        ppid, cwd, argv = info
        if cwd not in dirs or not os.path.basename(argv[0]).startswith("terraform-provider-"):
            continue
        parent = _proc_fields(ppid)
        if parent is None or parent[1] != cwd:
            stray.append(int(entry.name))
    return sorted(stray)


def terraform_processes(stack_dirs: Iterable[Path]) -> list[int]:
    """Every live `terraform` or `terraform-provider-*` process whose working directory is one
    of these stack directories, its Terraform alive or not (a superset of
    stray_terraform_processes), by pid. Linux /proc only; elsewhere none are found."""
    dirs = {str(d.resolve()) for d in stack_dirs}
    proc = Path("/proc")
    if not dirs or not proc.is_dir():
        return []
    found: list[int] = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "cwd") not in dirs:
                continue
        except OSError:
            continue
        info = _proc_fields(int(entry.name))
        if info is None or info[1] not in dirs:
            continue
        name = os.path.basename(info[2][0])
        if name == "terraform" or name.startswith("terraform-provider-"):
            found.append(int(entry.name))
    return sorted(found)


def stop_stray_terraform(stack_dirs: Iterable[Path], grace_s: float = 2.0) -> list[int]:
    """Stop the providers `stray_terraform_processes` finds (SIGTERM, then SIGKILL after
    `grace_s`); a provider holds no state and no lock, only a process slot. Returns them."""
    dirs = list(stack_dirs)
    stray = stray_terraform_processes(dirs)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        left = [pid for pid in stray if pid in stray_terraform_processes(dirs)]
        if not left:
            break
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and set(left) & set(stray_terraform_processes(dirs)):
            time.sleep(0.05)
    return stray


def recover_killed_terraform(stack_dirs: Iterable[Path]) -> list[Path]:
    """What a killed pass left in these stacks, undone: wait out a Terraform still holding a
    state lock (wait_for_state_locks), then stop provider plugins whose Terraform died
    (stop_stray_terraform). Returns the stacks still locked after the wait."""
    dirs = list(stack_dirs)
    held = wait_for_state_locks(dirs)
    stop_stray_terraform(dirs)
    return held
