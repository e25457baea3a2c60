"""Fixtures for the sandbox tests: a fresh state dir per test, and a finalizer that stops
every process a test launched (replicas, the market daemon, HAProxy), pass or fail."""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.sandbox import market_daemon, replicas
from reconciler.sandbox.haproxy import HAProxyLB
from reconciler.sandbox.replica_server import ReplicaConfig, ReplicaServer, make_server

requires_haproxy = pytest.mark.skipif(
    shutil.which("haproxy") is None,
    reason="HAProxy is not installed (apt-get install -y haproxy); CI installs it",
)


def _cleanup(state_dir: Path) -> None:
    with contextlib.suppress(Exception):
        HAProxyLB(state_dir).down()
    with contextlib.suppress(Exception):
        market_daemon.stop(state_dir)
    with contextlib.suppress(Exception):
        replicas.stop_all(state_dir)


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """A short path (HAProxy's admin socket path must stay under 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="hf-sbx-"))
    try:
        yield path
    finally:
        _cleanup(path)
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def trace_dir(tmp_path: Path) -> Path:
    """Synthetic traces: local-1a 2,1,0,3 and local-1b 4,4 (60 s steps)."""
    d = tmp_path / "traces"
    d.mkdir()
    for zone, data in {"local-1a": [2, 1, 0, 3], "local-1b": [4, 4]}.items():
        (d / f"{zone}_v100_1.json").write_text(
            json.dumps({"metadata": {"gap_seconds": 60}, "data": data})
        )
    return d


def serve_in_thread(config: ReplicaConfig) -> Iterator[ReplicaServer]:
    """An in-process replica on a free port, served from a thread until the generator ends."""
    server = make_server(config)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def replica_server() -> Iterator[ReplicaServer]:
    """An in-process replica (no cold start, no latency) on a free port."""
    yield from serve_in_thread(ReplicaConfig(replica_id="inproc", zone="local-1a", market="spot"))
