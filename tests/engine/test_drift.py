"""`hedgeform drift` (issue 16, deliverable 4) above the adapters: reading `resource_drift`,
the report's markdown and JSON, the engine's check over fake Terraform and a fake backend,
exit codes, the loop's --drift-every, and unknown instances on AWS through moto."""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from reconciler.backends.base import OutsideTerraform
from reconciler.backends.clouds import ProviderCloud
from reconciler.backends.fake import FakeBackend
from reconciler.cli import main
from reconciler.clouds.aws.apis import AwsApis
from reconciler.drift_report import (
    AttributeChange,
    DriftedResource,
    DriftReport,
    StackDrift,
    UnknownInstance,
    resource_drift,
    to_json,
    to_markdown,
)
from reconciler.engine import drift as drift_cmd
from reconciler.engine.drift import check_drift
from reconciler.engine.loop import LoopSettings, ReconcileLoop
from reconciler.engine.observability import LoopMetrics
from reconciler.engine.reconcile import Reconciler
from reconciler.paths import ServicePaths
from reconciler.spec import load_spec
from reconciler.terraform.fake import FakeTerraformRunner
from tests.adapters.conftest import _moto_server, _no_real_credentials, moto_url, svc
from tests.adapters.test_aws import client
from tests.engine.cloud_fakes import REPO, FakeApis
from tests.engine.test_cloud_aws_moto import (
    cloud_root,
    moto_settings,
    run_on_demand,
    write_state,
)
from tests.engine.test_loop import Records

__all__ = ["_moto_server", "_no_real_credentials", "moto_url", "svc"]  # fixtures

INSTANCE = 'module.stack.aws_instance.replica["us-east-1a-spot-0"]'


def drift_entry(address: str, actions: list[str], **change: Any) -> dict[str, Any]:
    return {"address": address, "change": {"actions": actions, **change}}


PLAN = {
    "format_version": "0.2",
    "resource_drift": [
        drift_entry(
            INSTANCE,
            ["update"],
            before={"id": "i-1", "instance_type": "g6.xlarge", "user_data": "s3cr3t", "tags": {}},
            after={"id": "i-1", "instance_type": "g6.2xlarge", "user_data": "0ther", "tags": {}},
            before_sensitive={"user_data": True},
            after_sensitive={"user_data": True},
        ),
        drift_entry(
            'module.stack.aws_lb_target_group_attachment.member["x"]',
            ["delete"],
            before={"id": "a"},
            after=None,
        ),
        drift_entry("module.stack.aws_sqs_queue.notices", ["no-op"], before={}, after={}),
        # What the AWS provider reads back on the emulator: null became [] (no change).
        drift_entry(
            'module.stack.aws_route53_record.alias["aws-us-east-1"]',
            ["update"],
            before={"records": None, "alias": [{"name": "lb", "zone": None}], "ttl": 0},
            after={"records": [], "alias": [{"name": "lb", "zone": {}}], "ttl": 0},
        ),
    ],
    "resource_changes": [],
}


def test_resource_drift_reads_changed_and_deleted_resources_masking_secrets() -> None:
    drifted = resource_drift(PLAN)
    assert [(r.address, r.action) for r in drifted] == [
        ('module.stack.aws_instance.replica["us-east-1a-spot-0"]', "update"),
        ('module.stack.aws_lb_target_group_attachment.member["x"]', "delete"),
    ]  # sorted by address, the no-op and the null -> [] update left out
    assert drifted[0].attributes == (
        AttributeChange("instance_type", "g6.xlarge", "g6.2xlarge"),
        AttributeChange("user_data", "(sensitive)", "(sensitive)"),
    )
    assert drifted[1].attributes == ()
    assert "s3cr3t" not in json.dumps(to_json(DriftReport("s", (StackDrift("a", tuple(drifted)),))))
    assert resource_drift({"resource_changes": []}) == []  # no drift key: nothing drifted


REPORT = DriftReport(
    "llama-cloud",
    (
        StackDrift("gcp-us-central1", skipped="nothing applied yet"),
        StackDrift("aws-us-east-1", tuple(resource_drift(PLAN))),
        StackDrift("front", error="stack front: plan -refresh-only failed: Error: boom"),
    ),
    (
        UnknownInstance("aws-us-east-1", "i-9", "us-east-1b", "i-9", "running", "tagged"),
        UnknownInstance("aws-us-east-1", "i-2", "us-east-1a", "i-2", "stopped", "tagged"),
    ),
    ("gcp-us-central1: not listed",),
)


