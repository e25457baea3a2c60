"""Fields a sandbox-only service carries without effect there are noted, never silently
dropped (issue 17, item 5: "refused clearly, never silently dropped"); on a cloud, where
they are honoured, no such note."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from reconciler.spec import parse_spec
from tests.spec.conftest import BASE

FIELDS: dict[str, tuple[str, object]] = {
    "setup": ("", "pip install vllm"),
    "run": ("", "vllm serve m"),
    "resources.cpus": ("resources", "8+"),
    "resources.memory": ("resources", "64+"),
    "resources.disk_size": ("resources", 512),
    "resources.disk_tier": ("resources", "medium"),
    "resources.network_tier": ("resources", "standard"),
    "resources.image_id": ("resources", "ami-0123456789abcdef0"),
}


def _doc(cloud: str, region: str) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    del doc["run"]
    doc["resources"].update(cloud=cloud, region=region)
    return doc


def _notes(doc: dict[str, Any]) -> list[str]:
    return list(parse_spec(doc, name="svc", source="svc.yaml").notes)


@pytest.mark.parametrize("path", sorted(FIELDS))
def test_a_field_the_sandbox_does_not_act_on_is_noted_there_only(path: str) -> None:
    section, value = FIELDS[path]
    key = path.rsplit(".", 1)[-1]
    for cloud, region in (("local", "local-1"), ("aws", "us-east-1")):
        doc = _doc(cloud, region)
        (doc[section] if section else doc)[key] = value
        named = [n for n in _notes(doc) if n.startswith(f"{path}: ")]
        if cloud == "local":
            assert len(named) == 1, _notes(doc)
            assert "local sandbox" in named[0] and "honoured on aws, gcp and azure" in named[0]
        else:
            assert named == [], named


@pytest.mark.parametrize(
    ("policy", "accelerators", "noted"),
    [
        ("least_load", "L4", True),  # HAProxy balances round robin
        ("round_robin", "L4", False),  # one type: equal weights, plain round robin
        ("round_robin", {"L4": 1, "A10G": 1}, True),  # weighted by type: not plain
        ("instance_aware_least_load", {"L4": 1, "A10G": 1}, False),  # what the weights do
    ],
)
def test_load_balancing_the_sandbox_does_not_do_is_noted(
    policy: str, accelerators: object, noted: bool
) -> None:
    doc = _doc("local", "local-1")
    doc["service"]["load_balancing_policy"] = policy
    doc["resources"]["accelerators"] = accelerators
    if policy == "instance_aware_least_load":
        doc["service"]["replica_policy"]["target_qps_per_replica"] = {"L4": 2, "A10G": 3}
    named = [n for n in _notes(doc) if n.startswith("service.load_balancing_policy: ")]
    assert bool(named) == noted, named
    if noted:
        assert "round robin" in named[0] and "weighted" in named[0]


@pytest.mark.parametrize("policy", ["round_robin", "least_load", "instance_aware_least_load"])
def test_load_balancing_on_azure_is_noted(policy: str) -> None:
    """Issue 17 re-check: Azure's layer-4 load balancer spreads by hash whatever the policy
    says, and the field passed without a note there."""
    doc = _doc("azure", "eastus")
    doc["service"]["load_balancing_policy"] = policy
    if policy == "instance_aware_least_load":
        doc["resources"]["accelerators"] = {"T4": 1, "A10G": 1}
        doc["service"]["replica_policy"]["target_qps_per_replica"] = {"T4": 2, "A10G": 3}
    named = [n for n in _notes(doc) if n.startswith("service.load_balancing_policy: ")]
    assert len(named) == 1 and "Azure's layer-4 load balancer" in named[0], named
    doc = _doc("aws", "us-east-1")
    doc["service"]["load_balancing_policy"] = "least_load"
    assert not [n for n in _notes(doc) if n.startswith("service.load_balancing_policy")]
