"""From a Decision to stacks: one per cloud region, plus the `front` stack (load balancer).

A stack is one Terraform working directory and state (`state/<service>/<stack>/`), so plans
stay small, regions apply in parallel, and a capacity error in one region does not block
another.

With several GPU types in a region (issue 15), each (zone, type) is a *pool*: the policy sees
it as a place of its own named `<zone>/<type>` (`pool_name`), and a replica carries its type
(`ManagedReplica.accelerator`) into the stack, which runs it on that type's instance.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from reconciler.policy import Market, Observation
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
    # The GPU type it runs when its region runs several (a name of the spec's accelerator
    # set); "" when the region runs one type, which its stack's instance type gives.
    accelerator: str = ""


def pool_name(zone: str, accelerator: str) -> str:
    """The policy's name of one (zone, GPU type) pool: the zone alone when `accelerator` is ""
    (one type per region, as before issue 15), else `<zone>/<accelerator>`. Zone names never
    hold `/` (paths.NAME_RE and the clouds' zone rules), so `split_pool` is exact."""
    return f"{zone}/{accelerator}" if accelerator else zone


def split_pool(pool: str) -> tuple[str, str]:
    """`pool_name`'s inverse: (zone, accelerator), accelerator "" for a plain zone."""
    zone, _, accelerator = pool.partition("/")
    return zone, accelerator


def in_pools(observation: Observation, managed: Iterable[ManagedReplica]) -> Observation:
    """`observation` as the policy sees pools: each replica whose ManagedReplica runs a type
    of several is placed at its pool (`pool_name`); the same object when none does."""
    types = {m.id: m.accelerator for m in managed if m.accelerator}
    if not types:
        return observation
    return replace(
        observation,
        replicas=tuple(
            replace(r, zone=pool_name(r.zone, types[r.id])) if r.id in types else r
            for r in observation.replicas
        ),
    )


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


def capacity_weights(capacity: Mapping[str, float], top: int) -> dict[str, int]:
    """Whole weights from 0 to `top` in proportion to each key's capacity (requests/s), the
    largest at `top`: a key with none weighs 0, one with some at least 1 (a small share is
    not rounded away); when no key has any, each weighs 1, so a weighted forward stays valid
    and sends evenly (AWS's ALB: weights 0-999 per target group, issue 15)."""
    biggest = max(capacity.values(), default=0.0)
    if biggest <= 0:
        return dict.fromkeys(capacity, 1)
    return {
        key: max(1, round(top * rps / biggest)) if rps > 0 else 0 for key, rps in capacity.items()
    }


def replica_accelerators(replicas: Sequence[ManagedReplica]) -> dict[str, str]:
    """replica id -> GPU type, for the replicas that carry one: each module's
    `replica_accelerators` variable (its own map, since modules run on Terraform 1.0, which
    has no optional object attributes; a region of one type renders as before issue 15)."""
    return {r.id: r.accelerator for r in replicas if r.accelerator}
