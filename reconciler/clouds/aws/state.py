"""An AWS replica as Terraform's state holds it (`aws_instance.replica["<id>"]`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.clouds.base import ReplicaAddress, first_block, market_of

REPLICA_TYPE = "aws_instance"


def read_replica(key: str, attrs: Mapping[str, Any]) -> ReplicaAddress:
    """(zone, market, instance id, name) from an `aws_instance`'s attributes; the market
    from the module's `hedgeform:market` tag, else the instance market options."""
    tags = attrs.get("tags") or {}
    options = first_block(attrs.get("instance_market_options"))
    spot = options.get("market_type") == "spot" if options else None
    if "hedgeform:market" in tags:
        spot = tags["hedgeform:market"] == "spot"
    iid = str(attrs.get("id", ""))
    return str(attrs.get("availability_zone", "")), market_of(key, spot), iid, iid
