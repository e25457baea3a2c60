"""A plan that replaces every replica of a stack at once (a changed image, instance type or
script under `user_data_replace_on_change`) is refused in one line unless --replace-all
(issue 11: a bad AMI must not leave a region with zero replicas)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from reconciler.backends.fake import FakeBackend
from reconciler.backends.sandbox import SandboxSettings
from reconciler.engine.reconcile import Reconciler
from reconciler.errors import PlanRefusedError
from reconciler.paths import ServicePaths
from reconciler.plan_summary import summarize_stack
from reconciler.policy import Market
from reconciler.spec import load_spec
from reconciler.stacks import ManagedReplica
from reconciler.terraform.fake import FakeTerraformRunner

REPO = Path(__file__).resolve().parents[2]
IDS = ("local-1a-spot-0", "local-1b-spot-1")


def change(index: str, *actions: str) -> dict[str, Any]:
    return {
        "address": f'aws_instance.replica["{index}"]',
        "mode": "managed",
        "type": "aws_instance",
        "name": "replica",
        "index": index,
        "change": {"actions": list(actions), "before": {}, "after": {}},
        "action_reason": "replace_because_cannot_update",
    }


def plan(*changes: dict[str, Any]) -> dict[str, Any]:
    return {"format_version": "1.0", "resource_changes": list(changes)}


@pytest.mark.parametrize(
    ("changes", "refused"),
    [
        ([change(IDS[0], "delete", "create"), change(IDS[1], "create", "delete")], True),
        ([change(IDS[0], "delete", "create"), change(IDS[1], "no-op")], False),  # one at a time
        ([change(IDS[0], "delete"), change(IDS[1], "delete")], False),  # the policy scales in
        ([change(IDS[0], "create"), change(IDS[1], "create")], False),  # a first apply
        ([change("local-1a-spot-2", "create"), change(IDS[0], "delete", "create")], True),
    ],
)
def test_a_plan_that_replaces_every_existing_replica_is_recognised(
    changes: list[dict[str, Any]], refused: bool
) -> None:
    assert summarize_stack("s", plan(*changes)).replaces_every_replica is refused


def rig(tmp_path: Path, replace_all: bool) -> tuple[Reconciler, dict[str, FakeTerraformRunner]]:
    (tmp_path / "services").mkdir()
    shutil.copy(REPO / "services" / "llama.yaml", tmp_path / "services" / "llama.yaml")
    (tmp_path / "terraform").symlink_to(REPO / "terraform")
    paths = ServicePaths.for_service("llama", root=tmp_path)
    spec = load_spec(paths.spec_file)
    backend = FakeBackend(spec, paths.sandbox_dir)
    backend.managed_replicas = [
        ManagedReplica(rid, rid[:8], Market.SPOT, stack="local-1") for rid in IDS
    ]
    fakes = {
        name: FakeTerraformRunner(name=name, changed=True)
        for name in ("local-1", "local-2", "front")
    }
    fakes["local-1"].plan_json = plan(
        change(IDS[0], "delete", "create"), change(IDS[1], "delete", "create")
    )
    rec = Reconciler(
        paths,
        spec,
        SandboxSettings(lb_port=1),
        backend=backend,
        runner_factory=lambda stack, *_: fakes[stack],
        replace_all=replace_all,
    )
    return rec, fakes


def test_the_stack_is_refused_in_one_line_and_not_applied(tmp_path: Path) -> None:
    rec, fakes = rig(tmp_path, replace_all=False)
    result = rec.run_pass(apply=True)
    assert [o.stack for o in result.failed] == ["local-1"]
    error = result.failed[0].error
    assert isinstance(error, PlanRefusedError)
    message = str(error)
    assert message.startswith("stack local-1: plan failed: refused: it replaces all 2 replica(s)")
    assert "--replace-all" in message and "\n" not in message
    assert not any(c[0] == "apply" for c in fakes["local-1"].calls)
    assert any(c[0] == "apply" for c in fakes["front"].calls)  # the others go on


def test_replace_all_applies_it(tmp_path: Path) -> None:
    rec, fakes = rig(tmp_path, replace_all=True)
    result = rec.run_pass(apply=True)
    assert not result.failed
    assert any(c[0] == "apply" for c in fakes["local-1"].calls)


@pytest.mark.parametrize("command", ["apply", "run"])
def test_the_commands_offer_the_flag(command: str) -> None:
    from reconciler.cli import main

    out = CliRunner().invoke(main, [command, "--help"]).output
    assert "--replace-all" in out
