"""The clouds Hedgeform drives, by name: each one's `CLOUD` (clouds/<name>/__init__.py), and
what is read the same way for every cloud given its description (its replicas in Terraform
state). Adding a cloud: its folder, its module, its template, the catalog, and one line here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from reconciler.clouds import aws, azure, gcp
from reconciler.clouds.base import Cloud
from reconciler.errors import CloudConfigError, TfStateError
from reconciler.stacks import ManagedReplica
from reconciler.terraform.state import STATE_FILE, state_resources

CLOUDS: Mapping[str, Cloud] = MappingProxyType(
    {c.name: c for c in (aws.CLOUD, gcp.CLOUD, azure.CLOUD)}
)


def cloud(name: str) -> Cloud:
    """The cloud called `name`; CloudConfigError naming the known ones otherwise."""
    try:
        return CLOUDS[name]
    except KeyError:
        known = ", ".join(CLOUDS)
        raise CloudConfigError(f"unknown cloud {name!r}: Hedgeform drives {known}") from None


def cloud_replicas(stack_dir: Path, cloud: str) -> list[ManagedReplica]:
    """The replicas a cloud region stack's state holds (module `stack` of the root config),
    each read by its cloud's `read_replica`; TfStateError when one's attributes are not the
    shape that cloud writes. KeyError for a cloud not in CLOUDS."""
    kind = CLOUDS[cloud]
    rtype = kind.replica_type
    path = stack_dir / STATE_FILE
    out: list[ManagedReplica] = []
    for res in state_resources(path):
        if res.get("type") != rtype or res.get("name") != "replica":
            continue
        if res.get("mode", "managed") != "managed":
            continue
        for inst in res.get("instances", []):
            key = str(inst.get("index_key") or "")
            attrs = inst.get("attributes") or {}
            try:
                address = kind.read_replica(key, attrs)
            except (KeyError, TypeError) as exc:
                raise TfStateError(f"{path}: unexpected {rtype} attributes ({exc})") from exc
            out.append(
                ManagedReplica(
                    id=key,
                    zone=address.zone,
                    market=address.market,
                    tainted=inst.get("status") == "tainted",
                    stack=stack_dir.name,
                    instance_id=address.instance_id,
                    name=address.name,
                    private_ip=address.private_ip,
                    version=address.version,
                    accelerator=address.accelerator,
                )
            )
    return out
