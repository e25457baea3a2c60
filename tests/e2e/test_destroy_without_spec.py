"""`destroy` tears down what runs even when the service file no longer says it (found by the
user-eye check of issue 9, item 5): a spec that no longer loads, a region removed from the
spec, a project directory moved after apply."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from reconciler.cli import main
from reconciler.engine import teardown
from reconciler.paths import ServicePaths
from reconciler.sandbox import processes
from reconciler.stacks import FRONT
from reconciler.terraform.state import state_resources
from tests.e2e.conftest import SANDBOX_ZONES, free_port, project_root

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SPEC = "service:\n  readiness_probe: /health\n  replicas: 3\n" + SANDBOX_ZONES
STACKS = (FRONT, "local-1", "local-2")


@pytest.fixture
def env() -> dict[str, str]:
    return {"HEDGEFORM_LB_PORT": str(free_port()), "HEDGEFORM_SANDBOX_COLD_START": "1"}


@pytest.fixture
def root(tmp_path: Path, env: dict[str, str]) -> Iterator[Path]:
    with project_root(tmp_path / "a", {"gone": SPEC}) as path:
        applied = CliRunner().invoke(main, ["apply", "gone", "--root", str(path)], env=env)
        assert applied.exit_code == 0, applied.output
        yield path
        for where in (path, tmp_path / "b"):
            paths = ServicePaths.for_service("gone", root=where)
            teardown.stop_leftovers(paths.sandbox_dir, [paths.stack_dir(s) for s in STACKS])


def _running_under(*roots: Path) -> list[str]:
    """Processes whose argv, working directory or marker names one of `roots` (pid: argv)."""
    tops = [str(r.resolve()) for r in roots] + [str(r) for r in roots]
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            text = (proc / "cmdline").read_bytes() + (proc / "environ").read_bytes()
            text += os.readlink(proc / "cwd").encode()
        except OSError:
            continue
        if any(top.encode() in text for top in tops):
            argv = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{proc.name}: {argv[:200]}")
    return found


@pytest.mark.parametrize(
    "spoil",
    [
        lambda spec: spec.write_text(SPEC + "service:\n  replicas: 1\n"),  # duplicate key
        lambda spec: spec.write_text(SPEC.replace("local-2a", "local-2z")),  # unknown zone
        lambda spec: spec.unlink(),  # no service file at all
    ],
    ids=["duplicate-key", "unknown-zone", "missing"],
)
def test_a_spec_that_no_longer_loads_does_not_block_destroy(
    root: Path, env: dict[str, str], spoil: object
) -> None:
    """Before: destroy refused with the spec error, and everything kept running."""
    spoil(root / "services" / "gone.yaml")  # type: ignore[operator]
    result = CliRunner().invoke(main, ["destroy", "gone", "--root", str(root)], env=env)
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and "destroying the stacks found under" in result.output
    for stack in STACKS:
        assert f"destroyed stack {stack}" in result.output
    assert result.output.rstrip().endswith("gone: nothing left running")
    assert _running_under(root) == []


def test_a_region_removed_from_the_spec_is_destroyed_too(root: Path, env: dict[str, str]) -> None:
    """Before: the stack of a region no longer in the spec was left with its replicas in
    its state (leaked VMs on a real cloud) while destroy said nothing was left."""
    spec = root / "services" / "gone.yaml"
    spec.write_text(SPEC.replace("    - {cloud: local, region: local-2, zone: local-2a}\n", ""))
    assert "local-2a" not in spec.read_text()
    result = CliRunner().invoke(main, ["destroy", "gone", "--root", str(root)], env=env)
    assert result.exit_code == 0, result.output
    assert "destroyed stack local-2" in result.output
    state = ServicePaths.for_service("gone", root=root).stack_dir("local-2") / "terraform.tfstate"
    assert state_resources(state) == []
    assert _running_under(root) == []


def test_destroy_after_the_project_moved_stops_everything(
    root: Path, env: dict[str, str], tmp_path: Path
) -> None:
    """Before: HAProxy and the market daemon (their marker and argv hold the old path)
    survived, while destroy printed "nothing left running"."""
    moved = tmp_path / "b"
    shutil.move(str(root), moved)
    result = CliRunner().invoke(main, ["destroy", "gone", "--root", str(moved)], env=env)
    assert result.exit_code == 0, result.output
    assert result.output.rstrip().endswith("gone: nothing left running")
    assert _running_under(root, moved) == []
    assert not processes.port_in_use(int(env["HEDGEFORM_LB_PORT"]))


def test_apply_after_the_project_moved_says_what_to_do_instead_of_an_outage(
    root: Path, env: dict[str, str], tmp_path: Path
) -> None:
    """Found by the second user-eye check: `apply` from the new path replaced every replica
    and then failed on the port the old path's HAProxy kept, answering 503 for good."""
    moved = tmp_path / "b"
    shutil.move(str(root), moved)
    result = CliRunner().invoke(main, ["apply", "gone", "--root", str(moved)], env=env)
    assert result.exit_code == 1, result.output
    assert "still runs from" in result.output and "hedgeform destroy gone" in result.output
    assert len(result.output.strip().splitlines()) == 1
    old = ServicePaths.for_service("gone", root=root)
    assert processes.port_in_use(int(env["HEDGEFORM_LB_PORT"])), "the old one still serves"
    done = CliRunner().invoke(main, ["destroy", "gone", "--root", str(moved)], env=env)
    assert done.exit_code == 0, done.output
    assert _running_under(old.root, moved) == []


def test_a_copied_project_leaves_the_original_alone(
    root: Path, env: dict[str, str], tmp_path: Path
) -> None:
    """Found by the third user-eye check: in a copy of a running project (its records and
    Terraform state name the original's sandbox), following the advice to destroy took the
    original down. Both apply and destroy refuse in the copy; the original keeps serving."""
    copy = tmp_path / "b"
    shutil.copytree(root, copy, symlinks=True, ignore=shutil.ignore_patterns("*.sock"))
    other = {**env, "HEDGEFORM_LB_PORT": str(free_port())}
    refused = CliRunner().invoke(main, ["apply", "gone", "--root", str(copy)], env=other)
    assert refused.exit_code == 1 and "copied from" in refused.output, refused.output
    done = CliRunner().invoke(main, ["destroy", "gone", "--root", str(copy)], env=other)
    assert done.exit_code == 1 and "copied from" in done.output, done.output
    port = env["HEDGEFORM_LB_PORT"]
    health = [
        requests.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code for _ in range(6)
    ]
    assert health == [200] * 6, "the original still serves from every replica"
