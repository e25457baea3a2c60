"""`hedgeform drift` on the sandbox with the real pinned Terraform (issue 16, deliverable 4):
clean after an apply (exit 0); a replica process killed by hand is a resource deleted
outside Terraform and replica processes whose stack lost its state are unknown instances
(exit 2, named in markdown and JSON); drift itself changes nothing, and the next apply
brings the service back to no drift."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import main
from reconciler.paths import ServicePaths
from reconciler.sandbox import replicas
from reconciler.sandbox.haproxy import HAProxyLB
from tests.e2e.conftest import applied, fast_sandbox_env

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def env() -> dict[str, str]:
    return fast_sandbox_env()


@pytest.fixture
def paths(tmp_path: Path, env: dict[str, str]) -> Iterator[ServicePaths]:
    with applied(tmp_path, "drifty", env) as paths:
        yield paths


def _drift(paths: ServicePaths, env: dict[str, str], *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        main, ["drift", "drifty", "--root", str(paths.root), *extra], env=env
    )
    return result.exit_code, result.stdout


def _running(paths: ServicePaths) -> dict[str, replicas.ReplicaRecord]:
    return {
        s.record.replica_id: s.record for s in replicas.list_replicas(paths.sandbox_dir) if s.alive
    }


def test_drift_names_what_changed_outside_terraform_and_exits_2(
    paths: ServicePaths, env: dict[str, str]
) -> None:
    code, out = _drift(paths, env)
    assert code == 0, out
    assert out.startswith("# Drift of drifty: no drift\n")
    for stack in ("front", "local-1", "local-2"):
        assert f"## Stack {stack}\n\nnothing changed outside Terraform\n" in out
    code, out = _drift(paths, env, "--json")
    assert code == 0 and json.loads(out)["drift"] is False

    running = _running(paths)
    assert len(running) == 3
    # Deleted outside Terraform: the one replica of local-2 (zone local-2a), killed by hand.
    (killed,) = [r for r in running.values() if r.zone == "local-2a"]
    os.kill(killed.pid, signal.SIGKILL)
    # Unknown to Terraform: local-1's replicas, once its state file is gone.
    local1 = sorted(rid for rid, r in running.items() if r.zone != "local-2a")
    for name in ("terraform.tfstate", "terraform.tfstate.backup"):
        (paths.stack_dir("local-1") / name).unlink(missing_ok=True)
    # Changed outside Terraform: a member taken out of HAProxy by hand.
    lb = HAProxyLB(paths.sandbox_dir)
    members = lb.members()
    assert sorted(members) == sorted(running)
    lb.set_members({k: v for k, v in members.items() if k != local1[0]})

    code, out = _drift(paths, env)
    assert code == 2, out
    assert out.startswith("# Drift of drifty: drift found\n")
    address = f'module.stack.null_resource.replica["{killed.replica_id}"]'
    assert (
        f"## Stack local-2\n\n- `{address}`: deleted outside Terraform (its replica process "
        "is not running: stopped or crashed outside Terraform)\n"
    ) in out
    assert "## Stack local-1\n\nnot checked: nothing applied yet\n" in out
    unknown = out.split("## Unknown instances\n", 1)[1]
    for rid in local1:
        assert f"- `{rid}` in local-1 (zone " in unknown
    assert "the next apply takes it back into its stack" in unknown

    code, out = _drift(paths, env, "--json")
    assert code == 2
    report = json.loads(out)
    assert report["service"] == "drifty" and report["drift"] is True
    stacks = {s["stack"]: s for s in report["stacks"]}
    assert sorted(stacks) == ["front", "local-1", "local-2"]
    assert stacks["local-2"]["changed"] == [
        {
            "address": address,
            "action": "delete",
            "attributes": [],
            "note": "its replica process is not running: stopped or crashed outside Terraform",
        }
    ]
    assert stacks["front"]["changed"] == [
        {
            "address": "module.stack.null_resource.target_group[0]",
            "action": "update",
            "attributes": [
                {
                    "name": "members",
                    "before": sorted(running),
                    "after": [rid for rid in sorted(running) if rid != local1[0]],
                }
            ],
            "note": "HAProxy serves other members than Terraform set",
        }
    ]
    assert stacks["local-1"]["skipped"] == "nothing applied yet"
    assert [(u["stack"], u["id"], u["state"]) for u in report["unknown_instances"]] == [
        ("local-1", rid, "running") for rid in local1
    ]

    # drift changed nothing: the orphans still run, the killed replica is still in state.
    assert sorted(_running(paths)) == local1
    assert all(replicas.is_alive(running[rid]) for rid in local1)
    state = json.loads((paths.stack_dir("local-2") / "terraform.tfstate").read_text())
    assert killed.replica_id in json.dumps(state)
    assert not (paths.stack_dir("local-2") / "hedgeform-refresh.tfplan").exists()

    # The next apply adopts the orphans and replaces the dead replica: no drift again.
    applied = CliRunner().invoke(main, ["apply", "drifty", "--root", str(paths.root)], env=env)
    assert applied.exit_code == 0, applied.output
    code, out = _drift(paths, env)
    assert code == 0, out
