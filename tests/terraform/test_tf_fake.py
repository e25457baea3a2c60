"""The in-memory runner other tests use behaves like the real one where it matters."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.errors import ApplyError, CancelledError, LockError, PlanError
from reconciler.terraform.fake import FakeTerraformRunner
from reconciler.terraform.runner import TerraformRunner, drifted


def test_fake_records_calls_and_converges() -> None:
    def on_apply(fake: FakeTerraformRunner, var_file: Path | None) -> None:
        fake.outputs = {"var_file": str(var_file)}
        fake.resources = ["null_resource.this"]

    fake = FakeTerraformRunner(name="local-1", on_apply=on_apply)
    runner: TerraformRunner = fake
    plan = runner.plan(Path("v.json"))
    assert plan.changed
    runner.apply_saved_plan(plan.plan_path)
    assert runner.output() == {"var_file": "v.json"}
    assert runner.state_list() == ["null_resource.this"]
    assert runner.plan().changed is False
    runner.destroy()
    assert runner.state_list() == []
    assert fake.commands() == [
        "plan",
        "apply",
        "output",
        "state list",
        "plan",
        "destroy",
        "state list",
    ]


def test_fake_applies_only_its_latest_saved_plans() -> None:
    fake = FakeTerraformRunner()
    first, second = fake.plan(), fake.plan()
    fake.apply_saved_plan(second.plan_path)
    with pytest.raises(ApplyError, match="no saved plan"):
        fake.apply_saved_plan(first.plan_path)


def test_fake_injects_typed_errors() -> None:
    fake = FakeTerraformRunner(name="aws-us-east-1")
    fake.fail("plan", "Error: boom")
    fake.fail_with("apply", LockError(fake.stack, "apply", "Error: Error acquiring the state lock"))
    with pytest.raises(PlanError, match="stack aws-us-east-1: plan failed: Error: boom"):
        fake.plan()
    plan = fake.plan()
    with pytest.raises(LockError):
        fake.apply_saved_plan(plan.plan_path)
    fake.apply_saved_plan(plan.plan_path)


def test_fake_cancel_stops_the_next_command() -> None:
    fake = FakeTerraformRunner()
    fake.cancel()
    with pytest.raises(CancelledError):
        fake.plan()
    fake.plan()


def test_fake_refresh_only_plan_reports_its_scripted_drift() -> None:
    runner = FakeTerraformRunner(name="s")
    assert runner.plan_refresh_only().changed is False
    runner.refresh_json = {
        "resource_drift": [
            {"address": "a", "change": {"actions": ["no-op"]}},
            {"address": "b", "change": {"actions": ["delete"]}},
        ]
    }
    result = runner.plan_refresh_only()
    assert result.changed is True
    assert drifted(result.json) == [{"address": "b", "change": {"actions": ["delete"]}}]
    assert runner.commands() == ["plan -refresh-only", "plan -refresh-only"]
    runner.fail("plan -refresh-only")
    with pytest.raises(PlanError):
        runner.plan_refresh_only()
