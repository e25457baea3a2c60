"""End to end on AWS as far as this machine allows: the real `hedgeform` commands drive the
pinned Terraform with the real hashicorp/aws provider (from the machine's local provider
mirror) against the test AWS emulator (tests/emulators/aws.py: moto in server mode plus the
fixes the provider needs). What the emulator cannot prove is listed in docs/clouds.md.

The tests share one deployment of `services/llama-aws.yaml` (three zones of us-east-1, with
the Route 53 front stack, an ACM certificate and allowed CIDR blocks) and run in order: first
apply, its HTTPS listeners, a clean re-plan once converged (and the front's weighted records),
an interruption warning, a capacity refusal in one zone, every zone refusing, then destroy.
Each loop step is `hedgeform run --max-ticks 1`, so what one tick decided is read from its
record in ticks.jsonl. Without a local mirror of the AWS provider the whole module is skipped
with one line in the summary.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

from reconciler.cli import main
from reconciler.clouds.registry import cloud_replicas
from reconciler.engine.state_store import load_record, save_record
from reconciler.policy.memory import Backoff
from reconciler.terraform.binaries import configured_aws_mirror
from tests.emulators import aws as emulator

REPO = Path(__file__).resolve().parents[2]
SERVICE = "llama-aws"
REGION = "us-east-1"
STACK = f"aws-{REGION}"
DOMAIN = "hedgeform-e2e.example"
ALLOWED = "203.0.113.0/24"
ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")  # the service's any_of entries

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
    """Replica id -> instance id, zone and market, read from the instances in the stack's
    state as the reconciler reads them (outputs are stale after an apply that failed in
    part, as one with a refused launch does)."""
    return {
        r.id: {"instance_id": r.instance_id, "zone": r.zone, "market": r.market.value}
        for r in cloud_replicas(root / "state" / SERVICE / STACK, "aws")
    }


def registered(url: str, root: Path) -> set[str]:
    """Instance ids in the target group (boto3 describe_target_health)."""
    arn = outputs(root)["target_group_arn"]
    health = client(url, "elbv2").describe_target_health(TargetGroupArn=arn)
    return {d["Target"]["Id"] for d in health["TargetHealthDescriptions"]}


def spot(root: Path) -> dict[str, dict[str, Any]]:
    return {rid: r for rid, r in replicas(root).items() if r["market"] == "spot"}


def on_demand(root: Path) -> dict[str, dict[str, Any]]:
    return {rid: r for rid, r in replicas(root).items() if r["market"] == "on_demand"}


def tick(root: Path, env: dict[str, str]) -> dict[str, Any]:
    """One tick of the loop users run; its record in ticks.jsonl."""
    hedgeform(root, env, "run", SERVICE, "--max-ticks", "1", "--interval", "1")
    lines = (root / "state" / SERVICE / "ticks.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    record: dict[str, Any] = [r for r in records if "decision" in r][-1]
    return record


def refused_launches(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The tick's spot launches that the emulator refused for capacity."""
    failures = record["stacks"][STACK]["launch_failures"]
    return [
        launch
        for launch in record["decision"]["launches"]
        if launch["market"] == "spot" and failures.get(launch["id"]) == "capacity"
    ]


