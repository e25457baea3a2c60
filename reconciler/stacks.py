"""From a Decision to stacks: one per cloud region, plus the `front` stack (load balancer).

A stack is one Terraform working directory and state (`state/<service>/<stack>/`), so plans
stay small, regions apply in parallel, and a capacity error in one region does not block
another.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from reconciler.policy import Market
from reconciler.spec.model import ServiceSpec

FRONT = "front"


@dataclass(frozen=True)
class ManagedReplica:
    """A replica Terraform manages (or is about to): the one shape every stack, backend and
    renderer shares. `stack` is the stack holding it (its region), `tainted` a create that
    failed; the cloud fields say how its cloud's APIs find it again (empty on the sandbox):
    `instance_id` (EC2 instance id, GCE numeric id, Azure VM resource id), `name` (the
    instance/VM name on GCP and Azure, the instance id on AWS) and its `private_ip`."""

    id: str
    zone: str
    market: Market
    tainted: bool = False
    stack: str = ""
    instance_id: str = ""
    name: str = ""
    private_ip: str = ""
    version: int = 1  # the service version it runs (policy/rollout.py: Version.runs)


@dataclass(frozen=True)
class RegionStack:
    """The replicas one cloud region should run after this reconcile."""

    cloud: str
    region: str
    replicas: tuple[ManagedReplica, ...]

    @property
    def name(self) -> str:
        return self.region


def zone_regions(spec: ServiceSpec) -> dict[str, tuple[str, str]]:
    """zone -> (cloud, region) for the zones the spec names explicitly."""
    out: dict[str, tuple[str, str]] = {}
    for loc in spec.resources.locations:
        if loc.zone and loc.region and loc.cloud:
            out[loc.zone] = (loc.cloud, loc.region)
    return out


def region_stacks(
    regions: Mapping[str, tuple[str, str]], replicas: Iterable[ManagedReplica]
) -> list[RegionStack]:
    """Every region of the spec gets a stack, even an empty one, so removals are applied."""
    by_region: dict[tuple[str, str], list[ManagedReplica]] = {cr: [] for cr in regions.values()}
    for r in replicas:
        by_region.setdefault(regions[r.zone], []).append(r)
    return [
        RegionStack(cloud, region, tuple(sorted(rs, key=lambda r: r.id)))
        for (cloud, region), rs in sorted(by_region.items())
    ]


def replica_map(replicas: Sequence[ManagedReplica]) -> dict[str, dict[str, str]]:
    return {r.id: {"zone": r.zone, "market": r.market.value} for r in replicas}