def test_json_shape_is_sorted_and_complete() -> None:
    data = to_json(REPORT)
    assert list(data) == ["service", "drift", "stacks", "unknown_instances", "notes"]
    assert data["service"] == "llama-cloud" and data["drift"] is True
    assert [s["stack"] for s in data["stacks"]] == ["aws-us-east-1", "front", "gcp-us-central1"]
    aws = data["stacks"][0]
    assert aws["changed"][0] == {
        "address": INSTANCE,
        "action": "update",
        "attributes": [
            {"name": "instance_type", "before": "g6.xlarge", "after": "g6.2xlarge"},
            {"name": "user_data", "before": "(sensitive)", "after": "(sensitive)"},
        ],
        "note": "",
    }
    assert aws["error"] is None and aws["skipped"] is None
    assert data["stacks"][1]["error"].endswith("Error: boom")
    assert data["stacks"][2]["skipped"] == "nothing applied yet"
    assert [u["id"] for u in data["unknown_instances"]] == ["i-2", "i-9"]
    assert set(data["unknown_instances"][0]) == {"stack", "id", "zone", "name", "state", "note"}
    assert data["notes"] == ["gcp-us-central1: not listed"]
    json.dumps(data)  # serialisable as is


def test_markdown_groups_by_stack_with_before_and_after() -> None:
    text = to_markdown(REPORT)
    assert text.startswith("# Drift of llama-cloud: drift found; 1 stack(s) could not be checked\n")
    assert (
        "## Stack aws-us-east-1\n\n"
        f"- `{INSTANCE}`: changed outside Terraform\n"
        '  - `instance_type`: "g6.xlarge" -> "g6.2xlarge"\n'
        "  - `user_data`: (sensitive) -> (sensitive)\n"
        '- `module.stack.aws_lb_target_group_attachment.member["x"]`: deleted outside '
        "Terraform\n\n"
    ) in text
    assert "## Stack front\n\nerror: stack front: plan -refresh-only failed" in text
    assert "## Stack gcp-us-central1\n\nnot checked: nothing applied yet\n" in text
    unknown = text.split("## Unknown instances\n\n", 1)[1]
    assert unknown.startswith(
        "- `i-2` in aws-us-east-1 (zone us-east-1a, stopped): tagged\n"
        "- `i-9` in aws-us-east-1 (zone us-east-1b, running): tagged\n"
    )
    assert text.endswith("## Notes\n\n- gcp-us-central1: not listed\n")
    assert to_markdown(REPORT) == text  # deterministic
    assert "s3cr3t" not in text
    clean = DriftReport("x", (StackDrift("local-1"),))
    assert clean.drift is False
    assert to_markdown(clean).startswith("# Drift of x: no drift\n")
    assert clean.one_line() == "x: no drift"


# -- the engine's check, over fake Terraform and the fake backend -----------------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "services").mkdir()
    shutil.copy(REPO / "services" / "llama.yaml", tmp_path / "services" / "llama.yaml")
    (tmp_path / "terraform").symlink_to(REPO / "terraform")
    return tmp_path


def fake_reconciler(
    root: Path, runners: dict[str, FakeTerraformRunner], applied: tuple[str, ...]
) -> tuple[Reconciler, FakeBackend]:
    """llama's reconciler on fakes; the stacks in `applied` have tfvars and a state file."""
    paths = ServicePaths.for_service("llama", root=root)
    spec = load_spec(paths.spec_file)

    def factory(stack: str, stack_dir: Path, module_dir: Path) -> FakeTerraformRunner:
        return runners.setdefault(stack, FakeTerraformRunner(name=stack))

    backend = FakeBackend(spec, paths.sandbox_dir)
    rec = Reconciler(paths, spec, runner_factory=factory, backend=backend)
    for stack in applied:
        paths.stack_dir(stack).mkdir(parents=True, exist_ok=True)
        (paths.stack_dir(stack) / "terraform.tfvars.json").write_text("{}")
        (paths.stack_dir(stack) / "terraform.tfstate").write_text("{}")
    return rec, backend


