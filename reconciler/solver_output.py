"""Keep the MIP solver's banner off standard output, where tables and `--json` go.

HiGHS's C++ core (highspy) prints its banner on the process's file descriptor 1 when the
first solver of a process is made; `print` redirection cannot catch it. The pure policy core
(policy/mix.py) and the backtest's exact optimum (backtest/optimal.py) make solvers, so the
commands that call them (`hedgeform mix`, `hedgeform backtest`) wrap the solving in
`banner_to_stderr`; a reconcile, whose output is the plan and the status, discards it
(`banner_discarded`): the policy's solver errors are exceptions, never printed.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def banner_to_stderr() -> Iterator[None]:
    """Point fd 1 at fd 2 while the block runs, then restore it (also on an exception); a
    closed fd 1 (`>&-`) is closed again."""
    with _fd1_to(2):
        yield


@contextlib.contextmanager
def banner_discarded() -> Iterator[None]:
    """Point fd 1 at /dev/null while the block runs, then restore it."""
    target = os.open(os.devnull, os.O_WRONLY)
    try:
        with _fd1_to(target):
            yield
    finally:
        os.close(target)


@contextlib.contextmanager
def _fd1_to(fd: int) -> Iterator[None]:
    """fd 1 is `fd` in the block; afterwards what it was, closed again when it was closed
    (`>&-`: Python's `sys.stdout` is then None, and nothing is flushed)."""
    _flush_stdout()
    try:
        saved: int | None = os.dup(1)
    except OSError:  # fd 1 is closed
        saved = None
    try:
        os.dup2(fd, 1)
        yield
    finally:
        _flush_stdout()
        if saved is None:
            os.close(1)
        else:
            os.dup2(saved, 1)
            os.close(saved)


def _flush_stdout() -> None:
    if sys.stdout is not None:
        sys.stdout.flush()
