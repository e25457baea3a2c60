"""Several GPU types in one AWS region (issue 15): one target group per type behind a weighted
listener forward. The renderer weighs each type's target group by the requests/s its ready
members serve (`accelerator_weights`, 0-999); the adapter reads each replica's health from
its own type's group. The module itself is applied against the emulator in
tests/e2e/test_aws_mix.py."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.backends.base import Layout
from reconciler.backends.clouds import LB_MAX_WEIGHT, ProviderCloud
from reconciler.clouds.aws.apis import AwsApis, target_groups_of
from reconciler.errors import AdapterError
from reconciler.paths import ServicePaths
from reconciler.policy import Market, ReplicaState
from reconciler.rendering import render_tfvars
from reconciler.spec import load_spec
from reconciler.stacks import ManagedReplica, capacity_weights
from tests.adapters.conftest import _moto_server, _no_real_credentials, moto_url
from tests.adapters.test_aws import client, image_id
from tests.clouds.test_render_contract import assert_contract
from tests.engine.cloud_fakes import FakeApis, make_root, settings

__all__ = ["_moto_server", "_no_real_credentials", "moto_url"]  # fixtures

MIX_AWS = "llama-mix-aws"  # L4 serves 5 requests/s, A10G 8 (target_qps_per_replica)
REGION = "us-east-1"


def backend(root: Path, service: str = MIX_AWS, *, several_types: bool = True) -> ProviderCloud:
    paths = ServicePaths.for_service(service, root=root)
    spec = load_spec(paths.spec_file)
    return ProviderCloud(
        paths, spec, settings(dns=False), apis={"aws": FakeApis()}, several_types=several_types
    )


def replica(rid: str, accelerator: str, zone: str = "us-east-1a") -> ManagedReplica:
    return ManagedReplica(rid, zone, Market.ON_DEMAND, accelerator=accelerator)


L4_A = replica("us-east-1a-l4-od-0", "L4")
L4_B = replica("us-east-1b-l4-od-1", "L4", "us-east-1b")
A10G_A = replica("us-east-1a-a10g-od-2", "A10G")
A10G_B = replica("us-east-1c-a10g-od-3", "A10G", "us-east-1c")
UNTYPED = replica("us-east-1a-od-4", "")


def rendered(
    cloud: ProviderCloud, kept: Sequence[ManagedReplica], ready: Sequence[str]
) -> dict[str, Any]:
    """The tfvars of the service's one region stack, checked against the module."""
    (stack,) = cloud.render(Layout(tuple(kept), tuple(ready)), 0.0)
    out = render_tfvars(stack.template, stack.context)
    assert_contract("aws", out)
    return out


# -- rendering -------------------------------------------------------------------------------


def test_each_types_weight_is_its_ready_members_requests_per_second(mix_root: Path) -> None:
    # ready: 2 x L4 (10 requests/s) and 1 x A10G (8); the second A10G is still starting
    out = rendered(
        backend(mix_root),
        [L4_A, L4_B, A10G_A, A10G_B],
        [L4_A.id, L4_B.id, A10G_A.id],
    )
    assert out["accelerator_weights"] == {"L4": LB_MAX_WEIGHT, "A10G": round(999 * 8 / 10)}
    assert out["untyped_weight"] == 0
    assert set(out["lb_members"]) == {L4_A.id, L4_B.id, A10G_A.id, A10G_B.id}
    # every member registered, each in its type's group (replica_accelerators)
    assert out["replica_accelerators"][A10G_B.id] == "A10G"


def test_a_type_without_a_ready_member_weighs_zero(mix_root: Path) -> None:
    out = rendered(backend(mix_root), [L4_A, A10G_A, A10G_B], [L4_A.id])
    assert out["accelerator_weights"] == {"L4": LB_MAX_WEIGHT, "A10G": 0}


def test_a_type_with_no_replica_at_all_weighs_zero(mix_root: Path) -> None:
    out = rendered(backend(mix_root), [A10G_A], [A10G_A.id])
    assert out["accelerator_weights"] == {"L4": 0, "A10G": LB_MAX_WEIGHT}


def test_with_no_ready_member_the_registered_ones_weigh(mix_root: Path) -> None:
    out = rendered(backend(mix_root), [L4_A, A10G_A], [])
    assert out["accelerator_weights"] == {"L4": round(999 * 5 / 8), "A10G": LB_MAX_WEIGHT}


def test_with_no_member_at_all_every_group_weighs_the_same(mix_root: Path) -> None:
    out = rendered(backend(mix_root), [], [])
    assert out["accelerator_weights"] == {"L4": 1, "A10G": 1}
    assert out["untyped_weight"] == 1


def test_a_replica_of_no_type_weighs_in_the_shared_group(mix_root: Path) -> None:
    # launched before the service mixed: it runs the spec's first accelerator's target
    cloud = backend(mix_root)
    first = cloud.spec.resources.accelerator_names[0]
    out = rendered(cloud, [UNTYPED, A10G_A], [UNTYPED.id, A10G_A.id])
    assert UNTYPED.id not in out["replica_accelerators"]
    untyped_rps = cloud.spec.replica_rps(first)
    assert untyped_rps is not None
    assert out["untyped_weight"] == round(999 * min(untyped_rps, 8) / max(untyped_rps, 8))
    assert out["accelerator_weights"]["L4"] == 0


