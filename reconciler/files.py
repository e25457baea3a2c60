"""Writing files so a crash leaves the old or the new content, never half of it; and finding
the executables Hedgeform runs.

The one atomic writer of the package: a temp file in the same directory (created with the
final mode, so the content is never readable by others even for a moment), fsync, rename over
the target, fsync of the directory so the rename itself survives a power cut.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

PRIVATE = 0o600  # state, plans, records: only the user who runs Hedgeform reads them


def write_atomic(path: Path, content: str | bytes, mode: int = PRIVATE) -> None:
    """Replace `path` with `content` (text is UTF-8) atomically; the file gets `mode`.
    The parent directory must exist. OSError as the system reports it (a full disk, ...)."""
    data = content.encode() if isinstance(content, str) else content
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)
    with contextlib.suppress(OSError):  # some filesystems cannot open a directory
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def write_json_atomic(path: Path, data: Any, mode: int = PRIVATE) -> None:
    """`data` as indented, key-sorted JSON (write_atomic), creating missing parents."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode)


def write_if_changed(path: Path, text: str) -> None:
    """write_atomic unless the file already holds `text` (keeps mtimes and caches)."""
    if not (path.is_file() and path.read_text() == text):
        write_atomic(path, text)


def find_executable(name: str) -> Path | None:
    """`name` next to this interpreter (the project's virtualenv), else on PATH; None when
    neither has it. The caller says in one line how to install what is missing."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which(name)
    return Path(found) if found else None
