"""The reconcile loop on a real-cloud spec (services/llama-cloud.yaml): Terraform faked per
stack, the cloud APIs faked with the adapters' in-memory fakes. No network."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from reconciler.backends.base import PROVIDERS_FILE, root_config
from reconciler.backends.clouds import ProviderCloud
from reconciler.backends.sandbox import SandboxSettings
from reconciler.cli import main
from reconciler.engine.reconcile import Reconciler
from reconciler.engine.state_store import load_record
from reconciler.errors import AdapterError, ApplyError, CredentialsError
from reconciler.paths import ServicePaths
from reconciler.policy import FailureKind, Market, Notice, NoticeKind, ZoneStatus
from reconciler.spec import load_spec
from reconciler.terraform.binaries import ToolPaths
from reconciler.terraform.errors import from_output
from reconciler.terraform.fake import FakeTerraformRunner
from reconciler.terraform.runner import ROOT_CONFIG, CliTerraformRunner
from tests.clouds.test_render_contract import assert_contract
from tests.engine.cloud_fakes import (
    SENTINEL,
    SERVICE,
    FakeApis,
    aws_state_file,
    make_root,
    settings,
)

# A launch that hits a spot stockout, as Terraform 1.x prints it with -no-color.
ICE_TEMPLATE = """
Error: creating EC2 Instance: operation error EC2: RunInstances, https response error
StatusCode: 500, RequestID: 5d1d4f0a-1111-2222-3333-444455556666, api error
InsufficientInstanceCapacity: We currently do not have sufficient g6.xlarge capacity in the
Availability Zone you requested ({zone}). Our system will be working on provisioning
additional capacity.

  with module.stack.aws_instance.replica["{rid}"],
  on ../../../terraform/modules/aws/main.tf line 206, in resource "aws_instance" "replica":
 206: resource "aws_instance" "replica" {{
"""


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HF_TOKEN", SENTINEL)
    return make_root(tmp_path)


class Rig:
    """A Reconciler on llama-cloud with fake Terraform runners and fake cloud APIs."""

    def __init__(
        self, root: Path, dns: bool = True, runners: dict[str, FakeTerraformRunner] | None = None
    ) -> None:
        self.paths = ServicePaths.for_service(SERVICE, root=root)
        self.spec = load_spec(self.paths.spec_file)
        self.apis = {"aws": FakeApis({"us-east-1a": 0.30, "us-east-1b": 0.33}), "gcp": FakeApis()}
        self.runners: dict[str, FakeTerraformRunner] = runners if runners is not None else {}
        self.backend = ProviderCloud(self.paths, self.spec, settings(dns=dns), apis=self.apis)

        def factory(stack: str, stack_dir: Path, module_dir: Path) -> FakeTerraformRunner:
            self.modules[stack] = module_dir.name
            return self.runners.setdefault(stack, FakeTerraformRunner(name=stack))

        self.modules: dict[str, str] = {}
        self.rec = Reconciler(
            self.paths,
            self.spec,
            SandboxSettings(),
            runner_factory=factory,
            backend=self.backend,
        )

    def tfvars(self, stack: str) -> dict[str, object]:
        data: dict[str, object] = json.loads(
            (self.paths.stack_dir(stack) / "terraform.tfvars.json").read_text()
        )
        return data


def test_one_pass_renders_a_stack_per_cloud_region_plus_front(root: Path) -> None:
    rig = Rig(root)
    assert rig.rec.stack_names == ["aws-us-east-1", "gcp-us-central1", "front"]
    result = rig.rec.run_pass(apply=True)
    assert not result.failed
    assert rig.modules == {"aws-us-east-1": "aws", "gcp-us-central1": "gcp", "front": "front"}
    for stack, module in rig.modules.items():
        assert_contract(module, rig.tfvars(stack))
        assert [c for c, _ in rig.runners[stack].calls] == ["plan", "apply"]
    launched = {x.replica_id for x in result.decision.launches}
    rendered = set(rig.tfvars("aws-us-east-1")["replicas"]) | set(  # type: ignore[call-overload]
        rig.tfvars("gcp-us-central1")["replicas"]  # type: ignore[call-overload]
    )
    assert rendered == launched
    # The cheapest AWS zone (live price 0.30) gets the first spot replica.
    assert any(x.zone == "us-east-1a" and x.market is Market.SPOT for x in result.decision.launches)
    # Every kept replica is registered: the load balancer's health check gates traffic.
    aws = rig.tfvars("aws-us-east-1")
    assert set(aws["lb_members"]) == set(aws["replicas"])  # type: ignore[call-overload]
    providers = json.loads((rig.paths.stack_dir("aws-us-east-1") / PROVIDERS_FILE).read_text())
    assert providers == {"provider": {"aws": {"region": "us-east-1"}}}
    assert rig.tfvars("front")["origins"] == {}  # no region load balancer applied yet


def test_an_aws_endpoint_reaches_every_aws_provider_block(root: Path) -> None:
    """HEDGEFORM_AWS_ENDPOINT_URL (an emulator) reaches the provider block of the AWS region
    stack and of the front stack (Route 53), with every API the modules call (issue 11)."""
    rig = Rig(root)
    rig.backend.settings = dataclasses.replace(
        rig.backend.settings, aws_endpoint_url="http://127.0.0.1:4566"
    )
    rig.rec.run_pass(apply=False, render_only=True)
    for stack, region in (("aws-us-east-1", "us-east-1"), ("front", "us-east-1")):
        block = json.loads((rig.paths.stack_dir(stack) / PROVIDERS_FILE).read_text())
        aws = block["provider"]["aws"]
        assert aws["region"] == region
        assert set(aws["endpoints"]) >= {
            "ec2", "elbv2", "sqs", "events", "iam", "sts", "cloudwatch", "route53",
            "secretsmanager", "ssm", "kms", "acm", "s3", "dynamodb",
        }  # fmt: skip
        assert set(aws["endpoints"].values()) == {"http://127.0.0.1:4566"}
        assert aws["skip_credentials_validation"] is True
        assert aws["skip_metadata_api_check"] is True
        assert aws["s3_use_path_style"] is True
        assert aws["skip_requesting_account_id"] is False
        assert aws["max_retries"] <= 3
        assert not {"access_key", "secret_key", "token"} & set(aws)  # from the environment
    gcp = json.loads((rig.paths.stack_dir("gcp-us-central1") / PROVIDERS_FILE).read_text())
    assert "endpoints" not in gcp["provider"]["google"]


def test_no_secret_value_in_any_rendered_file_or_plan_document(root: Path) -> None:
    rig = Rig(root)
    for runner in ("aws-us-east-1", "gcp-us-central1", "front"):
        rig.runners[runner] = FakeTerraformRunner(name=runner, plan_json={"resource_changes": []})
    result = rig.rec.run_pass(apply=False)
    assert result.plan_file is not None
    files = [p for p in (root / "state").rglob("*") if p.is_file()]
    assert any(p.name == "terraform.tfvars.json" for p in files)
    for path in files:
        assert SENTINEL not in path.read_text(), path
    assert rig.tfvars("aws-us-east-1")["secret_env_names"] == ["HF_TOKEN"]


def test_front_origins_come_from_the_region_stacks_outputs(root: Path) -> None:
    rig = Rig(root)
    state = aws_state_file({}, {"lb_dns_name": "hf-llama-cloud-1.us-east-1.elb.amazonaws.com"})
    stack_dir = rig.paths.stack_dir("aws-us-east-1")
    stack_dir.mkdir(parents=True)
    (stack_dir / "terraform.tfstate").write_text(json.dumps(state))
    rig.rec.run_pass(apply=False)
    front = rig.tfvars("front")
    assert front["origins"] == {
        "aws-us-east-1": {
            "address": "hf-llama-cloud-1.us-east-1.elb.amazonaws.com",
            "cloud": "aws",
            "region": "us-east-1",
            "weight": 100,
        }
    }
    assert_contract("front", front)


def _origin_state(rig: Rig, stack: str, outputs: dict[str, str]) -> None:
    stack_dir = rig.paths.stack_dir(stack)
    stack_dir.mkdir(parents=True, exist_ok=True)
    (stack_dir / "terraform.tfstate").write_text(json.dumps(aws_state_file({}, outputs)))


ALB = "hf-llama-cloud-1.us-east-1.elb.amazonaws.com"


@pytest.mark.parametrize("dns", [True, False])
def test_the_endpoint_says_https_only_where_the_load_balancers_serve_it(
    root: Path, dns: bool
) -> None:
    """The URL `apply` and `status` print follows each module's `lb_url` output: an AWS load
    balancer with a certificate is https://; the front's name is https:// only when every
    origin is (a plain-HTTP origin behind an https:// name would fail its clients)."""
    rig = Rig(root, dns=dns)
    _origin_state(rig, "aws-us-east-1", {"lb_dns_name": ALB, "lb_url": f"https://{ALB}"})
    _origin_state(
        rig, "gcp-us-central1", {"lb_ip_address": "203.0.113.7", "lb_url": "http://203.0.113.7"}
    )
    mixed = rig.backend.endpoint()
    _origin_state(
        rig, "gcp-us-central1", {"lb_ip_address": "203.0.113.7", "lb_url": "https://203.0.113.7"}
    )
    both = rig.backend.endpoint()
    if dns:
        name = settings(dns=True).domain_name
        assert (mixed, both) == (f"http://{name}", f"https://{name}")
    else:
        assert mixed == f"https://{ALB}, http://203.0.113.7"
        assert both == f"https://{ALB}, https://203.0.113.7"


def test_state_applied_before_lb_url_existed_is_shown_as_plain_http(root: Path) -> None:
    rig = Rig(root, dns=False)
    _origin_state(rig, "aws-us-east-1", {"lb_dns_name": ALB})
    assert rig.backend.endpoint() == f"http://{ALB}"


def test_without_a_dns_zone_there_is_no_front_stack(root: Path) -> None:
    rig = Rig(root, dns=False)
    assert rig.rec.stack_names == ["aws-us-east-1", "gcp-us-central1"]
    result = rig.rec.run_pass(apply=True)
    assert {o.stack for o in result.outcomes} == {"aws-us-east-1", "gcp-us-central1"}


@dataclasses.dataclass
class IceRunner(FakeTerraformRunner):
    """Refuses the first spot replica it is asked to create, with AWS's stockout, in every
    apply whose plan still holds it (Terraform then stops the whole apply's dependents);
    records the variables of each apply that went through."""

    refused: str | None = None
    applied: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def apply_saved_plan(self, plan_path: Path) -> None:
        var_file = self._plans.get(plan_path)
        assert var_file is not None
        variables = json.loads(var_file.read_text())
        replicas = variables["replicas"]
        if self.refused is None:
            self.refused = next(r for r, s in sorted(replicas.items()) if s["market"] == "spot")
        if self.refused in replicas:
            self.calls.append(("apply", plan_path))
            text = ICE_TEMPLATE.format(zone=replicas[self.refused]["zone"], rid=self.refused)
            raise from_output(ApplyError, self.stack, "apply", text)
        self.applied.append(variables)
        super().apply_saved_plan(plan_path)


def test_a_capacity_error_in_one_aws_stack_is_a_capacity_result_not_a_failure(root: Path) -> None:
    rig = Rig(root, runners={"aws-us-east-1": IceRunner(name="aws-us-east-1")})
    result = rig.rec.run_pass(apply=True)
    assert not result.failed, [str(o.error) for o in result.failed]
    aws = next(o for o in result.outcomes if o.stack == "aws-us-east-1")
    ((rid, (kind, message)),) = aws.launch_failures.items()
    assert kind is FailureKind.CAPACITY
    assert "InsufficientInstanceCapacity" in message
    zone = next(x.zone for x in result.decision.launches if x.replica_id == rid)
    results = load_record(rig.paths.memory_file).launch_results
    assert any(
        r.zone == zone and not r.ok and r.failure is FailureKind.CAPACITY for r in results
    ), results
    # The other stacks applied.
    assert next(o for o in result.outcomes if o.stack == "gcp-us-central1").applied
    # Next tick the placer marks the zone: it learned from the stockout.
    second = rig.rec.run_pass(apply=False)
    assert second.decision.memory.zone_status.get(zone) is ZoneStatus.PREEMPTED


def test_a_refused_launch_does_not_hold_back_the_rest_of_the_layout(root: Path) -> None:
    """Terraform stops every dependent of the replicas' resource when one instance is refused,
    so the other launches' load balancer registrations would wait for an apply no refusal
    spoils (found on the AWS emulator: the on-demand cover never joined the target group
    while a zone kept refusing). The same pass applies the stack again without the refused
    launch, at once."""
    ice = IceRunner(name="aws-us-east-1")
    rig = Rig(root, runners={"aws-us-east-1": ice})
    result = rig.rec.run_pass(apply=True)
    assert ice.commands().count("apply") == 2
    ((layout),) = ice.applied
    launched = {x.replica_id for x in result.decision.launches if x.zone.startswith("us-east-1")}
    assert ice.refused in launched
    assert set(layout["replicas"]) == launched - {ice.refused}
    assert layout["lb_members"] == sorted(launched - {ice.refused})
    aws = next(o for o in result.outcomes if o.stack == "aws-us-east-1")
    assert aws.applied and aws.error is None
    assert set(aws.launch_failures) == {ice.refused}
    refused_zone = next(x.zone for x in result.decision.launches if x.replica_id == ice.refused)
    results = load_record(rig.paths.memory_file).launch_results
    capacity = [r for r in results if r.failure is FailureKind.CAPACITY]
    assert [r.zone for r in capacity] == [refused_zone]


def test_an_error_that_is_not_a_replica_fails_the_stack(root: Path) -> None:
    rig = Rig(root)
    text = ICE_TEMPLATE.format(zone="us-east-1a", rid="x") + (
        "\nError: creating ELBv2 Load Balancer: AccessDenied\n\n  with module.stack.aws_lb.this,\n"
    )
    rig.runners["aws-us-east-1"] = FakeTerraformRunner(name="aws-us-east-1")
    rig.runners["aws-us-east-1"].fail("apply", text)
    result = rig.rec.run_pass(apply=True)
    assert [o.stack for o in result.failed] == ["aws-us-east-1"]


def test_a_preemption_notice_reaches_the_policy(root: Path) -> None:
    rig = Rig(root)
    state = aws_state_file(
        {
            "us-east-1a-spot-0": ("i-0aaa", "us-east-1a", "spot"),
            "us-east-1b-spot-1": ("i-0bbb", "us-east-1b", "spot"),
        }
    )
    stack_dir = rig.paths.stack_dir("aws-us-east-1")
    stack_dir.mkdir(parents=True)
    (stack_dir / "terraform.tfstate").write_text(json.dumps(state))
    rig.apis["aws"].notice_source.push(
        Notice(NoticeKind.PREEMPTED, "us-east-1a-spot-0", "us-east-1a", 1.0)
    )
    result = rig.rec.run_pass(apply=True)
    assert result.signals is not None and result.signals.notices
    assert result.decision.memory.zone_status.get("us-east-1a") is ZoneStatus.PREEMPTED
    recent = load_record(rig.paths.memory_file).memory.recent_preemptions
    assert [(rid, zone) for rid, zone, _ in recent] == [("us-east-1a-spot-0", "us-east-1a")]


def test_a_failing_price_source_falls_back_to_the_catalog(root: Path) -> None:
    rig = Rig(root)
    rig.apis["aws"].prices.fail_next("AWS ec2:describe_spot_price_history failed: boom")
    result = rig.rec.run_pass(apply=False)
    assert not result.failed
    offers = {o.zone: o for o in result.observed.zones}  # type: ignore[union-attr]
    assert offers["us-east-1b"].spot_price == pytest.approx(0.33)  # the shipped catalog
    assert offers["us-east-1a"].on_demand_price == pytest.approx(
        0.8048
    )  # the catalog: SkyPilot list price
    assert {o.cloud for o in offers.values()} == {"aws", "gcp"}
    assert all(o.zone.startswith("us-central1-") for o in offers.values() if o.cloud == "gcp")


def test_missing_credentials_fail_the_pass_with_one_line(root: Path) -> None:
    rig = Rig(root)
    rig.apis["gcp"].credentials_error = CredentialsError("GCP credentials not found: set X")
    with pytest.raises(CredentialsError, match="GCP credentials not found"):
        rig.rec.run_pass(apply=True)
    assert all(not r.calls for r in rig.runners.values())


def test_render_only_writes_files_and_runs_no_terraform_or_cloud_api(root: Path) -> None:
    rig = Rig(root)
    for apis in rig.apis.values():
        apis.credentials_error = CredentialsError("no credentials")  # never asked
    result = rig.rec.run_pass(apply=True, render_only=True)
    assert all(not r.calls for r in rig.runners.values())
    assert all(not a.calls for a in rig.apis.values())
    names = {(p.parent.name, p.name) for p in result.rendered}
    for stack in ("aws-us-east-1", "gcp-us-central1", "front"):
        assert (stack, "terraform.tfvars.json") in names
        assert (stack, ROOT_CONFIG) in names
        assert (stack, PROVIDERS_FILE) in names
    assert not rig.paths.memory_file.exists()  # nothing recorded


def test_render_only_root_config_is_what_the_runner_writes(root: Path) -> None:
    rig = Rig(root)
    rig.rec.run_pass(apply=False, render_only=True)
    stack_dir = rig.paths.stack_dir("aws-us-east-1")
    module = root / "terraform" / "modules" / "aws"
    tools = ToolPaths(root / "tf", root / "tf.rc", root / "mirror")
    runner = CliTerraformRunner(stack_dir, module, tools, name="aws-us-east-1")
    var_file = stack_dir / "terraform.tfvars.json"
    expected = runner._root_config(var_file)
    assert (stack_dir / ROOT_CONFIG).read_text() == expected
    assert root_config("aws-us-east-1", stack_dir, module, var_file) == expected


def test_cli_plan_without_credentials_is_one_line(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = root / "nocreds"
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("HEDGEFORM_AWS_IMAGES", "us-east-1=ami-0123456789abcdef0")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "hedgeform-test")
    result = CliRunner().invoke(main, ["plan", SERVICE, "--root", str(root)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [lines[0]] and lines[0].startswith("Error: AWS credentials not found: set")


def test_cli_plan_render_only_prints_the_files_and_needs_no_credentials(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    (root / "services" / f"{SERVICE}.settings.yaml").write_text(
        "aws_images:\n  us-east-1: ami-0123456789abcdef0\ngcp_project: hedgeform-test\n"
    )
    result = CliRunner().invoke(main, ["plan", SERVICE, "--root", str(root), "--render-only"])
    assert result.exit_code == 0, result.output
    assert f"wrote {root}/state/{SERVICE}/aws-us-east-1/terraform.tfvars.json" in result.output
    assert f"wrote {root}/state/{SERVICE}/gcp-us-central1/{ROOT_CONFIG}" in result.output
    assert not list((root / "state").rglob(".terraform"))  # Terraform never ran
    assert not list((root / "state").rglob("*.tfplan"))


def test_cli_plan_with_a_missing_setting_names_it_and_where_it_goes(root: Path) -> None:
    result = CliRunner().invoke(main, ["plan", SERVICE, "--root", str(root), "--render-only"])
    assert result.exit_code == 1
    assert "no AMI for aws us-east-1: set HEDGEFORM_AWS_IMAGES=us-east-1=ami-..." in result.output
    assert f"services/{SERVICE}.settings.yaml" in result.output
    assert "Traceback" not in result.output


def test_an_adapter_error_in_states_holds_the_policy(root: Path) -> None:
    rig = Rig(root)
    state = aws_state_file({"us-east-1a-spot-0": ("i-0aaa", "us-east-1a", "spot")})
    stack_dir = rig.paths.stack_dir("aws-us-east-1")
    stack_dir.mkdir(parents=True)
    (stack_dir / "terraform.tfstate").write_text(json.dumps(state))

    def broken(*args: object) -> object:
        raise AdapterError("AWS ec2:describe_instances failed: Unavailable")

    rig.apis["aws"].states = broken  # type: ignore[method-assign, assignment]
    result = rig.rec.run_pass(apply=False)
    assert result.observed is not None and not result.observed.complete
    assert not result.decision.launches and not result.decision.terminations


def test_plan_result_is_not_cached_on_clouds(root: Path) -> None:
    rig = Rig(root)
    runner = FakeTerraformRunner(name="aws-us-east-1", changed=False)
    rig.runners["aws-us-east-1"] = runner
    rig.rec.run_pass(apply=False)
    rig.rec.run_pass(apply=False)
    assert runner.commands().count("plan") == 2  # the cloud can drift: always planned


def test_a_cloud_service_needs_no_sandbox_setting(tmp_path: Path) -> None:
    """Issue 10: the Reconciler required SandboxSettings even for AWS, so a bad
    HEDGEFORM_SANDBOX_* variable (meaningless for a cloud service) stopped `plan`."""
    from reconciler.backends.sandbox import uses_sandbox
    from reconciler.engine.commands import _reconciler

    (tmp_path / "services").mkdir()
    repo = Path(__file__).resolve().parents[2]
    shutil.copy(repo / "services" / "llama-cloud.yaml", tmp_path / "services" / "cloudy.yaml")
    env = {
        "HEDGEFORM_SANDBOX_SPEED": "not-a-number",
        "HEDGEFORM_AWS_IMAGES": "us-east-1=ami-0123456789abcdef0",
        "GOOGLE_CLOUD_PROJECT": "hf-test",
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        rec = _reconciler("cloudy", "hedgeform", None, tmp_path, check_env=False)
    assert not uses_sandbox(rec.spec) and rec.settings is None
    assert isinstance(rec.cloud, ProviderCloud)


@pytest.mark.parametrize(
    ("stack", "module", "instance_field"),
    [("aws-us-east-1", "aws", "instance_type"), ("gcp-us-central1", "gcp", "machine_type")],
)
def test_each_replica_is_rendered_with_its_own_versions_instance_and_scripts(
    root: Path, stack: str, module: str, instance_field: str
) -> None:
    """A rollout keeps old replicas as they are: each cloud module launches each replica from
    its version's entry of `versions` (instance type, image, disk, scripts), and tags or
    labels it with its version, so a new version is new instances beside the old ones, never
    an in-place change (issue 13; GCP used to change the startup script in place)."""
    from reconciler.backends.base import Layout
    from reconciler.rendering import render_tfvars
    from reconciler.spec.fingerprint import replica_part
    from reconciler.stacks import ManagedReplica

    rig = Rig(root)
    old = replica_part(rig.spec)
    new = {**old, "run": "python -m vllm.entrypoints.openai.api_server --model v2-model"}
    zones = {"aws": ("us-east-1a", "us-east-1b"), "gcp": ("us-central1-a", "us-central1-b")}
    first, second = zones[module]
    kept = (
        ManagedReplica(f"{first}-spot-0", first, Market.SPOT, version=1),
        ManagedReplica(f"{second}-spot-5", second, Market.SPOT, version=2),
    )
    rendered = rig.backend.render(Layout(kept, (), versions={1: old, 2: new}), 0.0)
    context = next(r for r in rendered if r.stack.name == stack).context
    assert {k: v["version"] for k, v in context["replicas"].items()} == {
        f"{first}-spot-0": "1",
        f"{second}-spot-5": "2",
    }
    assert context["versions"]["1"]["run_script"] == rig.spec.run
    assert context["versions"]["2"]["run_script"].endswith("--model v2-model")
    assert context["versions"]["2"][instance_field] == context["instance_type"]
    template = next(r for r in rendered if r.stack.name == stack).template
    assert_contract(module, render_tfvars(template, context))
    assert rig.backend.carries_versions  # every region's module carries versions: rollouts run
