"""The AWS backend against a real moto server: instances launched with the module's tags and
market options, a target group with registered targets, the notices queue, spot prices.

moto reports every registered, running target `healthy` and cannot make one `unhealthy`, and
it records every termination as user-initiated: the state reason of a spot reclaim is set in
its in-process backend (as tests/adapters/test_aws.py does), and `unhealthy` is covered by
the pure `aws_state` tests below.
"""

from __future__ import annotations

import json
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from reconciler.backends.base import Look, Since
from reconciler.backends.clouds import ProviderCloud
from reconciler.backends.sandbox import SandboxSettings
from reconciler.clouds.aws import signals as aws
from reconciler.clouds.aws.apis import AwsApis, aws_state
from reconciler.clouds.settings import ProviderSettings
from reconciler.engine.reconcile import Reconciler
from reconciler.paths import ServicePaths
from reconciler.policy import Market, Notice, NoticeKind, ReplicaState
from reconciler.spec import load_spec
from reconciler.stacks import ManagedReplica
from reconciler.terraform.fake import FakeTerraformRunner
from tests.adapters.conftest import _moto_server, _no_real_credentials, moto_url, svc
from tests.adapters.test_aws import client, image_id, run_spot, spot_reclaim
from tests.engine.cloud_fakes import REPO, FakeApis, aws_state_file, settings

__all__ = ["_moto_server", "_no_real_credentials", "moto_url", "svc"]  # fixtures
STACK = "aws-us-east-1"


def run_on_demand(url: str, zone: str, replica: str, service: str) -> str:
    ec2 = client("ec2", url)
    instance = ec2.run_instances(
        ImageId=image_id(ec2),
        MinCount=1,
        MaxCount=1,
        InstanceType="g6.xlarge",
        Placement={"AvailabilityZone": zone},
        TagSpecifications=[
            {
                "ResourceType": "instance",
                "Tags": [
                    {"Key": aws.REPLICA_TAG, "Value": replica},
                    {"Key": aws.SERVICE_TAG, "Value": service},
                    {"Key": "hedgeform:market", "Value": "on_demand"},
                ],
            }
        ],
    )["Instances"][0]
    return str(instance["InstanceId"])


def target_group(url: str, service: str, members: list[str]) -> str:
    ec2, elb = client("ec2", url), client("elbv2", url)
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    arn = elb.create_target_group(
        Name=f"hf-{service}"[:32],
        Protocol="HTTP",
        Port=8081,
        VpcId=vpc["VpcId"],
        TargetType="instance",
        HealthCheckPath="/health",
    )["TargetGroups"][0]["TargetGroupArn"]
    if members:
        elb.register_targets(TargetGroupArn=arn, Targets=[{"Id": i, "Port": 8081} for i in members])
    return str(arn)


def cloud_root(tmp_path: Path, service: str) -> ServicePaths:
    (tmp_path / "services").mkdir()
    shutil.copy(REPO / "services" / "llama-cloud.yaml", tmp_path / "services" / f"{service}.yaml")
    (tmp_path / "terraform").symlink_to(REPO / "terraform")
    return ServicePaths.for_service(service, root=tmp_path)


def write_state(paths: ServicePaths, replicas: dict[str, tuple[str, str, str]], **out: Any) -> None:
    stack_dir = paths.stack_dir(STACK)
    stack_dir.mkdir(parents=True, exist_ok=True)
    (stack_dir / "terraform.tfstate").write_text(json.dumps(aws_state_file(replicas, out)))


def moto_settings(url: str) -> ProviderSettings:
    base = settings(dns=False)
    return ProviderSettings(cloud=base.cloud, aws_endpoint_url=url, source=base.source)


def test_observed_states_come_from_ec2_and_target_health(
    moto_url: str, svc: str, tmp_path: Path
) -> None:
    paths = cloud_root(tmp_path, svc)
    spec = load_spec(paths.spec_file)
    ready = run_spot(moto_url, "us-east-1a", "us-east-1a-spot-0", spec.name)
    starting = run_on_demand(moto_url, "us-east-1b", "us-east-1b-od-1", spec.name)
    reclaimed = run_spot(moto_url, "us-east-1c", "us-east-1c-spot-2", spec.name)
    stopped = run_on_demand(moto_url, "us-east-1d", "us-east-1d-od-3", spec.name)
    spot_reclaim(moto_url, reclaimed)
    client("ec2", moto_url).terminate_instances(InstanceIds=[stopped])
    arn = target_group(moto_url, spec.name, [ready])
    write_state(
        paths,
        {
            "us-east-1a-spot-0": (ready, "us-east-1a", "spot"),
            "us-east-1b-od-1": (starting, "us-east-1b", "on_demand"),
            "us-east-1c-spot-2": (reclaimed, "us-east-1c", "spot"),
            "us-east-1d-od-3": (stopped, "us-east-1d", "on_demand"),
            "us-east-1e-spot-4": ("i-00000000000000000", "us-east-1e", "spot"),
        },
        target_group_arn=arn,
    )
    backend = ProviderCloud(
        paths,
        spec,
        moto_settings(moto_url),
        apis={"aws": AwsApis(spec, moto_url), "gcp": FakeApis()},
    )
    got = backend.observe(spec, Since(), time.time(), Look.PLAN)
    managed = got.managed
    assert {m.id: m.market for m in managed}["us-east-1b-od-1"] == "on_demand"
    observed = got.observation
    states = {r.id: r.state for r in observed.replicas}
    assert states == {
        "us-east-1a-spot-0": ReplicaState.READY,  # running and healthy in the target group
        "us-east-1b-od-1": ReplicaState.STARTING,  # running, not healthy yet
        "us-east-1c-spot-2": ReplicaState.PREEMPTED,  # Server.SpotInstanceTermination
        "us-east-1d-od-3": ReplicaState.FAILED,  # terminated, not by the spot market
        "us-east-1e-spot-4": ReplicaState.PREEMPTED,  # a spot instance that vanished
    }
    assert {r.id: r.market for r in observed.replicas}["us-east-1a-spot-0"] is Market.SPOT
    assert got.lb_members == {"us-east-1a-spot-0"}
    # moto's spot price history covers us-east-1's zones for g6.xlarge: live prices are used.
    assert {o.zone for o in observed.zones if o.cloud == "aws"} >= {"us-east-1a", "us-east-1b"}