def spot_launches(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [x for x in record["decision"]["launches"] if x["market"] == "spot"]


def zone_backoff(root: Path) -> dict[str, Backoff]:
    return dict(load_record(root / "state" / SERVICE / "reconciler.json").memory.zone_backoff)


def let_backoffs_pass(root: Path) -> None:
    """Stand in for the minutes a capacity retry delay waits (60 s and more,
    policy/capacity_backoff.py): every zone's retry time is moved to the past, through the
    reconciler's own record, so the next tick may ask again."""
    path = root / "state" / SERVICE / "reconciler.json"
    record = load_record(path)
    passed = {z: replace(b, retry_at=b.last_at) for z, b in record.memory.zone_backoff.items()}
    save_record(path, replace(record, memory=replace(record.memory, zone_backoff=passed)))


def serving_members(url: str, root: Path) -> set[str]:
    """Replica ids whose instances are in the target group (describe_target_health); every
    registered instance must be one of the service's replicas."""
    by_instance = {r["instance_id"]: rid for rid, r in replicas(root).items()}
    targets = registered(url, root)
    assert targets <= set(by_instance), (targets, by_instance)
    return {by_instance[t] for t in targets}


def test_first_apply_spreads_spot_and_registers_exactly_the_chosen_members(
    root: Path, env: dict[str, str], url: str
) -> None:
    out = hedgeform(root, env, "apply", SERVICE, "--timeout", "600")
    assert "serving after" in out, out
    placed = spot(root)
    assert len(placed) == 3  # min_replicas 2 + num_overprovision 1
    assert sorted(r["zone"] for r in placed.values()) == list(ZONES)  # one per failure domain
    members = set(outputs(root)["lb_members"])
    assert set(placed) <= members
    assert registered(url, root) == {replicas(root)[m]["instance_id"] for m in members}
    described = client(url, "ec2").describe_instances(
        InstanceIds=[r["instance_id"] for r in placed.values()]
    )
    for reservation in described["Reservations"]:
        for instance in reservation["Instances"]:
            assert instance["InstanceLifecycle"] == "spot"
    for r in outputs(root)["replicas"].values():  # "" for on-demand, never null (issue 11)
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
    out = hedgeform(root, env, "status", SERVICE)  # the URL users are given says https://
    assert f"endpoint: https://{env['HEDGEFORM_DNS_NAME']}" in out, out


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
    weighted = [r for r in records if r["Name"].rstrip(".") == env["HEDGEFORM_DNS_NAME"]]
    assert [(r["Type"], r["SetIdentifier"]) for r in weighted] == [("A", STACK)]
    lb_dns = client(url, "elbv2").describe_load_balancers(
        LoadBalancerArns=[outputs(root)["lb_arn"]]
    )["LoadBalancers"][0]["DNSName"]
    assert weighted[0]["AliasTarget"]["DNSName"].rstrip(".") == lb_dns
    assert weighted[0]["Weight"] > 0
    check = client(url, "route53").get_health_check(HealthCheckId=weighted[0]["HealthCheckId"])
    config = check["HealthCheck"]["HealthCheckConfig"]
    assert config["FullyQualifiedDomainName"] == lb_dns
    assert config["ResourcePath"] == "/health"  # the spec's readiness_probe path


def test_the_ci_examples_commands_review_and_apply_on_aws(
    root: Path, env: dict[str, str], tmp_path: Path, url: str
) -> None:
    """Issue 16, deliverable 5, on the AWS emulator: the `hedgeform` lines of
    examples/ci/github/ run as CI runs them (SERVICE=llama-aws): the plan is kept with the
    real AWS provider's saved plans, posted as one marked comment, and applied on merge;
    a second apply of the same DIR after the state moved is refused (exit 4)."""
    from tests.e2e.test_ci_example import hedgeform_lines

    (line,) = hedgeform_lines("hedgeform-plan.yml")
    (merge,) = hedgeform_lines("hedgeform-apply.yml")

    def argv(text: str) -> list[str]:
        words = text.replace('"$SERVICE"', SERVICE).replace('"review/$SERVICE"', "R").split()
        return [str(tmp_path / "review") if w == "R" else w for w in words[1:]]

    hedgeform(root, env, *argv(line))
    review = tmp_path / "review"
    assert (review / STACK / "tfplan").is_file() and (review / "front" / "tfplan").is_file()
    doc = (review / "plan.md").read_text()
    assert doc.startswith(f"<!-- hedgeform-plan service={SERVICE} -->")
    assert "Plan: 0 to create, 0 to update, 0 to delete, 0 to replace" in doc
    out = hedgeform(root, env, *argv(merge))
    assert "the reviewed plan changes nothing" in out or "applied the reviewed plan" in out
    # A tag added by hand, put back by the next apply, moves the state: the same reviewed
    # DIR is then stale.
    serial = state(root)["serial"]
    _, replica = sorted(spot(root).items())[0]
    client(url, "ec2").create_tags(
        Resources=[replica["instance_id"]], Tags=[{"Key": "owner", "Value": "hand"}]
    )
    hedgeform(root, env, "apply", SERVICE, "--no-wait")
    assert state(root)["serial"] != serial
    out = hedgeform(root, env, *argv(merge), code=4)
    assert "stale plan: stack " in out


def test_drift_names_a_replica_changed_by_hand_and_an_unknown_tagged_instance(
    root: Path, env: dict[str, str], url: str
) -> None:
    """`hedgeform drift` (issue 16) with the real provider's refresh-only plan: a converged
    service has no drift (exit 0); a tag added by hand to a replica's instance is that
    resource changed outside Terraform, and an instance tagged for the service that no state
    holds is unknown (exit 2). Both are undone afterwards for the tests that follow."""

    def drift() -> tuple[int, dict[str, Any]]:
        result = CliRunner().invoke(
            main, ["drift", SERVICE, "--json", "--root", str(root)], env=env
        )
        return result.exit_code, json.loads(result.stdout or "{}")

    code, clean = drift()
    assert code == 0, json.dumps(clean, indent=1)
    assert clean["drift"] is False and clean["unknown_instances"] == []
    assert {s["stack"] for s in clean["stacks"]} == {STACK, "front"}
    rid, replica = sorted(spot(root).items())[0]
    ec2 = client(url, "ec2")
    ec2.create_tags(Resources=[replica["instance_id"]], Tags=[{"Key": "owner", "Value": "hand"}])
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    stray = ec2.run_instances(
        ImageId=image,
        MinCount=1,
        MaxCount=1,
        InstanceType="g6.xlarge",
        Placement={"AvailabilityZone": ZONES[1]},
        TagSpecifications=[
            {
                "ResourceType": "instance",
                "Tags": [
                    {"Key": "hedgeform:service", "Value": SERVICE},
                    {"Key": "hedgeform:replica", "Value": "us-east-1b-spot-99"},
                ],
            }
        ],
    )["Instances"][0]["InstanceId"]
    try:
        code, report = drift()
        assert code == 2, json.dumps(report, indent=1)
        stack = next(s for s in report["stacks"] if s["stack"] == STACK)
        changed = {c["address"]: c for c in stack["changed"]}
        entry = changed[f'module.stack.aws_instance.replica["{rid}"]']
        assert entry["action"] == "update"
        tags = {a["name"]: a for a in entry["attributes"]}["tags"]
        assert "owner" not in tags["before"] and tags["after"]["owner"] == "hand"
        assert [(u["id"], u["zone"]) for u in report["unknown_instances"]] == [(stray, ZONES[1])]
        assert "us-east-1b-spot-99" in report["unknown_instances"][0]["note"]
    finally:
        ec2.terminate_instances(InstanceIds=[stray])
        ec2.delete_tags(Resources=[replica["instance_id"]], Tags=[{"Key": "owner"}])
    code, again = drift()
    assert code == 0, json.dumps(again, indent=1)


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


def test_a_capacity_refusal_marks_the_zone_and_the_replacement_goes_elsewhere(
    root: Path, env: dict[str, str], url: str
) -> None:
    """A spot replica is reclaimed; `hedgeform plan` shows where its replacement will go, and
    that zone is made to refuse spot capacity. The tick's launch there is refused (the stack
    does not fail); the next tick marks the zone (a retry delay in the policy's memory) and
    places the replacement elsewhere, without asking the refusing zone again."""
    before = spot(root)
    victim, placed = sorted(before.items())[0]
    emulator.reclaim(placed["instance_id"], REGION, outputs(root)["notices_queue_url"])
    hedgeform(root, env, "plan", SERVICE)  # decides as the next tick will; consumes nothing
    rendered = json.loads((root / "state" / SERVICE / STACK / "terraform.tfvars.json").read_text())
    ((_, chosen),) = [(r, v) for r, v in rendered["replicas"].items() if r not in replicas(root)]
    full = chosen["zone"]
    emulator.refuse_capacity(full)
    try:
        first = tick(root, env)
        assert [x["zone"] for x in refused_launches(first)] == [full], first
        assert not set(spot(root)) - set(before)  # nothing new: the launch was refused
        second = tick(root, env)  # decides with the refusal among its signals
        assert full in zone_backoff(root), zone_backoff(root)
        assert spot_launches(second), second
        assert full not in {x["zone"] for x in spot_launches(second)}, second
        assert not refused_launches(second), second
    finally:
        emulator.restore_capacity()
    new = {rid: r for rid, r in spot(root).items() if rid not in before}
    assert len(new) == 1 and next(iter(new.values()))["zone"] != full
    assert victim not in replicas(root)
    assert set(new) <= serving_members(url, root)


def test_with_every_zone_refusing_on_demand_covers_until_spot_returns(
    root: Path, env: dict[str, str], url: str
) -> None:
    """Two of three spot replicas are reclaimed while no zone has spot capacity: on-demand
    covers the serving share at once (dynamic_ondemand_fallback), refused zones wait out
    their retry delays, and once capacity is back spot is placed again and the on-demand
    cover is removed after the new spot replicas serve."""
    before = spot(root)
    for zone in ZONES:
        emulator.refuse_capacity(zone)
    try:
        queue = outputs(root)["notices_queue_url"]
        for _, r in sorted(before.items())[:2]:
            emulator.reclaim(r["instance_id"], REGION, queue)
        first = tick(root, env)
        assert any(x["market"] == "on_demand" for x in first["decision"]["launches"]), first
        # The cover joins the target group in the same tick, though spot launches of the
        # same apply were refused (the pass applies again without them).
        assert len(on_demand(root)) == 1
        assert set(on_demand(root)) <= serving_members(url, root)
        waiting = {x["zone"] for x in refused_launches(first)}
        assert waiting, first
        second = tick(root, env)  # a refused zone is not asked again within its delay
        assert waiting <= set(zone_backoff(root)), zone_backoff(root)
        assert not {x["zone"] for x in spot_launches(second)} & waiting, second
        assert len(on_demand(root)) == 1 and len(spot(root)) == 1
    finally:
        emulator.restore_capacity()
    let_backoffs_pass(root)
    for _ in range(3):  # spot launches, then passes readiness, then the cover goes
        tick(root, env)
        if not on_demand(root) and len(spot(root)) == 3:
            break
    assert not on_demand(root), replicas(root)
    assert len(spot(root)) == 3
    assert set(spot(root)) <= serving_members(url, root)


def test_a_changed_run_command_rolls_out_and_never_drops_below_the_target(
    root: Path, env: dict[str, str], url: str
) -> None:
    """Issue 13 on the real provider: a new `run` is a new version; each tick launches new
    instances beside the old ones (new ids, the version's own user data and tag), and an old
    instance leaves the target group only once a new one serves, so the target group never
    holds fewer than the target."""
    spec = root / "services" / f"{SERVICE}.yaml"
    text = spec.read_text()
    before = set(replicas(root))
    versions = {r.version for r in cloud_replicas(root / "state" / SERVICE / STACK, "aws")}
    assert versions == {1}
    spec.write_text(text.replace("--max-model-len 8192", "--max-model-len 4096"))
    assert spec.read_text() != text, "the test's spec edit found nothing to change"
    target = 2
    fewest: list[int] = []
    for _ in range(12):
        tick(root, env)
        fewest.append(len(serving_members(url, root)))
        memory = load_record(root / "state" / SERVICE / "reconciler.json").memory
        if memory.versions and memory.versions[-1].state == "ready":
            break
    assert memory.versions[-1].state == "ready", memory.versions
    assert min(fewest) >= target, fewest
    now = {r.id: r.version for r in cloud_replicas(root / "state" / SERVICE / STACK, "aws")}
    assert set(now.values()) == {2} and not set(now) & before, now
    assert set(spot(root)) <= serving_members(url, root)


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
