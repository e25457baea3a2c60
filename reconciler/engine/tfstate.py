"""What Terraform manages, read from a stack's local state file (format version 4).

This is the level the reconciler works from: the replicas Terraform holds, and which of them
failed to create (Terraform marks those `tainted`). Reading the JSON directly costs
microseconds where `terraform state list` costs a process per stack.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class TfStateError(RuntimeError):
    """A state file we cannot read; the message names it."""


@dataclass(frozen=True)
class ManagedReplica:
    id: str
    zone: str
    market: str
    tainted: bool
    stack: str


def state_resources(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise TfStateError(f"{path}: unreadable Terraform state ({exc})") from exc
    if not isinstance(raw, dict) or raw.get("version") != 4:
        raise TfStateError(f"{path}: not a Terraform state of format version 4")
    resources = raw.get("resources", [])
    return resources if isinstance(resources, list) else []


def managed_replicas(stack_dir: Path) -> list[ManagedReplica]:
    out: list[ManagedReplica] = []
    for res in state_resources(stack_dir / "terraform.tfstate"):
        if res.get("type") != "null_resource" or res.get("name") != "replica":
            continue
        for inst in res.get("instances", []):
            triggers = inst.get("attributes", {}).get("triggers") or {}
            out.append(
                ManagedReplica(
                    id=str(inst.get("index_key") or triggers.get("replica_id")),
                    zone=str(triggers.get("zone", "")),
                    market=str(triggers.get("market", "")),
                    tainted=inst.get("status") == "tainted",
                    stack=stack_dir.name,
                )
            )
    return out


# -- real-cloud stacks -----------------------------------------------------------------------

# The replica resource of each cloud module (terraform/modules/<cloud>/main.tf), keyed by
# replica id through for_each.
CLOUD_REPLICA_TYPES = {
    "aws": "aws_instance",
    "gcp": "google_compute_instance",
    "azure": "azurerm_linux_virtual_machine",
}


@dataclass(frozen=True)
class CloudReplica:
    """A replica of a cloud stack as Terraform holds it: what the observers and notice
    sources need to find it again (instance id for EC2, name for GCP and Azure)."""

    id: str
    zone: str
    market: str
    tainted: bool
    stack: str
    instance_id: str  # EC2 instance id, GCE numeric id, Azure VM resource id
    name: str  # the cloud's instance/VM name (GCP, Azure); the instance id on AWS
    private_ip: str = ""

    def managed(self) -> ManagedReplica:
        return ManagedReplica(self.id, self.zone, self.market, self.tainted, self.stack)


def _market(replica_id: str, spot: bool | None) -> str:
    if spot is None:  # replica ids encode the market: <zone>-spot-<n> / <zone>-od-<n>
        spot = "-spot-" in replica_id
    return "spot" if spot else "on_demand"


def _first(value: Any) -> dict[str, Any]:
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return value[0]
    return {}


def _cloud_replica(cloud: str, key: str, attrs: dict[str, Any]) -> tuple[str, str, str, str]:
    """(zone, market, instance id, name) from one instance's attributes."""
    if cloud == "aws":
        tags = attrs.get("tags") or {}
        options = _first(attrs.get("instance_market_options"))
        spot = options.get("market_type") == "spot" if options else None
        if "hedgeform:market" in tags:
            spot = tags["hedgeform:market"] == "spot"
        iid = str(attrs.get("id", ""))
        return str(attrs.get("availability_zone", "")), _market(key, spot), iid, iid
    if cloud == "gcp":
        scheduling = _first(attrs.get("scheduling"))
        model = scheduling.get("provisioning_model")
        spot = None if model is None else model == "SPOT"
        zone = str(attrs.get("zone", "")).rsplit("/", 1)[-1]
        return zone, _market(key, spot), str(attrs.get("instance_id", "")), str(attrs["name"])
    tags = attrs.get("tags") or {}
    priority = attrs.get("priority")
    spot = None if priority is None else priority == "Spot"
    zone = str(tags.get("hedgeform-zone") or f"{attrs.get('location', '')}-{attrs.get('zone', '')}")
    return zone, _market(key, spot), str(attrs.get("id", "")), str(attrs.get("name", ""))


def cloud_replicas(stack_dir: Path, cloud: str) -> list[CloudReplica]:
    """The replicas a cloud region stack's state holds (module `stack` of the root config)."""
    rtype = CLOUD_REPLICA_TYPES[cloud]
    path = stack_dir / "terraform.tfstate"
    out: list[CloudReplica] = []
    for res in state_resources(path):
        if res.get("type") != rtype or res.get("name") != "replica":
            continue
        if res.get("mode", "managed") != "managed":
            continue
        for inst in res.get("instances", []):
            key = str(inst.get("index_key") or "")
            attrs = inst.get("attributes") or {}
            try:
                zone, market, iid, name = _cloud_replica(cloud, key, attrs)
            except (KeyError, TypeError) as exc:
                raise TfStateError(f"{path}: unexpected {rtype} attributes ({exc})") from exc
            ip = (
                attrs.get("private_ip")  # aws_instance
                or attrs.get("private_ip_address")  # azurerm_linux_virtual_machine
                or _first(attrs.get("network_interface")).get("network_ip", "")  # GCE
            )
            out.append(
                CloudReplica(
                    id=key,
                    zone=zone,
                    market=market,
                    tainted=inst.get("status") == "tainted",
                    stack=stack_dir.name,
                    instance_id=iid,
                    name=name,
                    private_ip=str(ip or ""),
                )
            )
    return out


def state_outputs(stack_dir: Path) -> dict[str, Any]:
    """The module's outputs as the last apply saved them (the root config re-exports the whole
    module as output `stack`), `{}` before the first apply. No Terraform process needed."""
    path = stack_dir / "terraform.tfstate"
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise TfStateError(f"{path}: unreadable Terraform state ({exc})") from exc
    if not isinstance(raw, dict):
        return {}
    value = (raw.get("outputs") or {}).get("stack", {}).get("value")
    return dict(value) if isinstance(value, dict) else {}