def test_a_queued_interruption_warning_maps_to_its_replica(
    moto_url: str, svc: str, tmp_path: Path
) -> None:
    paths = cloud_root(tmp_path, svc)
    spec = load_spec(paths.spec_file)
    instance = run_spot(moto_url, "us-east-1a", "us-east-1a-spot-0", spec.name)
    write_state(paths, {"us-east-1a-spot-0": (instance, "us-east-1a", "spot")})
    sqs = client("sqs", moto_url)
    queue = sqs.create_queue(QueueName=aws.notices_queue_name(spec.name))["QueueUrl"]
    event = {
        "detail-type": aws.INTERRUPTION_WARNING,
        "source": "aws.ec2",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "detail": {"instance-id": instance, "instance-action": "terminate"},
    }
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(event))
    backend = ProviderCloud(
        paths,
        spec,
        moto_settings(moto_url),
        apis={"aws": AwsApis(spec, moto_url), "gcp": FakeApis()},
    )

    def notices(look: Look) -> tuple[Notice, ...]:
        return backend.observe(spec, Since(), time.time(), look).notices

    peeked = notices(Look.PLAN)  # plan only: left in the queue
    assert [(n.kind, n.replica_id) for n in peeked] == [(NoticeKind.WARNING, "us-east-1a-spot-0")]
    consumed = notices(Look.APPLY)
    assert [n.replica_id for n in consumed] == ["us-east-1a-spot-0"]
    again = notices(Look.APPLY)
    assert again == ()


def test_a_full_pass_against_moto(moto_url: str, svc: str, tmp_path: Path) -> None:
    paths = cloud_root(tmp_path, svc)
    spec = load_spec(paths.spec_file)
    backend = ProviderCloud(
        paths,
        spec,
        moto_settings(moto_url),
        apis={"aws": AwsApis(spec, moto_url), "gcp": FakeApis()},
    )
    runners: dict[str, FakeTerraformRunner] = {}

    def factory(stack: str, stack_dir: Path, module_dir: Path) -> FakeTerraformRunner:
        return runners.setdefault(stack, FakeTerraformRunner(name=stack))

    rec = Reconciler(paths, spec, SandboxSettings(), runner_factory=factory, backend=backend)
    result = rec.run_pass(apply=True)  # no queue yet (never applied): no notices, no failure
    assert not result.failed
    assert result.signals is not None and result.signals.qps is None  # no load balancer yet
    assert sorted(runners) == ["aws-us-east-1", "gcp-us-central1"]
    assert any(x.zone.startswith("us-east-1") for x in result.decision.launches)


def _replica(market: str = "spot") -> ManagedReplica:
    return ManagedReplica("r-0", "us-east-1a", market, False, STACK, "i-0abc", "i-0abc")


@pytest.mark.parametrize(
    ("state", "health", "age", "reason", "expected"),
    [
        ("pending", None, 10, "", ReplicaState.PROVISIONING),
        ("running", None, 10, "", ReplicaState.STARTING),
        ("running", "initial", 10, "", ReplicaState.STARTING),
        ("running", "unhealthy", 10, "", ReplicaState.STARTING),  # within the initial delay
        ("running", "unhealthy", 5000, "", ReplicaState.NOT_READY),
        ("running", "healthy", 10, "", ReplicaState.READY),
        ("shutting-down", None, 10, "Server.SpotInstanceTermination", ReplicaState.PREEMPTED),
        ("terminated", None, 10, "Client.UserInitiatedShutdown", ReplicaState.FAILED),
        ("stopped", None, 10, "Server.SpotInstanceShutdown", ReplicaState.PREEMPTED),
    ],
)
def test_aws_state_mapping(
    state: str, health: str | None, age: float, reason: str, expected: ReplicaState
) -> None:
    now = 1_700_000_000.0
    instance = {
        "State": {"Name": state},
        "LaunchTime": datetime.fromtimestamp(now - age, UTC),
        "StateReason": {"Code": reason},
    }
    got, launched = aws_state(_replica(), instance, health, 1200.0, set(), now)
    assert got is expected
    assert launched == pytest.approx(now - age)


def test_a_running_replica_under_a_preemption_notice_is_preempted() -> None:
    instance = {"State": {"Name": "running"}, "LaunchTime": datetime.now(UTC)}
    got, _ = aws_state(_replica(), instance, "healthy", 1200.0, {"r-0"}, time.time())
    assert got is ReplicaState.PREEMPTED
