"""An Azure replica as Terraform's state holds it
(`azurerm_linux_virtual_machine.replica["<id>"]`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.clouds.base import ReplicaAddress, market_of, version_of

REPLICA_TYPE = "azurerm_linux_virtual_machine"


def read_replica(key: str, attrs: Mapping[str, Any]) -> ReplicaAddress:
    """(zone, market, VM resource id, name, private ip, version, GPU type) from a VM's
    attributes; the zone from the module's `hedgeform-zone` tag (Azure zones are numbers
    within a location), the market from its priority (Spot), the ip from
    `private_ip_address`, the version from the `hedgeform-version` tag, the type from the
    `hedgeform-gpu-type` tag."""
    tags = attrs.get("tags") or {}
    priority = attrs.get("priority")
    spot = None if priority is None else priority == "Spot"
    zone = str(tags.get("hedgeform-zone") or f"{attrs.get('location', '')}-{attrs.get('zone', '')}")
    return ReplicaAddress(
        zone,
        market_of(key, spot),
        str(attrs.get("id", "")),
        str(attrs.get("name", "")),
        str(attrs.get("private_ip_address") or ""),
        version_of(tags.get("hedgeform-version")),
        str(tags.get("hedgeform-gpu-type") or ""),
    )
