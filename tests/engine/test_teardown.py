"""What `destroy` says after its last scan (engine/teardown.py, issue 9 item 5): "stopped
unrecorded processes" names only what the scan no longer finds, and anything the scan still
finds is an error naming its pid, never "nothing left running"."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import pytest

from reconciler.engine import teardown
from reconciler.sandbox.processes import OwnedProcess
from tests.engine.test_tfstate_crash import alive, spawn_provider

REPLICA = OwnedProcess(
    4242,
    ("/usr/bin/python3", "-m", "reconciler.sandbox.replica_server", "--id=local-1a-spot-3"),
)
HAPROXY = OwnedProcess(4300, ("/usr/sbin/haproxy", "-D", "-p", "x.pid", "-f", "x.cfg"))
MARKET = OwnedProcess(4400, ("python3", "-m", "reconciler.sandbox.market_daemon", "--state-dir=/s"))
PROVIDER = OwnedProcess(4500, ("/x/.terraform/providers/terraform-provider-null_v3.2.1_x5",))


def test_labels_say_what_each_process_is() -> None:
    assert teardown.describe([HAPROXY, REPLICA, MARKET, PROVIDER, REPLICA]) == (
        "4242 (replica local-1a-spot-3), 4300 (haproxy), 4400 (market daemon), "
        "4500 (terraform-provider-null_v3.2.1_x5)"
    )


def test_a_clean_last_scan_reports_what_was_stopped_and_no_error() -> None:
    scans: list[int] = []

    def scan() -> list[OwnedProcess]:
        scans.append(1)
        return []

    lines, errors = teardown.verify([REPLICA, HAPROXY], scan)
    assert scans == [1]
    assert lines == ["stopped unrecorded processes: 4242 (replica local-1a-spot-3), 4300 (haproxy)"]
    assert errors == []


def test_nothing_stopped_and_nothing_found_prints_nothing() -> None:
    assert teardown.verify([], lambda: []) == ([], [])


def test_what_the_last_scan_still_finds_is_an_error_naming_its_pid() -> None:
    lines, errors = teardown.verify([REPLICA, HAPROXY], lambda: [HAPROXY, PROVIDER])
    # Only what is really gone is reported as stopped.
    assert lines == ["stopped unrecorded processes: 4242 (replica local-1a-spot-3)"]
    assert len(errors) == 1
    assert "4300 (haproxy)" in errors[0] and "4500 (terraform-provider-null" in errors[0]
    assert errors[0].startswith("still running after destroy:")


@pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="needs /proc")
def test_a_stray_provider_is_stopped_and_a_live_terraforms_fails_the_last_scan(
    tmp_path: Path,
) -> None:
    """A provider whose Terraform died is stopped and named; one whose Terraform still runs
    in the stack is left alone, but the last scan finds it, so destroy cannot say nothing is
    left running."""
    stack = tmp_path / "front"
    stack.mkdir()
    sandbox = tmp_path / "sandbox"
    stray, _ = spawn_provider(stack, tmp_path, core_alive=False)
    kept, core = spawn_provider(stack, tmp_path, core_alive=True)
    try:
        stopped = teardown.stop_leftovers(sandbox, [stack])
        assert [p.pid for p in stopped] == [stray]
        assert not alive(stray) and alive(kept)
        lines, errors = teardown.verify(stopped, lambda: teardown.still_running(sandbox, [stack]))
        assert lines == [
            f"stopped unrecorded processes: {stray} (terraform-provider-null_v2.1.2_x4)"
        ]
        assert len(errors) == 1 and f"{kept} (terraform-provider-null" in errors[0]
    finally:
        for pid in (stray, kept):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        core.kill()
        core.wait()
