"""End to end on AWS as far as this machine allows: the real `hedgeform` commands drive the
pinned Terraform with the real hashicorp/aws provider (from the machine's local provider
mirror) against the test AWS emulator (tests/emulators/aws.py: moto in server mode plus the
fixes the provider needs). What the emulator cannot prove is listed in docs/clouds.md.

The tests share one deployment of `services/llama-aws.yaml` (with the Route 53 front stack,
an ACM certificate and allowed CIDR blocks) and run in order: first apply, its HTTPS
listeners, a clean re-plan once converged, an interruption warning replaced through the
loop, then destroy. (Capacity refusals are issue 11's next step; the emulator's
`refuse_capacity` hook is ready for them.) Without a local mirror of the AWS provider the
whole module is skipped with one line in the summary.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

from reconciler.cli import main
from reconciler.terraform.binaries import configured_aws_mirror
from tests.emulators import aws as emulator

REPO = Path(__file__).resolve().parents[2]
SERVICE = "llama-aws"
REGION = "us-east-1"
STACK = f"aws-{REGION}"
DOMAIN = "hedgeform-e2e.example"
ALLOWED = "203.0.113.0/24"

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


def client(url: str, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture(scope="module")
def env(url: str) -> dict[str, str]:
    image = client(url, "ec2").describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    zone = client(url, "route53").create_hosted_zone(Name=DOMAIN, CallerReference="e2e")
    certificate = client(url, "acm").request_certificate(DomainName=f"llama.{DOMAIN}")
    return {
        "HEDGEFORM_AWS_CERTIFICATE_ARNS": f"{REGION}={certificate['CertificateArn']}",
        "HEDGEFORM_ALLOWED_CIDRS": ALLOWED,
        "HEDGEFORM_AWS_ENDPOINT_URL": url,
        "HEDGEFORM_AWS_IMAGES": f"{REGION}={image}",
        "HEDGEFORM_DNS_NAME": f"llama.{DOMAIN}",
        "HEDGEFORM_DNS_ZONE_ID": zone["HostedZone"]["Id"].rsplit("/", 1)[-1],
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (REPO / ".tools" / "bin" / "terraform").exists():
        pytest.skip("the pinned Terraform is not installed: run make setup")
    path = tmp_path_factory.mktemp("aws-root")
    (path / "services").mkdir()
    shutil.copy(REPO / "services" / f"{SERVICE}.yaml", path / "services" / f"{SERVICE}.yaml")
    (path / "terraform").symlink_to(REPO / "terraform")
    (path / ".tools").symlink_to(REPO / ".tools")
    return path


def hedgeform(root: Path, env: dict[str, str], *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(main, [*args, "--root", str(root)], env=env)
    assert result.exit_code == code, result.output
    return result.output


def state(root: Path, stack: str = STACK) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (root / "state" / SERVICE / stack / "terraform.tfstate").read_text()
    )
    return data


def outputs(root: Path) -> dict[str, Any]:
    """The region stack's module outputs (the root config re-exports them as `stack`)."""
    values = {k: v["value"] for k, v in state(root).get("outputs", {}).items()}
    return dict(values.get("stack", values))


def replicas(root: Path) -> dict[str, dict[str, Any]]:
    """Replica id -> the module's `replicas` output entry (instance id, zone, market, ...)."""
    return dict(outputs(root).get("replicas") or {})


def registered(url: str, root: Path) -> set[str]:
    """Instance ids in the target group (boto3 describe_target_health)."""
    arn = outputs(root)["target_group_arn"]
    health = client(url, "elbv2").describe_target_health(TargetGroupArn=arn)
    return {d["Target"]["Id"] for d in health["TargetHealthDescriptions"]}


def spot(root: Path) -> dict[str, dict[str, Any]]:
    return {rid: r for rid, r in replicas(root).items() if r["market"] == "spot"}


def test_first_apply_spreads_spot_and_registers_exactly_the_chosen_members(
    root: Path, env: dict[str, str], url: str
) -> None:
    out = hedgeform(root, env, "apply", SERVICE, "--timeout", "600")
    assert "serving after" in out, out
    placed = spot(root)
    assert len(placed) == 3  # min_replicas 2 + num_overprovision 1
    assert len({r["zone"] for r in placed.values()}) == 3  # spread over failure domains
    members = set(outputs(root)["lb_members"])
    assert set(placed) <= members
    assert registered(url, root) == {replicas(root)[m]["instance_id"] for m in members}
    described = client(url, "ec2").describe_instances(
        InstanceIds=[r["instance_id"] for r in placed.values()]
    )
    for reservation in described["Reservations"]:
        for instance in reservation["Instances"]:
            assert instance["InstanceLifecycle"] == "spot"
    for r in replicas(root).values():  # "" for on-demand, never null (issue 11)
        assert (r["spot_instance_request_id"] != "") == (r["market"] == "spot")


