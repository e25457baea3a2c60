"""Run one command in its own session so it can be cancelled as a whole.

Why: Terraform 1.0 re-executes itself as a child (and starts provider plugins and provisioner
shells), so killing the parent leaves the child applying and holding the state lock. Each
command starts with `start_new_session=True`; cancel (or a timeout, or Ctrl-C in the caller)
signals the whole process group: SIGINT (Terraform stops at a safe point and writes state),
then SIGTERM (Terraform's "second interrupt": exit now), then SIGKILL.

Its output goes to unlinked temporary files, not pipes. When the `hedgeform` reading a pipe
is killed (kill -9), Terraform's next write raises SIGPIPE and it dies mid-apply, after the
cloud created resources and before its state recorded them: on the AWS emulator an ALB then
"already exists" at every later apply, for ever. Writing to a file, Terraform finishes the
apply and records what it made; the next pass waits for its state lock (terraform/state.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO


@dataclass(frozen=True)
class Completed:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    cancelled: bool = False
    timed_out: bool = False


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: fall back to "any process in the group"
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        except PermissionError:
            pass
        return [pgid]
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _read(file: IO[bytes]) -> str:
    file.seek(0)
    return file.read().decode("utf-8", errors="replace")


class GroupProcess:
    """Runs commands one at a time; `cancel()` may be called from any thread."""

    def __init__(self, sigint_grace_s: float = 60.0, sigterm_grace_s: float = 10.0) -> None:
        self.sigint_grace_s = sigint_grace_s
        self.sigterm_grace_s = sigterm_grace_s
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._cancel_requested = False

    def run(
        self,
        argv: Sequence[str],
        cwd: Path,
        env: Mapping[str, str],
        timeout_s: float | None = None,
    ) -> Completed:
        # Unlinked temporary files, not pipes (module docstring): nothing to clean up.
        with tempfile.TemporaryFile() as out_file, tempfile.TemporaryFile() as err_file:
            with self._lock:
                if self._cancel_requested:
                    self._cancel_requested = False
                    return Completed(tuple(argv), -1, "", "", cancelled=True)
                proc = subprocess.Popen(
                    list(argv),
                    cwd=cwd,
                    env=dict(env),
                    stdin=subprocess.DEVNULL,
                    stdout=out_file,
                    stderr=err_file,
                    start_new_session=True,
                )
                self._proc = proc
            timed_out = False
            try:
                try:
                    proc.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    timed_out = True
                    self.stop_group(proc)
                    proc.wait()
            except BaseException:  # Ctrl-C or an error in the caller: never leave it behind
                self.stop_group(proc)
                proc.wait()
                raise
            finally:
                with self._lock:
                    self._proc = None
                    cancelled = self._cancel_requested
                    self._cancel_requested = False
            if cancelled:
                self.stop_group(proc)  # the canceller may still be escalating; wait for it
            out, err = _read(out_file), _read(err_file)
        return Completed(tuple(argv), proc.returncode, out, err, cancelled, timed_out)

    def cancel(self) -> None:
        """Stop the running command (or the next one, if none is running) and wait until its
        whole process group is gone."""
        with self._lock:
            self._cancel_requested = True
            proc = self._proc
        if proc is not None:
            self.stop_group(proc)

    def stop_group(self, proc: subprocess.Popen[bytes]) -> None:
        pgid = proc.pid  # a session leader's pid is its process group id
        steps = (
            (signal.SIGINT, self.sigint_grace_s),
            (signal.SIGTERM, self.sigterm_grace_s),
            (signal.SIGKILL, 5.0),
        )
        for sig, grace in steps:
            if not self._alive(proc, pgid):
                return
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                return
            if self._wait_gone(proc, pgid, grace):
                return

    @staticmethod
    def _alive(proc: subprocess.Popen[bytes], pgid: int) -> bool:
        proc.poll()  # reap the leader if it exited, so it does not count as a member
        return bool(group_members(pgid))

    def _wait_gone(self, proc: subprocess.Popen[bytes], pgid: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self._alive(proc, pgid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True
