"""Several GPU types on AWS, applied by the real Terraform and hashicorp/aws provider against
the test AWS emulator (tests/emulators/aws.py; what it cannot prove: docs/clouds.md).
`services/llama-mix-aws.yaml` asks for `{L4: 1, A10G: 1}` in three zones of us-east-1; the
default policy runs a mix, and each EC2 instance is its own type's instance type with its
type in a `hedgeform:gpu-type` tag that the next pass reads back. Each type has its own target
group, the listener forwards to them with the rendered weights, and each instance is
registered in its own type's group (the emulator stores the weights; it routes no traffic)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

from reconciler.cli import main
from reconciler.clouds.registry import cloud_replicas
from reconciler.terraform.binaries import configured_aws_mirror
from reconciler.terraform.state import state_outputs
from tests.emulators import aws as emulator

REPO = Path(__file__).resolve().parents[2]
SERVICE = "llama-mix-aws"
REGION = "us-east-1"
INSTANCE_TYPES = {"L4": "g6.xlarge", "A10G": "g5.xlarge"}

if configured_aws_mirror(REPO / ".tools" / "terraform.rc") is None:
    pytest.skip(
        "AWS end-to-end tests skipped: this machine has no local mirror of hashicorp/aws "
        "(set HEDGEFORM_TF_PLUGIN_MIRROR to one and run make setup)",
        allow_module_level=True,
    )

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with emulator.running() as address:
        yield address


def ec2(url: str, service: str = "ec2") -> Any:
    return boto3.client(
        service,
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def hedgeform(root: Path, env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(main, [*args, "--root", str(root)], env=env)
    assert result.exit_code == 0, result.output
    return result.output


def test_each_replica_runs_on_its_own_types_instance(tmp_path: Path, url: str) -> None:
    if not (REPO / ".tools" / "bin" / "terraform").exists():
        pytest.skip("the pinned Terraform is not installed: run make setup")
    (tmp_path / "services").mkdir()
    # 25 requests/s at 5 per L4 and 8 per A10G. The emulator quotes one static spot price for
    # every type, so the test runs on demand, at the catalog's list prices (g6.xlarge $0.80/h,
    # g5.xlarge $1.01/h): 2 x L4 + 2 x A10G ($3.62/h) beats 4 x A10G or 5 x L4 ($4.02/h).
    text = (REPO / "services" / f"{SERVICE}.yaml").read_text()
    text = text.replace("min_replicas: 2", "min_replicas: 5")
    text = text.replace("num_overprovision: 1", "num_overprovision: 0")
    text = text.replace("use_spot: true", "use_spot: false")
    text = text.replace("    dynamic_ondemand_fallback: true\n", "")
    text = text.replace("    spot_placer: dynamic_fallback\n", "")
    (tmp_path / "services" / f"{SERVICE}.yaml").write_text(text)
    (tmp_path / "terraform").symlink_to(REPO / "terraform")
    (tmp_path / ".tools").symlink_to(REPO / ".tools")
    image = ec2(url).describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    env = {
        "HEDGEFORM_AWS_ENDPOINT_URL": url,
        "HEDGEFORM_AWS_IMAGES": f"{REGION}={image}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    plan = hedgeform(tmp_path, env, "plan", SERVICE)
    assert "note: aws us-east-1 offers " in plan
    hedgeform(tmp_path, env, "apply", SERVICE, "--timeout", "600")
    stack = tmp_path / "state" / SERVICE / f"aws-{REGION}"
    managed = cloud_replicas(stack, "aws")
    assert {m.accelerator for m in managed} == set(INSTANCE_TYPES), managed
    described = ec2(url).describe_instances(InstanceIds=[m.instance_id for m in managed])
    for reservation in described["Reservations"]:
        for instance in reservation["Instances"]:
            tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
            gpu = tags["hedgeform:gpu-type"]
            assert instance["InstanceType"] == INSTANCE_TYPES[gpu], (gpu, instance)
            assert tags["hedgeform:accelerator"] == f"{gpu}:1"
            assert f"-{gpu.lower()}-" in tags["hedgeform:replica"]
    assert_one_weighted_target_group_per_type(url, stack, managed)
    # the next pass reads every replica's type back: nothing to replace
    again = hedgeform(tmp_path, env, "plan", SERVICE)
    assert "0 to replace" in again and "0 to delete" in again, again
    assert "0 to update" in again, again  # the weights and groups are what they were
    hedgeform(tmp_path, env, "destroy", SERVICE)
    assert cloud_replicas(stack, "aws") == []


def assert_one_weighted_target_group_per_type(url: str, stack: Path, managed: Any) -> None:
    """One target group per type, tagged with it; the HTTP listener forwards to each type's
    group (and the shared one) with the weights the renderer wrote; each registered instance
    is in its own type's group and no other."""
    elb = ec2(url, "elbv2")
    outputs = state_outputs(stack)
    tfvars = json.loads((stack / "terraform.tfvars.json").read_text())
    typed = outputs["target_group_arns"]
    assert set(typed) == set(INSTANCE_TYPES), outputs
    shared = outputs["target_group_arn"]
    assert shared not in typed.values()
    for gpu, arn in typed.items():
        tags = elb.describe_tags(ResourceArns=[arn])["TagDescriptions"][0]["Tags"]
        assert {"Key": "hedgeform:gpu-type", "Value": gpu} in tags, tags
    (listener,) = elb.describe_listeners(LoadBalancerArn=outputs["lb_arn"])["Listeners"]
    (action,) = listener["DefaultActions"]
    assert action["Type"] == "forward", action
    weights = {g["TargetGroupArn"]: g["Weight"] for g in action["ForwardConfig"]["TargetGroups"]}
    expected = {arn: tfvars["accelerator_weights"][gpu] for gpu, arn in typed.items()}
    assert weights == {**expected, shared: tfvars["untyped_weight"]}, (weights, tfvars)
    # both types run and are registered, so both weigh (L4 5 requests/s, A10G 8 per replica)
    assert all(w > 0 for w in expected.values()) and tfvars["untyped_weight"] == 0
    registered = set(tfvars["lb_members"])
    for gpu, arn in {**typed, "": shared}.items():
        health = elb.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
        members = {d["Target"]["Id"] for d in health}
        mine = {m.instance_id for m in managed if m.accelerator == gpu and m.id in registered}
        assert members == mine, (gpu, members, mine)
