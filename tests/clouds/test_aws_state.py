"""An AWS replica's market is what the instance is, not what its tag says (issue 11: the real
provider changes a same-key spot -> on-demand flip as a tag edit, and the instance stays spot)."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.clouds.aws.state import read_replica
from reconciler.policy import Market


def attrs(**extra: Any) -> dict[str, Any]:
    return {"id": "i-0abc", "availability_zone": "us-east-1a", "private_ip": "10.0.0.5", **extra}


@pytest.mark.parametrize(
    ("extra", "market"),
    [
        # The flip the provider makes in place: the tag says on-demand, EC2 says spot.
        ({"tags": {"hedgeform:market": "on_demand"}, "instance_lifecycle": "spot"}, Market.SPOT),
        ({"tags": {"hedgeform:market": "spot"}, "instance_lifecycle": ""}, Market.ON_DEMAND),
        (
            {
                "tags": {"hedgeform:market": "on_demand"},
                "instance_market_options": [{"market_type": "spot"}],
            },
            Market.SPOT,
        ),
        ({"tags": {"hedgeform:market": "on_demand"}}, Market.ON_DEMAND),  # an older state
        ({}, Market.SPOT),  # nothing but the id: `<zone>-spot-<n>`
    ],
)
def test_the_market_comes_from_the_instance_before_the_tag(
    extra: dict[str, Any], market: Market
) -> None:
    address = read_replica("us-east-1a-spot-0", attrs(**extra))
    assert address.market is market
    assert (address.zone, address.instance_id, address.private_ip) == (
        "us-east-1a",
        "i-0abc",
        "10.0.0.5",
    )


@pytest.mark.parametrize(
    ("tag", "version"),
    [("3", 3), (None, 1), ("", 1), ("0", 1), ("v2", 1), ("99999999999", 1)],
)
def test_the_version_comes_from_the_instance_tag(tag: str | None, version: int) -> None:
    """Instances launched before versions existed have no tag: version 1, what every
    replica was then. A tag no module writes is read as 1 too, never a crash."""
    extra: dict[str, Any] = {}
    if tag is not None:
        extra["tags"] = {"hedgeform:market": "spot", "hedgeform:version": tag}
    assert read_replica("us-east-1a-spot-0", attrs(**extra)).version == version
