"""The market daemon: runs the preemption check every `interval` seconds, in the background,
so capacity drops in the trace preempt spot replicas even when nothing else is running.

Daemonized like a replica and tracked by `<state_dir>/market.pid`; starting it twice is a no-op.
Run as `python -m reconciler.sandbox.market_daemon --state-dir D`.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from reconciler.errors import SandboxError
from reconciler.files import write_atomic
from reconciler.sandbox import processes
from reconciler.sandbox.market import SpotMarket
from reconciler.sandbox.statefiles import file_lock

MODULE = "reconciler.sandbox.market_daemon"
DEFAULT_INTERVAL_S = 0.5


def pid_path(state_dir: Path) -> Path:
    return Path(state_dir) / "market.pid"


def _markers(state_dir: Path) -> list[str]:
    return [MODULE, f"--state-dir={Path(state_dir).resolve()}"]


def running_pid(state_dir: Path) -> int | None:
    """The daemon's pid when it is running for this state dir."""
    try:
        pid = int(pid_path(state_dir).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if processes.is_alive(pid, _markers(state_dir)) else None


def start(state_dir: Path, interval_s: float = DEFAULT_INTERVAL_S) -> tuple[int, bool]:
    """Start the daemon unless it runs; returns (pid, started_now). The market must exist."""
    state_dir = Path(state_dir).resolve()
    SpotMarket.load(state_dir)  # fail here, with a clear message, not inside the daemon
    with file_lock(state_dir / ".market-daemon.lock"):
        pid = running_pid(state_dir)
        if pid is not None:
            return pid, False
        argv = processes.python_module_argv(
            MODULE, f"--state-dir={state_dir}", f"--interval={interval_s}"
        )
        pid = processes.spawn_daemon(
            argv, state_dir / "market.log", processes.child_env(), owner=state_dir
        )
        write_atomic(pid_path(state_dir), f"{pid}\n")
        return pid, True


def stop(state_dir: Path) -> bool:
    """Stop the daemon; False when it was not running."""
    pid = running_pid(state_dir)
    ended = pid is not None and processes.terminate(pid, _markers(state_dir))
    pid_path(state_dir).unlink(missing_ok=True)
    return ended


def run(state_dir: Path, interval_s: float, stop_event: threading.Event) -> None:
    """The loop itself (also usable in-process). Errors are logged and retried, so a transient
    problem (a replica file mid-write) does not end the market."""
    market: SpotMarket | None = None
    while not stop_event.is_set():
        try:
            # Overrides and config may change under us; traces are reloaded only when the
            # trace dir changes (a `market run --reset`).
            config = SpotMarket.load_config(state_dir)
            if market is None or market.config.trace_dir != config.trace_dir:
                market = SpotMarket(state_dir, config)
            market.config = config
            report = market.preemption_check(time.time())
            for n in (*report.warned, *report.preempted):
                line = f"{n.kind} {n.replica_id} zone={n.zone} deadline={n.deadline:.3f}"
                print(line, flush=True)
        except SandboxError as exc:
            print(f"market check failed: {exc}", flush=True)
        stop_event.wait(interval_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--interval", type=float, default=DEFAULT_INTERVAL_S)
    ns = parser.parse_args(argv)
    stop_event = threading.Event()

    def _on_term(signum: int, frame: FrameType | None) -> None:
        stop_event.set()

    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    print(f"market daemon for {ns.state_dir} every {ns.interval}s", flush=True)
    run(ns.state_dir, max(0.05, ns.interval), stop_event)
    print("market daemon stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