def test_the_load_balancer_serves_https_with_the_certificate_to_the_allowed_cidrs(
    root: Path, env: dict[str, str], url: str
) -> None:
    """The settings' ACM certificate and allowed CIDR blocks reach the ALB (issue 11,
    endpoint security), checked against the emulator's ELBv2 and EC2 APIs."""
    elbv2 = client(url, "elbv2")
    listeners = elbv2.describe_listeners(LoadBalancerArn=outputs(root)["lb_arn"])["Listeners"]
    by_port = {listener["Port"]: listener for listener in listeners}
    assert set(by_port) == {80, 443}
    certificate = env["HEDGEFORM_AWS_CERTIFICATE_ARNS"].split("=", 1)[1]
    assert [c["CertificateArn"] for c in by_port[443]["Certificates"]] == [certificate]
    assert by_port[443]["Protocol"] == "HTTPS"
    redirect = by_port[80]["DefaultActions"][0]
    assert redirect["Type"] == "redirect" and redirect["RedirectConfig"]["Port"] == "443"
    groups = elbv2.describe_load_balancers(LoadBalancerArns=[outputs(root)["lb_arn"]])
    group_ids = groups["LoadBalancers"][0]["SecurityGroups"]
    rules = client(url, "ec2").describe_security_group_rules(
        Filters=[{"Name": "group-id", "Values": group_ids}]
    )["SecurityGroupRules"]
    ingress = {r.get("CidrIpv4") for r in rules if not r["IsEgress"]}
    assert ingress == {ALLOWED}


def test_once_converged_a_plan_changes_nothing(root: Path, env: dict[str, str], url: str) -> None:
    """SpotHedge covered the starting spot replicas with on-demand ones; with spot ready it
    removes them (a policy change), and then Terraform finds no drift at all."""
    hedgeform(root, env, "apply", SERVICE, "--no-wait")
    assert set(replicas(root)) == set(spot(root))  # the on-demand cover is gone
    out = hedgeform(root, env, "plan", SERVICE)
    assert "Plan: 0 to create, 0 to update, 0 to delete, 0 to replace (no changes)" in out, out
    records = client(url, "route53").list_resource_record_sets(
        HostedZoneId=env["HEDGEFORM_DNS_ZONE_ID"]
    )["ResourceRecordSets"]
    assert any(r["Name"].rstrip(".") == env["HEDGEFORM_DNS_NAME"] for r in records)
    assert client(url, "route53").list_health_checks()["HealthChecks"]


def test_an_interruption_warning_is_replaced_elsewhere_and_the_target_group_follows(
    root: Path, env: dict[str, str], url: str
) -> None:
    before = spot(root)
    victim, placed = sorted(before.items())[0]
    emulator.reclaim(placed["instance_id"], REGION, outputs(root)["notices_queue_url"])
    hedgeform(root, env, "run", SERVICE, "--max-ticks", "2", "--interval", "1")
    after = replicas(root)
    assert victim not in after
    new = {rid: r for rid, r in after.items() if rid not in before}
    assert any(r["market"] == "spot" and r["zone"] != placed["zone"] for r in new.values())
    members = set(outputs(root)["lb_members"])
    assert victim not in members
    assert registered(url, root) == {after[m]["instance_id"] for m in members}
    ticks = (root / "state" / SERVICE / "ticks.jsonl").read_text().splitlines()
    assert any(victim in line and "warning" in line for line in ticks), ticks[-2:]


def test_destroy_leaves_nothing_behind(root: Path, env: dict[str, str], url: str) -> None:
    """Nothing of this service is left: every instance it ever launched terminated, its load
    balancer, target group, queue, EventBridge rules, DNS records and health checks gone.
    (The emulator's state is shared with the other moto tests of this process, so what is
    checked is this service's, found by tag and by the ids its outputs named.)"""
    before = outputs(root)
    health_checks = {h["Id"] for h in client(url, "route53").list_health_checks()["HealthChecks"]}
    out = hedgeform(root, env, "destroy", SERVICE)
    assert "nothing left running" in out, out
    mine = [{"Name": "tag:hedgeform:service", "Values": [SERVICE]}]
    reservations = client(url, "ec2").describe_instances(Filters=mine)["Reservations"]
    states = {i["State"]["Name"] for r in reservations for i in r["Instances"]}
    assert states == {"terminated"}
    elbv2 = client(url, "elbv2")
    assert before["lb_arn"] not in {
        lb["LoadBalancerArn"] for lb in elbv2.describe_load_balancers()["LoadBalancers"]
    }
    assert before["target_group_arn"] not in {
        tg["TargetGroupArn"] for tg in elbv2.describe_target_groups()["TargetGroups"]
    }
    assert before["notices_queue_url"] not in (
        client(url, "sqs").list_queues().get("QueueUrls") or []
    )
    rules = client(url, "events").list_rules(NamePrefix=f"hf-{SERVICE}-")["Rules"]
    assert rules == []
    records = client(url, "route53").list_resource_record_sets(
        HostedZoneId=env["HEDGEFORM_DNS_ZONE_ID"]
    )["ResourceRecordSets"]
    assert {r["Type"] for r in records} <= {"NS", "SOA"}
    left = {h["Id"] for h in client(url, "route53").list_health_checks()["HealthChecks"]}
    assert health_checks and not (health_checks & left)