def test_check_refreshes_applied_stacks_and_merges_what_the_backend_sees(root: Path) -> None:
    runners: dict[str, FakeTerraformRunner] = {}
    rec, backend = fake_reconciler(root, runners, ("front", "local-1"))
    assert rec.stack_names == ["local-1", "local-2", "front"]
    runners["local-1"] = FakeTerraformRunner(name="local-1", refresh_json=PLAN)
    gone = DriftedResource('module.stack.null_resource.replica["local-1a-spot-3"]', "delete")
    backend.outside = OutsideTerraform(
        {"local-1": (gone,)}, (UnknownInstance("local-2", "local-2a-spot-9"),), ("a note",)
    )
    report = check_drift(rec)
    assert [s.stack for s in report.stacks] == ["front", "local-1", "local-2"]
    front, local1, local2 = report.stacks
    assert front.changed == () and front.error is None and front.skipped is None
    assert [r.address for r in local1.changed] == [
        INSTANCE,
        'module.stack.aws_lb_target_group_attachment.member["x"]',
        'module.stack.null_resource.replica["local-1a-spot-3"]',
    ]
    assert local2.skipped == "never planned on this host (no tfvars)"
    assert "local-2" not in runners or runners["local-2"].commands() == []
    assert runners["local-1"].commands() == ["plan -refresh-only"]
    assert runners["front"].commands() == ["plan -refresh-only"]
    assert [u.id for u in report.unknown_instances] == ["local-2a-spot-9"]
    assert report.notes == ("a note",) and report.drift and report.changed_count == 3
    assert "outside_terraform" in backend.calls
    # Read-only: no plan, apply or observe that consumes anything.
    assert not [c for r in runners.values() for c in r.commands() if c != "plan -refresh-only"]
    assert not [c for c in backend.calls if c.startswith("observe")]


def test_a_stack_whose_refresh_fails_is_an_error_and_the_others_go_on(root: Path) -> None:
    runners: dict[str, FakeTerraformRunner] = {}
    rec, backend = fake_reconciler(root, runners, ("front", "local-1", "local-2"))
    runners["local-2"] = FakeTerraformRunner(name="local-2")
    runners["local-2"].fail("plan -refresh-only", "Error: state lock")
    report = check_drift(rec)
    assert report.errors == ["local-2: stack local-2: plan -refresh-only failed: Error: state lock"]
    assert report.drift is False
    assert runners["local-1"].commands() == ["plan -refresh-only"]
    # What the backend sees of that stack is still reported, beside the error.
    gone = DriftedResource('module.stack.null_resource.replica["local-2a-spot-1"]', "delete")
    backend.outside = OutsideTerraform({"local-2": (gone,)})
    runners["local-2"].fail("plan -refresh-only", "Error: state lock")
    report = check_drift(rec)
    local2 = report.stacks[-1]
    assert local2.error is not None and local2.changed == (gone,) and report.drift
    text = to_markdown(report)
    assert (
        "## Stack local-2\n\nerror: stack local-2: plan -refresh-only failed: Error: state lock\n"
        '- `module.stack.null_resource.replica["local-2a-spot-1"]`: deleted outside Terraform\n'
    ) in text


def invoke_drift(root: Path, monkeypatch: pytest.MonkeyPatch, rec: Reconciler, *args: str) -> Any:
    monkeypatch.setattr(drift_cmd, "_reconciler", lambda *a, **k: rec)
    return CliRunner().invoke(main, ["drift", "llama", "--root", str(root), *args])


