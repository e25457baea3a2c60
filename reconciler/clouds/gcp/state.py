"""A GCP replica as Terraform's state holds it (`google_compute_instance.replica["<id>"]`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.clouds.base import ReplicaAddress, first_block, market_of, version_of

REPLICA_TYPE = "google_compute_instance"


def read_replica(key: str, attrs: Mapping[str, Any]) -> ReplicaAddress:
    """(zone, market, instance id, name, private ip, version, GPU type) from a
    `google_compute_instance`'s attributes; the market from its scheduling's provisioning
    model (SPOT), the ip from its first network interface's `network_ip`, the version from
    the module's `hedgeform-version` label, the type from its `hedgeform-gpu-type` label
    upper-cased (GCP label values are lowercase; the module takes only type names of upper
    case, digits and '-', as the catalog names them). KeyError when it has no `name`."""
    scheduling = first_block(attrs.get("scheduling"))
    model = scheduling.get("provisioning_model")
    spot = None if model is None else model == "SPOT"
    zone = str(attrs.get("zone", "")).rsplit("/", 1)[-1]
    ip = first_block(attrs.get("network_interface")).get("network_ip")
    labels = attrs.get("labels") or {}
    return ReplicaAddress(
        zone,
        market_of(key, spot),
        str(attrs.get("instance_id", "")),
        str(attrs["name"]),
        str(ip or ""),
        version_of(labels.get("hedgeform-version")),
        str(labels.get("hedgeform-gpu-type") or "").upper(),
    )
