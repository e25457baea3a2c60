"""Daemonized replica processes: they outlive their launcher, are tracked under the state dir,
and stop cleanly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from reconciler.errors import SandboxError
from reconciler.sandbox import processes, replicas


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler.sandbox.cli", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=processes.child_env(env),
        check=False,
    )


def _wait_healthy(port: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return True
        except requests.ConnectionError:
            pass
        time.sleep(0.05)
    return False


def test_replica_outlives_the_launching_process_and_stop_leaves_none(state_dir: Path) -> None:
    proc = _cli(
        "replica", "launch", "--state-dir", str(state_dir), "--id", "r1", "--zone", "local-1a",
        "--market", "on_demand", "--cold-start", "0.2", "--model", "llama-sbx",
        env={"MODEL_NAME": "secret-sentinel"},  # a spec may hold MODEL_NAME secret
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["id"] == "r1"
    pid, port = out["pid"], out["port"]
    # The launcher has exited; the replica runs on, in its own session (like a VM).
    assert processes.is_alive(pid, replicas.markers("r1"))
    assert os.getsid(pid) == pid
    assert _wait_healthy(port)
    body = requests.post(f"http://127.0.0.1:{port}/v1/completions", json={}, timeout=5).json()
    assert body["model"] == "llama-sbx"
    assert b"secret-sentinel" not in Path(f"/proc/{pid}/cmdline").read_bytes()

    record = json.loads((state_dir / "replicas" / "r1.json").read_text())
    assert {"pid", "port", "zone", "market", "launched_at"} <= set(record)
    assert (record["zone"], record["market"], record["port"]) == ("local-1a", "on_demand", port)

    stop = _cli("replica", "stop", "--state-dir", str(state_dir), "--id", "r1")
    assert stop.returncode == 0, stop.stderr
    assert not processes.is_alive(pid, replicas.markers("r1"))
    assert not (state_dir / "replicas" / "r1.json").exists()
    # Idempotent.
    again = _cli("replica", "stop", "--state-dir", str(state_dir), "--id", "r1")
    assert again.returncode == 0 and "not running" in again.stdout


def test_launch_is_idempotent_and_list_reports_liveness(state_dir: Path) -> None:
    first = replicas.launch(state_dir, "r1", "local-1a", "spot")
    assert replicas.launch(state_dir, "r1", "local-1a", "spot") == first
    with pytest.raises(SandboxError, match="already running in local-1a"):
        replicas.launch(state_dir, "r1", "local-1b", "spot")
    replicas.launch(state_dir, "r2", "local-1b", "on_demand")
    listed = replicas.list_replicas(state_dir)
    assert [(s.record.replica_id, s.alive) for s in listed] == [("r1", True), ("r2", True)]
    assert sorted(replicas.stop_all(state_dir)) == ["r1", "r2"]
    assert replicas.list_replicas(state_dir) == []
    for status in listed:
        assert not processes.is_alive(status.record.pid, replicas.markers(status.record.replica_id))


def test_a_recycled_pid_is_not_mistaken_for_the_replica(state_dir: Path) -> None:
    """A record whose pid now belongs to another process (here: pytest itself) is dead, and
    stopping it must not signal that process."""
    record = {
        "replica_id": "ghost", "zone": "local-1a", "market": "spot", "pid": os.getpid(),
        "port": 1, "launched_at": time.time(), "cold_start_s": 0, "latency_ms": 0,
        "model": "m", "log": "",
    }  # fmt: skip
    (state_dir / "replicas").mkdir(parents=True)
    (state_dir / "replicas" / "ghost.json").write_text(json.dumps(record))
    [status] = replicas.list_replicas(state_dir)
    assert status.alive is False
    assert replicas.stop(state_dir, "ghost") is False
    assert not (state_dir / "replicas" / "ghost.json").exists()


@pytest.mark.parametrize(
    ("replica_id", "zone", "market"),
    [
        ("../etc", "local-1a", "spot"),
        ("R1", "local-1a", "spot"),
        ("-r1", "local-1a", "spot"),
        ("r1", "local 1a", "spot"),
        ("r1", "x" * 64, "spot"),
        ("r1", "local-1a", "preemptible"),
    ],
)
def test_names_that_become_paths_or_arguments_are_validated(
    state_dir: Path, replica_id: str, zone: str, market: str
) -> None:
    with pytest.raises(SandboxError, match="invalid"):
        replicas.launch(state_dir, replica_id, zone, market)
    assert not (state_dir / "replicas").exists() or not list((state_dir / "replicas").iterdir())


def test_cli_usage_errors_are_one_line(state_dir: Path) -> None:
    proc = _cli(
        "replica", "launch", "--state-dir", str(state_dir), "--id", "Bad_Id",
        "--zone", "local-1a", "--market", "on_demand",
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0
    assert proc.stderr.startswith("Error: invalid replica id")


@pytest.mark.parametrize(
    ("cold", "latency"), [(float("nan"), 0.0), (0.0, float("inf")), (-1.0, 0.0)]
)
def test_a_cold_start_or_latency_that_is_not_a_finite_range_is_refused(
    state_dir: Path, cold: float, latency: float
) -> None:
    """Found by the user-eye check: `--cold-start nan --latency-ms inf` was recorded as NaN and
    Infinity, and the replica dropped its completions."""
    with pytest.raises(SandboxError, match="cold start must be 0-3600 s and latency 0-60000 ms"):
        replicas.launch(
            state_dir, "r1", "local-1a", "on_demand", cold_start_s=cold, latency_ms=latency
        )
    assert replicas.list_replicas(state_dir) == []