def test_a_profile_in_the_sidecar_sets_each_types_capacity(mix_root: Path) -> None:
    sidecar = "mix:\n  profile:\n    gpus:\n      L4: {max_rps: 2}\n      A10G: {max_rps: 10}\n"
    (mix_root / "services" / f"{MIX_AWS}.hedgeform.yaml").write_text(sidecar)
    out = rendered(backend(mix_root), [L4_A, A10G_A], [L4_A.id, A10G_A.id])
    assert out["accelerator_weights"] == {"L4": round(999 * 2 / 10), "A10G": LB_MAX_WEIGHT}


def test_a_service_of_one_type_renders_no_weights(tmp_path: Path) -> None:
    cloud = backend(make_root(tmp_path), "llama-cloud", several_types=False)
    kept = [replica("us-east-1a-od-0", "")]
    stacks = cloud.render(Layout(tuple(kept), (kept[0].id,)), 0.0)
    aws = next(s for s in stacks if s.stack.cloud == "aws")
    out = render_tfvars(aws.template, aws.context)
    for key in ("accelerator_types", "replica_accelerators", "accelerator_weights"):
        assert key not in out
    assert "untyped_weight" not in out


@given(st.dictionaries(st.sampled_from(["L4", "A10G", "A100", "_untyped"]), st.floats(0, 500)))
def test_weights_keep_the_capacity_ratios_within_rounding(capacity: dict[str, float]) -> None:
    weights = capacity_weights(capacity, LB_MAX_WEIGHT)
    assert set(weights) == set(capacity)
    assert all(0 <= w <= LB_MAX_WEIGHT for w in weights.values())
    biggest = max(capacity.values(), default=0.0)
    if biggest <= 0:
        assert set(weights.values()) <= {1}
        return
    assert max(weights.values()) == LB_MAX_WEIGHT
    for key, rps in capacity.items():
        assert (weights[key] == 0) == (rps <= 0)
        if rps > 0:
            assert abs(weights[key] - LB_MAX_WEIGHT * rps / biggest) <= 1


# -- the adapter: each replica's health from its own type's target group ---------------------


def test_each_replica_is_read_from_its_own_types_target_group(
    moto_url: str, mix_root: Path
) -> None:
    ec2, elb = client("ec2", moto_url), client("elbv2", moto_url)
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    reply = ec2.run_instances(ImageId=image_id(ec2), MinCount=3, MaxCount=3)
    ids = [str(i["InstanceId"]) for i in reply["Instances"]]
    groups = {
        name: str(
            elb.create_target_group(
                Name=f"hf-{name}-{ids[0][-6:]}", Protocol="HTTP", Port=8081, VpcId=vpc["VpcId"]
            )["TargetGroups"][0]["TargetGroupArn"]
        )
        for name in ("shared", "l4", "a10g")
    }
    # the L4 replica is in its own group; the A10G replica only in the L4 group (as if attached
    # to the wrong one); the replica of no type in the shared group
    elb.register_targets(TargetGroupArn=groups["l4"], Targets=[{"Id": ids[0]}, {"Id": ids[1]}])
    elb.register_targets(TargetGroupArn=groups["shared"], Targets=[{"Id": ids[2]}])
    zone = "us-east-1a"
    l4 = ManagedReplica("a-l4", zone, Market.ON_DEMAND, instance_id=ids[0], accelerator="L4")
    a10g = ManagedReplica("a-a10g", zone, Market.ON_DEMAND, instance_id=ids[1], accelerator="A10G")
    plain = ManagedReplica("a-plain", zone, Market.ON_DEMAND, instance_id=ids[2])
    outputs = {
        "target_group_arn": groups["shared"],
        "target_group_arns": {"L4": groups["l4"], "A10G": groups["a10g"]},
    }
    assert target_groups_of([l4, a10g, plain], outputs) == {
        "a-l4": groups["l4"],
        "a-a10g": groups["a10g"],
        "a-plain": groups["shared"],
    }
    spec = load_spec(ServicePaths.for_service(MIX_AWS, root=mix_root).spec_file)
    states = AwsApis(spec, moto_url).states(REGION, [l4, a10g, plain], outputs, set(), {}, 0.0)
    assert states["a-l4"][0] is ReplicaState.READY  # healthy in its own type's group
    assert states["a-a10g"][0] is ReplicaState.STARTING  # absent from its own group
    assert states["a-plain"][0] is ReplicaState.READY  # the shared group, as before


def test_a_missing_types_target_group_is_one_line(moto_url: str, mix_root: Path) -> None:
    ec2 = client("ec2", moto_url)
    (instance,) = ec2.run_instances(ImageId=image_id(ec2), MinCount=1, MaxCount=1)["Instances"]
    gone = (
        f"arn:aws:elasticloadbalancing:{REGION}:123456789012:targetgroup/hf-gone/0123456789abcdef"
    )
    l4 = ManagedReplica(
        "a-l4", "us-east-1a", Market.ON_DEMAND, instance_id=instance["InstanceId"], accelerator="L4"
    )
    spec = load_spec(ServicePaths.for_service(MIX_AWS, root=mix_root).spec_file)
    outputs = {"target_group_arns": {"L4": gone}}
    with pytest.raises(AdapterError) as caught:
        AwsApis(spec, moto_url).states(REGION, [l4], outputs, set(), {}, 0.0)
    assert "\n" not in str(caught.value) and "describe_target_health" in str(caught.value)
