"""An AWS replica as Terraform's state holds it (`aws_instance.replica["<id>"]`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.clouds.base import ReplicaAddress, first_block, market_of

REPLICA_TYPE = "aws_instance"


def read_replica(key: str, attrs: Mapping[str, Any]) -> ReplicaAddress:
    """(zone, market, instance id, name, private ip) from an `aws_instance`'s attributes; the
    market from the module's `hedgeform:market` tag, else the instance market options; the
    name is the instance id; the ip from `private_ip` (empty until EC2 assigns one)."""
    tags = attrs.get("tags") or {}
    options = first_block(attrs.get("instance_market_options"))
    spot = options.get("market_type") == "spot" if options else None
    if "hedgeform:market" in tags:
        spot = tags["hedgeform:market"] == "spot"
    iid = str(attrs.get("id", ""))
    zone = str(attrs.get("availability_zone", ""))
    return ReplicaAddress(zone, market_of(key, spot), iid, iid, str(attrs.get("private_ip") or ""))
