"""Processes of a test root, read from /proc: what a crash left running, and how to kill a
`hedgeform` while its Terraform works."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    cwd: str
    argv: tuple[str, ...]

    @property
    def name(self) -> str:
        return os.path.basename(self.argv[0]) if self.argv else ""

    @property
    def terraform(self) -> bool:
        """Terraform itself or one of its provider plugins."""
        return self.name == "terraform" or self.name.startswith("terraform-provider-")


def processes() -> list[Proc]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            raw = (entry / "cmdline").read_bytes()
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] in ("Z", "X") or not raw:
            continue
        argv = tuple(p.decode(errors="replace") for p in raw.split(b"\0") if p)
        out.append(Proc(int(entry.name), int(fields[1]), cwd, argv))
    return out


def under(path: Path) -> list[Proc]:
    """Live processes whose working directory or argv is under `path`."""
    top = str(path.resolve())
    return [
        p
        for p in processes()
        if p.pid != os.getpid()
        and (p.cwd == top or p.cwd.startswith(top + "/") or any(top in a for a in p.argv))
    ]


def settle(path: Path, keep: str = "", timeout_s: float = 5.0) -> list[Proc]:
    """What still runs under `path` after up to `timeout_s` (a Terraform that finished its
    work may need a moment to exit); `keep="terraform"` looks at Terraform processes only."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = [p for p in under(path) if p.terraform or keep != "terraform"]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def kill_during_terraform(
    argv: Sequence[str], env: Mapping[str, str], command: str, after_s: float = 0.4
) -> int:
    """Start `argv` (a hedgeform command), wait until it runs `terraform <command>` as a child,
    wait `after_s` more, then SIGKILL it (not its Terraform). Returns the killed pid."""
    proc = subprocess.Popen(
        list(argv), env=dict(env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 90
    try:
        while not any(
            p.ppid == proc.pid and p.name == "terraform" and command in p.argv[1:2]
            for p in processes()
        ):
            assert proc.poll() is None, f"{argv} exited ({proc.returncode}) before terraform ran"
            assert time.monotonic() < deadline, f"no terraform {command} started"
            time.sleep(0.02)
        time.sleep(after_s)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    return proc.pid
