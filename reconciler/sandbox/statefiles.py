"""Files under the sandbox state dir: validated names, atomic JSON writes, JSON-lines appends,
and advisory locks. Every name that becomes a path or a process argument passes through here."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from reconciler.errors import SandboxError
from reconciler.paths import NAME_RE
from reconciler.policy import Market

MARKETS = tuple(m.value for m in Market)  # as records and argv spell them


def check_name(value: str, what: str) -> str:
    """Replica ids and zone names become file names and argv entries: keep them boring."""
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise SandboxError(
            f"invalid {what} {value!r}: use 1-63 lowercase letters, digits or '-', "
            "starting with a letter or digit"
        )
    return value


def check_market(value: str) -> str:
    if value not in MARKETS:
        raise SandboxError(f"invalid market {value!r}: use one of {', '.join(MARKETS)}")
    return value


def read_json(path: Path) -> Any | None:
    """The parsed file, or None when it does not exist."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SandboxError(f"{path}: corrupt state file ({exc.msg} at line {exc.lineno})") from exc


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """One `write()` on an O_APPEND descriptor per record, so concurrent writers never
    interleave within a line and a reader sees either none or all of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (flock) held for the block; released if the process dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
