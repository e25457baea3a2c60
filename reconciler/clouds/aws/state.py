"""An AWS replica as Terraform's state holds it (`aws_instance.replica["<id>"]`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.clouds.base import ReplicaAddress, first_block, market_of, version_of

REPLICA_TYPE = "aws_instance"


def read_replica(key: str, attrs: Mapping[str, Any]) -> ReplicaAddress:
    """(zone, market, instance id, name, private ip, version, GPU type) from an
    `aws_instance`'s attributes; the name is the instance id; the ip from `private_ip`
    (empty until EC2 assigns one); the type from the `hedgeform:gpu-type` tag.

    The market is what the instance *is*: EC2's `instance_lifecycle` ("spot"; empty for
    on-demand), else the instance market options, and only when the state has neither the
    module's `hedgeform:market` tag. The tag can lie: the real provider changes a same-key
    spot -> on-demand flip as a tag edit in place, and the instance stays spot."""
    tags = attrs.get("tags") or {}
    spot: bool | None = None
    if "hedgeform:market" in tags:
        spot = tags["hedgeform:market"] == "spot"
    options = first_block(attrs.get("instance_market_options"))
    if options:
        spot = options.get("market_type") == "spot"
    lifecycle = attrs.get("instance_lifecycle")
    if lifecycle is not None and attrs.get("id"):
        spot = lifecycle == "spot"
    iid = str(attrs.get("id", ""))
    zone = str(attrs.get("availability_zone", ""))
    return ReplicaAddress(
        zone,
        market_of(key, spot),
        iid,
        iid,
        str(attrs.get("private_ip") or ""),
        version_of(tags.get("hedgeform:version")),
        str(tags.get("hedgeform:gpu-type") or ""),
    )
