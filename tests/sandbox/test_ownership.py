"""The HEDGEFORM_SANDBOX marker (issue 9, item 5): every daemon the sandbox starts for a state
dir carries it, so `owned_by` finds that daemon when its record is lost; a process that only
inherited the variable through `child_env`, and the caller itself, are never taken for one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.sandbox import processes, replicas

SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]


@pytest.fixture
def started() -> Iterator[list[int]]:
    """Pids a test started; each is ended afterwards, pass or fail."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        processes.terminate(pid, [], grace_seconds=1.0)


def _wait_exec(pid: int) -> None:
    """Until the child has exec'd (its argv is the sleeper's, not pytest's)."""
    for _ in range(250):
        argv = processes.cmdline(pid)
        if argv is not None and "time.sleep(60)" in " ".join(argv):
            return
        time.sleep(0.02)
    raise AssertionError(f"pid {pid} did not start")


def test_owned_by_finds_a_daemon_by_its_marker_only(
    state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, started: list[int]
) -> None:
    daemon = processes.spawn_daemon(SLEEP, tmp_path / "d.log", processes.child_env(), state_dir)
    started.append(daemon)
    # Another sandbox whose path starts with this one's: not this sandbox's daemon.
    other = processes.spawn_daemon(
        SLEEP, tmp_path / "o.log", processes.child_env(), Path(f"{state_dir}-other")
    )
    started.append(other)
    # A process started from an environment that holds the marker (a `hedgeform run` loop
    # started by a test, say) inherits nothing through child_env.
    monkeypatch.setenv(processes.OWNER_ENV, str(state_dir.resolve()))
    inherited = subprocess.Popen(SLEEP, env=processes.child_env(), start_new_session=True)
    started.append(inherited.pid)
    for pid in started:
        _wait_exec(pid)

    found = processes.owned_by(state_dir)
    assert [p.pid for p in found] == [daemon]
    assert found[0].argv == tuple(SLEEP)
    environ = Path(f"/proc/{daemon}/environ").read_bytes().split(b"\0")
    assert f"HEDGEFORM_SANDBOX={state_dir.resolve()}".encode() in environ
    # The same dir spelled another way is the same owner.
    assert [p.pid for p in processes.owned_by(state_dir / ".." / state_dir.name)] == [daemon]


def test_owned_by_never_returns_the_caller(state_dir: Path, started: list[int]) -> None:
    daemon = processes.spawn_daemon(SLEEP, state_dir / "d.log", processes.child_env(), state_dir)
    started.append(daemon)
    _wait_exec(daemon)
    # A scanner that carries the marker itself (started with owned_env) finds the daemon only.
    code = (
        "import json, os, sys; from pathlib import Path; "
        "from reconciler.sandbox import processes; "
        "print(json.dumps([os.getpid(), [p.pid for p in processes.owned_by(Path(sys.argv[1]))]]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(state_dir)],
        env=processes.owned_env(state_dir),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    me, found = json.loads(done.stdout)
    assert found == [daemon] and me not in found


def test_a_replica_whose_record_was_deleted_is_found_and_stopped(state_dir: Path) -> None:
    kept = replicas.launch(state_dir, "r1", "local-1a", "spot")
    lost = replicas.launch(state_dir, "r2", "local-1b", "spot")
    replicas.record_path(state_dir, "r2").unlink()

    assert replicas.unrecorded(state_dir) == {lost.pid: "r2"}
    assert replicas.stop(state_dir, "r2") is True
    assert not processes.is_alive(lost.pid, replicas.markers("r2"))
    assert processes.is_alive(kept.pid, replicas.markers("r1"))
    assert replicas.stop(state_dir, "r2") is False


def test_stop_all_stops_unrecorded_replicas_and_names_them(state_dir: Path) -> None:
    kept = replicas.launch(state_dir, "r1", "local-1a", "spot")
    lost = replicas.launch(state_dir, "r2", "local-1b", "spot")
    replicas.record_path(state_dir, "r2").unlink()

    assert replicas.stop_all(state_dir) == ["r1", "r2"]
    assert not processes.is_alive(kept.pid, replicas.markers("r1"))
    assert not processes.is_alive(lost.pid, replicas.markers("r2"))
    assert processes.owned_by(state_dir) == []


def test_a_launch_replaces_a_process_of_the_same_id_whose_record_was_lost(
    state_dir: Path,
) -> None:
    """Otherwise two servers of one id would run, and only the new one be recorded."""
    lost = replicas.launch(state_dir, "r1", "local-1a", "on_demand")
    replicas.record_path(state_dir, "r1").unlink()
    again = replicas.launch(state_dir, "r1", "local-1a", "on_demand")
    assert again.pid != lost.pid
    assert not processes.is_alive(lost.pid, replicas.markers("r1"))
    assert replicas.unrecorded(state_dir) == {}


def test_hedgeform_does_not_pass_an_inherited_marker_on(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command started from a daemon's environment would hand the marker to Terraform and
    its providers, and `destroy` would then take them for the sandbox's own processes."""
    from click.testing import CliRunner

    from reconciler.cli import main

    monkeypatch.setenv(processes.OWNER_ENV, str(state_dir))
    result = CliRunner().invoke(main, ["sandbox", "lb", "status", "--state-dir", str(state_dir)])
    assert result.exit_code == 0, result.output
    assert processes.OWNER_ENV not in os.environ