def test_exit_codes_0_clean_2_drift_1_error(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runners: dict[str, FakeTerraformRunner] = {}
    rec, backend = fake_reconciler(root, runners, ("front", "local-1", "local-2"))
    clean = invoke_drift(root, monkeypatch, rec)
    assert clean.exit_code == 0, clean.output
    assert clean.stdout.startswith("# Drift of llama: no drift\n")

    backend.outside = OutsideTerraform({}, (UnknownInstance("local-1", "local-1a-spot-7"),))
    found = invoke_drift(root, monkeypatch, rec, "--json")
    assert found.exit_code == 2
    data = json.loads(found.stdout)
    assert data["drift"] is True and data["unknown_instances"][0]["id"] == "local-1a-spot-7"

    runners["front"].fail("plan -refresh-only", "Error: boom")
    broken = invoke_drift(root, monkeypatch, rec)
    assert broken.exit_code == 1  # an error outranks the drift found
    assert "# Drift of llama: drift found; 1 stack(s) could not be checked" in broken.stdout
    assert "error: front: stack front: plan -refresh-only failed: Error: boom" in broken.stderr


def test_a_usage_error_exits_2_with_no_report_on_stdout() -> None:
    result = CliRunner().invoke(main, ["drift"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("Error: Missing argument 'SERVICE'")


# -- the loop --------------------------------------------------------------------------------


def test_the_loop_checks_drift_every_nth_tick_and_warns_in_one_line(root: Path) -> None:
    runners: dict[str, FakeTerraformRunner] = {}
    rec, backend = fake_reconciler(root, runners, ())
    backend.outside = OutsideTerraform({}, (UnknownInstance("local-1", "local-1a-spot-7"),))
    logger = logging.getLogger(f"test-drift-loop-{id(runners)}")
    logger.propagate = False
    handler = Records()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    metrics = LoopMetrics("llama")
    settings = LoopSettings(interval_s=0.01, poll_s=0.01, drift_every=2)
    loop = ReconcileLoop(rec, settings, logger, metrics, rng=random.Random(7))
    for _ in range(5):
        loop._tick()
    checks = backend.calls.count("outside_terraform")
    assert checks == 2  # after the 2nd and 4th ticks
    warnings = [r for r in handler.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings if "drift" in r.getMessage()] == [
        "llama: drift: unknown instances: local-1a-spot-7 (local-1)"
    ] * 2
    sample = metrics.registry.get_sample_value
    assert sample("hedgeform_drift_checks_total", {"service": "llama"}) == 2
    assert sample("hedgeform_drift_found_total", {"service": "llama"}) == 2
    assert sample("hedgeform_drift_items", {"service": "llama"}) == 1

    backend.fail_next("outside_terraform", RuntimeError("cloud down"))
    loop._tick()
    loop._tick()
    assert loop.failures == 0  # a failed check never fails the tick
    assert "drift check failed" in handler.messages()


def test_the_loop_never_checks_drift_by_default(root: Path) -> None:
    rec, backend = fake_reconciler(root, {}, ())
    loop = ReconcileLoop(rec, LoopSettings(), logging.getLogger("test-drift-off"))
    for _ in range(3):
        loop._tick()
    assert "outside_terraform" not in backend.calls


# -- unknown instances on AWS, through moto --------------------------------------------------


def test_aws_instances_tagged_for_the_service_but_in_no_state_are_unknown(
    moto_url: str, svc: str, tmp_path: Path
) -> None:
    paths = cloud_root(tmp_path, svc)
    spec = load_spec(paths.spec_file)
    known = run_on_demand(moto_url, "us-east-1a", "us-east-1a-od-0", spec.name)
    stray = run_on_demand(moto_url, "us-east-1b", "us-east-1b-od-7", spec.name)
    other = run_on_demand(moto_url, "us-east-1c", "us-east-1c-od-1", f"{svc}x")  # not ours
    write_state(paths, {"us-east-1a-od-0": (known, "us-east-1a", "on_demand")})
    backend = ProviderCloud(
        paths,
        spec,
        moto_settings(moto_url),
        apis={"aws": AwsApis(spec, moto_url), "gcp": FakeApis()},
    )
    outside = backend.outside_terraform()
    assert outside.changed == {}
    assert [(u.stack, u.id, u.zone, u.state) for u in outside.unknown] == [
        ("aws-us-east-1", stray, "us-east-1b", "running")
    ]
    assert "us-east-1b-od-7" in outside.unknown[0].note
    assert other not in {u.id for u in outside.unknown}
    assert outside.notes == (
        "gcp-us-central1: instances tagged for the service are not listed on gcp (no adapter "
        "call for it yet)",
    )
    # A terminated instance is no longer unknown: it has ended.
    client("ec2", moto_url).terminate_instances(InstanceIds=[stray])
    time.sleep(0.1)
    assert backend.outside_terraform().unknown == ()
