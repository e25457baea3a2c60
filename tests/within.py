"""Run a call that might block forever (a FIFO's open waits for a writer) with a deadline."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def returns_within(call: Callable[[], Any], seconds: float = 10.0) -> Any:
    """call() in a daemon thread: its result, or the exception it raised (returned, not
    raised); fails the test when it has not returned within `seconds`."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(call())
        except BaseException as exc:
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert out, f"{getattr(call, '__name__', 'the call')} did not return within {seconds} s"
    return out[0]
