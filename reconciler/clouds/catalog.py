"""A small shipped catalog: accelerator -> instance type per cloud, and known regions/zones.

Deliberately modest and explicit: a typo in a region, a zone of another region or a GPU a
cloud does not offer is caught here with one line, before Terraform and a cloud API spend
minutes failing on it. Extend the tables when a service needs more.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from reconciler.errors import CloudConfigError
from reconciler.spec.model import Accelerator, Location, ReplicaPolicy, Resources

REAL_CLOUDS = ("aws", "gcp", "azure")


@dataclass(frozen=True)
class InstanceChoice:
    """What a replica runs on: the cloud's instance type and the GPUs it carries."""

    instance_type: str
    accelerator: str  # canonical name, e.g. "L4"; "" for CPU only
    count: int
    # GCP N1 only: the GPU type to attach; "" when the machine type has its GPUs built in.
    guest_accelerator_type: str = ""

    @property
    def price_key(self) -> str:
        """Its key in list_prices.json: the instance type, or for a machine with attached GPUs
        (GCP N1) `<machine>+<count>x<accelerator>`, since the machine alone has no GPU price."""
        if self.guest_accelerator_type:
            return f"{self.instance_type}+{self.count}x{self.accelerator}"
        return self.instance_type


def _plain(itype: str, acc: str, n: int) -> InstanceChoice:
    return InstanceChoice(itype, acc, n)


def _gcp(mtype: str, acc: str, n: int, guest: str = "") -> InstanceChoice:
    return InstanceChoice(mtype, acc, n, guest)


# (accelerator, count) -> instance type, per cloud.
INSTANCE_TYPES: dict[str, dict[tuple[str, int], InstanceChoice]] = {
    "aws": {
        ("L4", 1): _plain("g6.xlarge", "L4", 1),
        ("L4", 4): _plain("g6.12xlarge", "L4", 4),
        ("L4", 8): _plain("g6.48xlarge", "L4", 8),
        ("A10G", 1): _plain("g5.xlarge", "A10G", 1),
        ("A10G", 4): _plain("g5.12xlarge", "A10G", 4),
        ("L40S", 1): _plain("g6e.xlarge", "L40S", 1),
        ("L40S", 4): _plain("g6e.12xlarge", "L40S", 4),
        ("T4", 1): _plain("g4dn.xlarge", "T4", 1),
        ("T4", 4): _plain("g4dn.12xlarge", "T4", 4),
        ("V100", 1): _plain("p3.2xlarge", "V100", 1),
        ("V100", 4): _plain("p3.8xlarge", "V100", 4),
        ("V100", 8): _plain("p3.16xlarge", "V100", 8),
        ("A100", 8): _plain("p4d.24xlarge", "A100", 8),
        ("A100-80GB", 8): _plain("p4de.24xlarge", "A100-80GB", 8),
        ("H100", 8): _plain("p5.48xlarge", "H100", 8),
    },
    "gcp": {
        ("L4", 1): _gcp("g2-standard-8", "L4", 1),
        ("L4", 2): _gcp("g2-standard-24", "L4", 2),
        ("L4", 4): _gcp("g2-standard-48", "L4", 4),
        ("A100", 1): _gcp("a2-highgpu-1g", "A100", 1),
        ("A100", 2): _gcp("a2-highgpu-2g", "A100", 2),
        ("A100", 8): _gcp("a2-highgpu-8g", "A100", 8),
        ("A100-80GB", 1): _gcp("a2-ultragpu-1g", "A100-80GB", 1),
        ("A100-80GB", 8): _gcp("a2-ultragpu-8g", "A100-80GB", 8),
        ("H100", 1): _gcp("a3-highgpu-1g", "H100", 1),
        ("H100", 8): _gcp("a3-highgpu-8g", "H100", 8),
        ("V100", 1): _gcp("n1-standard-8", "V100", 1, "nvidia-tesla-v100"),
        ("V100", 4): _gcp("n1-standard-32", "V100", 4, "nvidia-tesla-v100"),
        ("T4", 1): _gcp("n1-standard-8", "T4", 1, "nvidia-tesla-t4"),
        ("T4", 4): _gcp("n1-standard-32", "T4", 4, "nvidia-tesla-t4"),
    },
    "azure": {
        # Azure's A100 v4 sizes carry the 80 GB A100 (SkyPilot names them A100-80GB); asked
        # for as A100 they are the nearest Azure has.
        ("A100", 1): _plain("Standard_NC24ads_A100_v4", "A100", 1),
        ("A100", 2): _plain("Standard_NC48ads_A100_v4", "A100", 2),
        ("A100-80GB", 1): _plain("Standard_NC24ads_A100_v4", "A100-80GB", 1),
        ("A100-80GB", 2): _plain("Standard_NC48ads_A100_v4", "A100-80GB", 2),
        ("H100", 1): _plain("Standard_NC40ads_H100_v5", "H100", 1),
        ("A10", 1): _plain("Standard_NV36ads_A10_v5", "A10", 1),
        ("T4", 1): _plain("Standard_NC4as_T4_v3", "T4", 1),
        ("T4", 4): _plain("Standard_NC64as_T4_v3", "T4", 4),
        ("V100", 1): _plain("Standard_NC6s_v3", "V100", 1),
        ("V100", 4): _plain("Standard_NC24s_v3", "V100", 4),
    },
}

# Used when a spec asks for no accelerator at all.
CPU_INSTANCE_TYPES: dict[str, InstanceChoice] = {
    "aws": InstanceChoice("m6i.2xlarge", "", 0),
    "gcp": InstanceChoice("n2-standard-8", "", 0),
    "azure": InstanceChoice("Standard_D8s_v5", "", 0),
}

# vCPUs and memory (GiB) of each type above, from the SkyPilot catalog rows list_prices.json
# cites (the CPU types from the clouds' own tables): what `resources.cpus` and
# `resources.memory` are checked against.
MACHINE_SIZES: dict[str, dict[str, tuple[float, float]]] = {
    "aws": {
        "g6.xlarge": (4, 16),
        "g6.12xlarge": (48, 192),
        "g6.48xlarge": (192, 768),
        "g5.xlarge": (4, 16),
        "g5.12xlarge": (48, 192),
        "g6e.xlarge": (4, 32),
        "g6e.12xlarge": (48, 384),
        "g4dn.xlarge": (4, 16),
        "g4dn.12xlarge": (48, 192),
        "p3.2xlarge": (8, 61),
        "p3.8xlarge": (32, 244),
        "p3.16xlarge": (64, 488),
        "p4d.24xlarge": (96, 1152),
        "p4de.24xlarge": (96, 1152),
        "p5.48xlarge": (192, 2048),
        "m6i.2xlarge": (8, 32),
    },
    "gcp": {
        "g2-standard-8": (8, 32),
        "g2-standard-24": (24, 96),
        "g2-standard-48": (48, 192),
        "a2-highgpu-1g": (12, 85),
        "a2-highgpu-2g": (24, 170),
        "a2-highgpu-8g": (96, 680),
        "a2-ultragpu-1g": (12, 170),
        "a2-ultragpu-8g": (96, 1360),
        "a3-highgpu-1g": (26, 234),
        "a3-highgpu-8g": (208, 1872),
        "n1-standard-8": (8, 30),
        "n1-standard-32": (32, 120),
        "n2-standard-8": (8, 32),
    },
    "azure": {
        "Standard_NC24ads_A100_v4": (24, 220),
        "Standard_NC48ads_A100_v4": (48, 440),
        "Standard_NC40ads_H100_v5": (40, 320),
        "Standard_NV36ads_A10_v5": (36, 440),
        "Standard_NC4as_T4_v3": (4, 28),
        "Standard_NC64as_T4_v3": (64, 440),
        "Standard_NC6s_v3": (6, 112),
        "Standard_NC24s_v3": (24, 448),
        "Standard_D8s_v5": (8, 32),
    },
}

# Known regions and their zones (Azure zones are named <region>-<n> to stay unique).
ZONES: dict[str, dict[str, tuple[str, ...]]] = {
    "aws": {
        "us-east-1": tuple(f"us-east-1{z}" for z in "abcdef"),
        "us-east-2": tuple(f"us-east-2{z}" for z in "abc"),
        "us-west-2": tuple(f"us-west-2{z}" for z in "abcd"),
        "eu-west-1": tuple(f"eu-west-1{z}" for z in "abc"),
        "eu-central-1": tuple(f"eu-central-1{z}" for z in "abc"),
        "ap-northeast-1": tuple(f"ap-northeast-1{z}" for z in "acd"),
    },
    "gcp": {
        "us-central1": tuple(f"us-central1-{z}" for z in "abcf"),
        "us-east1": tuple(f"us-east1-{z}" for z in "bcd"),
        "us-east4": tuple(f"us-east4-{z}" for z in "abc"),
        "us-west1": tuple(f"us-west1-{z}" for z in "abc"),
        "europe-west4": tuple(f"europe-west4-{z}" for z in "abc"),
        "asia-east1": tuple(f"asia-east1-{z}" for z in "abc"),
    },
    "azure": {
        region: tuple(f"{region}-{n}" for n in "123")
        for region in (
            "eastus",
            "eastus2",
            "westus2",
            "southcentralus",
            "westeurope",
            "northeurope",
        )
    },
}

# Region-independent default images (GPU drivers included or installed at first boot). AWS AMIs
# are regional: the reconciler resolves this public SSM parameter per region and pins the result
# in CloudSettings.images, so a new AMI release never replaces running replicas by surprise.
DEFAULT_IMAGES: dict[str, str] = {
    "gcp": (
        "projects/deeplearning-platform-release/global/images/family/common-cu123-debian-11-py310"
    ),
    "azure": "microsoft-dsvm:ubuntu-hpc:2204:latest",
}
AWS_DLAMI_SSM_PARAMETER = (
    "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"
)


def _cloud(cloud: str) -> None:
    if cloud not in REAL_CLOUDS:
        raise CloudConfigError(f"unknown cloud {cloud!r}; choose from {', '.join(REAL_CLOUDS)}")


def zones_of(cloud: str, region: str) -> tuple[str, ...]:
    """The zones of a known region, or a one-line error naming the known regions."""
    _cloud(cloud)
    try:
        return ZONES[cloud][region]
    except KeyError:
        known = ", ".join(sorted(ZONES[cloud]))
        raise CloudConfigError(f"unknown {cloud} region {region!r}; known: {known}") from None


def check_zone(cloud: str, region: str, zone: str) -> None:
    """Raise unless `zone` is a known zone of `region`."""
    zones = zones_of(cloud, region)
    if zone not in zones:
        raise CloudConfigError(
            f"zone {zone!r} is not a known zone of {cloud} {region}; known: {', '.join(zones)}"
        )


def _canonical(name: str) -> str:
    return name.strip().upper()


LIST_PRICES_PATH = Path(__file__).with_name("list_prices.json")


@dataclass(frozen=True)
class ListPrices:
    """On-demand list prices of one cloud's instance types, USD per instance-hour, in one
    reference region, with when and where they were read (list_prices.json)."""

    region: str
    as_of: str
    source: str
    on_demand: Mapping[str, float]
    # the lowest spot price among the reference region's zones in the same source rows
    # (`spot_min`), for the types that have one: a reference, not a live price
    spot_min: Mapping[str, float] = field(default_factory=dict)


@cache
def list_prices(cloud: str, path: Path = LIST_PRICES_PATH) -> ListPrices:
    """The shipped list prices of `cloud`; CloudConfigError (one line) if the file is bad."""
    _cloud(cloud)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        entry = data["clouds"][cloud]
        source = data["sources"][cloud]
        types = entry["instance_types"]
        prices = {str(k): float(v["on_demand"]) for k, v in types.items()}
        spot = {
            str(k): float(v["spot_min"])
            for k, v in types.items()
            if isinstance(v.get("spot_min"), int | float) and v["spot_min"] > 0
        }
        return ListPrices(
            region=str(entry["region"]),
            as_of=str(source["as_of"]),
            source=f"{source['repo']} {source['path']} at {source['commit'][:12]}",
            on_demand=prices,
            spot_min=spot,
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CloudConfigError(f"list prices {path} unreadable: {exc!r}") from None


def list_price(cloud: str, key: str) -> float | None:
    """The on-demand list price (USD/h, the reference region) of an instance type, by its
    `InstanceChoice.price_key`; None when not shipped."""
    return list_prices(cloud).on_demand.get(key)


def list_spot_price(cloud: str, key: str) -> float | None:
    """The lowest spot price (USD/h) of an instance type among the reference region's zones
    in the list prices' source rows (`ListPrices.spot_min`, by `InstanceChoice.price_key`):
    a reference for pricing spot where the per-zone catalog lists the type not at all; None
    when not shipped."""
    return list_prices(cloud).spot_min.get(key)


def instance_for(
    cloud: str,
    accelerators: Sequence[Accelerator],
    overrides: Mapping[str, str] | None = None,
    *,
    any_of: bool = False,
    policy: ReplicaPolicy | None = None,
    cpus: str | None = None,
    memory: str | None = None,
) -> InstanceChoice:
    """The instance type for `accelerators` on `cloud`, as SkyPilot reads the spec's forms:
    an ordered preference (`any_of` False: a name or a list) gets the first the cloud offers;
    "any of" (a set or mapping of several) gets the one with the lowest on-demand list price
    (`list_prices`; spec order breaks ties, an unpriced type comes last), or, when `policy`
    gives requests/s per accelerator (`target_qps_per_replica` as a map), the lowest list
    price per request/s: a type twice as dear that serves three times as much is the cheaper
    way to serve (Mélange's point, for one type per region). SkyPilot's optimizer also picks
    the cheapest; on-demand list prices rank the types because they are published for every
    type and are what a replica falls back to.

    `cpus` and `memory` (the spec's normal form, `8` exactly or `8+` at least) keep only the
    types that have them (`MACHINE_SIZES`), as SkyPilot's optimizer does.

    An override (cloud -> instance type) wins but keeps the accelerator, so tags stay right.
    CloudConfigError (one line) when the cloud offers none of them; one starting
    `resources.cpus:` / `resources.memory:` when it offers them, but none that large.
    """
    _cloud(cloud)
    table = INSTANCE_TYPES[cloud]
    if not accelerators:
        choice = CPU_INSTANCE_TYPES[cloud]
        _check_size(cloud, [choice], cpus, memory, overrides)
    else:
        found = [
            table[key]
            for acc in accelerators
            if (key := (_canonical(acc.name), acc.count)) in table
        ]
        if not found:
            wanted = ", ".join(f"{a.name}:{a.count}" for a in accelerators)
            offered = ", ".join(f"{n}:{c}" for n, c in sorted(table))
            raise CloudConfigError(
                f"no {cloud} instance type for {wanted} in the catalog; {cloud} offers {offered}"
            )
        found = _check_size(cloud, found, cpus, memory, overrides)
        if any_of:
            ranked = sorted(
                enumerate(found),
                key=lambda item: (_rank_price(cloud, item[1], policy), item[0]),
            )
            choice = ranked[0][1]
        else:
            choice = found[0]
    if overrides and cloud in overrides:
        return InstanceChoice(
            overrides[cloud], choice.accelerator, choice.count, choice.guest_accelerator_type
        )
    return choice


def fits(cloud: str, choice: InstanceChoice, cpus: str | None, memory: str | None) -> bool:
    """Whether `choice` has the vCPUs and memory asked (`8`: exactly, `8+`: at least); a type
    of unknown size fits only when nothing is asked."""
    size = MACHINE_SIZES.get(cloud, {}).get(choice.instance_type)
    asked = [(q, i) for q, i in ((cpus, 0), (memory, 1)) if q is not None]
    if not asked:
        return True
    if size is None:
        return False
    for quantity, index in asked:
        least, plus = float(quantity.rstrip("+")), quantity.endswith("+")
        if size[index] < least or (not plus and size[index] != least):
            return False
    return True


def _check_size(
    cloud: str,
    found: Sequence[InstanceChoice],
    cpus: str | None,
    memory: str | None,
    overrides: Mapping[str, str] | None,
) -> list[InstanceChoice]:
    """The types of `found` with the vCPUs and memory asked; CloudConfigError (one line,
    naming the field and what to do) when none has. Not checked when the settings name the
    cloud's instance type: that type is what runs."""
    if overrides and cloud in overrides:
        return list(found)
    kept = [c for c in found if fits(cloud, c, cpus, memory)]
    if kept:
        return kept
    field = "cpus" if not all(fits(cloud, c, cpus, None) for c in found) else "memory"
    asked = cpus if field == "cpus" else memory
    sizes = ", ".join(
        f"{c.instance_type}: {_size(cloud, c.instance_type)}" for c in dict.fromkeys(found)
    )
    unit = "vCPUs" if field == "cpus" else "GiB"
    raise CloudConfigError(
        f"resources.{field}: no {cloud} type in the catalog for this replica has "
        f"{asked} {unit} ({sizes}); ask for what one has, or run another type with "
        "instance_types in services/<SERVICE>.settings.yaml (docs/clouds.md)"
    )


def _size(cloud: str, instance_type: str) -> str:
    size = MACHINE_SIZES.get(cloud, {}).get(instance_type)
    return "size unknown" if size is None else f"{size[0]:g} vCPUs, {size[1]:g} GiB"


def _rank_price(cloud: str, choice: InstanceChoice, policy: ReplicaPolicy | None) -> float:
    """$/h, or $/h per request/s with per-accelerator targets; unpriced: last."""
    price = list_price(cloud, choice.price_key)
    if price is None:
        return float("inf")
    if policy is not None and policy.target_qps_per_accelerator:
        return price / (policy.target_for(choice.accelerator) or 1.0)
    return price


def accelerators_for_region(
    resources: Resources, cloud: str, region: str | None
) -> tuple[tuple[Accelerator, ...], bool]:
    """(accelerators, any_of) the spec asks for in `cloud`/`region`: from the any_of entries
    that can place there (their own accelerators, else the top level's). One region runs one
    instance type, so entries for zones of one region must agree; CloudConfigError if not."""
    accelerators, any_of, _ = _asked(resources, cloud, region)
    return accelerators, any_of


def _asked(
    resources: Resources, cloud: str, region: str | None
) -> tuple[tuple[Accelerator, ...], bool, str]:
    """`accelerators_for_region`, with the spec field the accelerators come from."""
    if resources.instance_type is not None:
        return _carried(resources, cloud, resources.instance_type), False, "resources.instance_type"
    asked = [
        (*resources.accelerators_at(loc), _field(resources, loc))
        for loc in resources.locations
        if loc.cloud == cloud and loc.region in (region, None)
    ]
    meanings = {_meaning(accs, any_of) for accs, any_of, _ in asked}
    if len(meanings) > 1:
        shown = " | ".join(
            sorted({", ".join(f"{a.name}:{a.count}" for a in accs) for accs, _, _ in asked})
        )
        raise CloudConfigError(
            f"resources.any_of: the entries for {cloud} {region} ask for different accelerators "
            f"({shown}); one region runs one instance type: ask for the same in every entry of "
            "that region, or put a set at resources.accelerators"
        )
    if asked:
        return asked[0]
    return resources.accelerators, resources.accelerators_any_of, "resources.accelerators"


def _carried(resources: Resources, cloud: str, instance_type: str) -> tuple[Accelerator, ...]:
    """The accelerators of the catalog's `instance_type` on `cloud` (SkyPilot's
    `resources.instance_type`), checked against `resources.accelerators` when both are given;
    CloudConfigError (one line, saying what to write instead) for a type the catalog does not
    know or that carries other GPUs. A machine the catalog lists under two names (Azure's
    A100 v4 sizes: A100 and A100-80GB) carries the name its list price gives."""
    _cloud(cloud)
    where = "resources.instance_type"
    keys = [key for key, c in INSTANCE_TYPES[cloud].items() if c.instance_type == instance_type]
    if CPU_INSTANCE_TYPES[cloud].instance_type == instance_type:
        keys.append(("", 0))
    if not keys:
        known = sorted({c.instance_type for c in INSTANCE_TYPES[cloud].values()})
        raise CloudConfigError(
            f"{where}: {instance_type!r} is not in the {cloud} catalog (it knows "
            f"{', '.join(known)}, {CPU_INSTANCE_TYPES[cloud].instance_type}); name "
            "resources.accelerators instead, or another type with instance_types in "
            "services/<SERVICE>.settings.yaml (docs/clouds.md)"
        )
    shown = " or ".join(f"{n}:{c}" if c else "no GPU" for n, c in keys)
    named = [a for loc in resources.locations for a in resources.accelerators_at(loc)[0]]
    asked = {(_canonical(a.name), a.count) for a in named}
    if asked:
        keys = [key for key in keys if key in asked]
        if not keys:
            wanted = ", ".join(dict.fromkeys(f"{a.name}:{a.count}" for a in named))
            raise CloudConfigError(
                f"{where}: {instance_type} carries {shown}, not {wanted} "
                "(resources.accelerators); make them agree, or give only one of the two"
            )
    machines = {
        _machine(INSTANCE_TYPES[cloud][key]) for key in keys if key in INSTANCE_TYPES[cloud]
    }
    if len(machines) > 1:
        raise CloudConfigError(
            f"{where}: {instance_type} is offered with {shown} attached; name one in "
            "resources.accelerators"
        )
    if len(keys) > 1:
        priced = _list_price_accelerator(cloud, instance_type)
        keys = [key for key in keys if key[0] == priced] or keys[:1]
    name, count = keys[0]
    return (Accelerator(name, count),) if count else ()


def _list_price_accelerator(cloud: str, instance_type: str) -> str:
    """The accelerator list_prices.json names for `instance_type`, "" when none."""
    data = json.loads(LIST_PRICES_PATH.read_text(encoding="utf-8"))
    entry = data["clouds"][cloud]["instance_types"].get(instance_type) or {}
    return _canonical(str(entry.get("accelerator", "")))


def _field(resources: Resources, location: Location) -> str:
    if location.accelerators is None or location not in resources.any_of:
        return "resources.accelerators"
    return f"resources.any_of[{resources.any_of.index(location)}].accelerators"


def _meaning(
    accelerators: Sequence[Accelerator], any_of: bool
) -> tuple[bool, tuple[tuple[str, int], ...]]:
    """What a form asks for: a set's order and the names' case do not matter."""
    items = [(_canonical(a.name), a.count) for a in accelerators]
    return any_of, tuple(sorted(items) if any_of else items)


def instance_for_region(
    resources: Resources,
    cloud: str,
    region: str | None,
    overrides: Mapping[str, str] | None = None,
    *,
    policy: ReplicaPolicy | None = None,
) -> InstanceChoice:
    """`instance_for` with what the spec asks for in `cloud`/`region`; its one-line error
    names the spec field the accelerators come from."""
    accelerators, any_of, where = _asked(resources, cloud, region)
    try:
        return instance_for(
            cloud,
            accelerators,
            overrides,
            any_of=any_of,
            policy=policy,
            cpus=resources.cpus,
            memory=resources.memory,
        )
    except CloudConfigError as exc:
        if str(exc).startswith("resources."):
            raise
        raise CloudConfigError(f"{where}: {exc}") from None


def instances_for_region(
    resources: Resources,
    cloud: str,
    region: str,
    overrides: Mapping[str, str] | None = None,
    *,
    policy: ReplicaPolicy | None = None,
) -> tuple[InstanceChoice, ...]:
    """Every instance type `cloud`/`region` may run for several GPU types in one service
    (issue 15): for an "any of" set, each type of it the catalog offers, best ranked first
    (`instance_for`'s order); the policy then chooses the mix per tick (policy/mixed.py).
    One choice (`instance_for_region`) for any other form, a set the catalog offers one type
    of, or a settings override (it names one instance type). Types the catalog runs on the
    same machine (Azure's A100 and A100-80GB are one VM size) are one pool, the better ranked
    type's: one spot market, one price. Errors as instance_for_region."""
    first = instance_for_region(resources, cloud, region, overrides, policy=policy)
    accelerators, any_of, _ = _asked(resources, cloud, region)
    if not any_of or (overrides and cloud in overrides):
        return (first,)
    table = INSTANCE_TYPES[cloud]
    offered = [
        table[key]
        for acc in accelerators
        if (key := (_canonical(acc.name), acc.count)) in table
        and fits(cloud, table[key], resources.cpus, resources.memory)
    ]
    rest = sorted(
        (c for c in dict.fromkeys(offered) if c != first),
        key=lambda c: _rank_price(cloud, c, policy),
    )
    machines = {_machine(c): c for c in reversed((first, *rest))}  # the best ranked wins
    return tuple(c for c in (first, *rest) if machines[_machine(c)] is c)


def _machine(choice: InstanceChoice) -> tuple[str, str]:
    """What a replica of `choice` runs on: the instance type and any attached GPU (GCP N1
    machines carry a T4 or a V100)."""
    return choice.instance_type, choice.guest_accelerator_type


def choice_note(
    resources: Resources,
    cloud: str,
    region: str,
    choice: InstanceChoice,
    *,
    policy: ReplicaPolicy | None = None,
) -> str:
    """One line saying which accelerator `cloud`/`region` runs and why, or "" when the spec
    named only one (nothing was chosen)."""
    accelerators, any_of = accelerators_for_region(resources, cloud, region)
    if len(accelerators) < 2:
        return ""
    asked = ", ".join(f"{a.name}:{a.count}" for a in accelerators)
    prices = list_prices(cloud)
    price = prices.on_demand.get(choice.price_key)
    shown = f"${price:.2f}/h on demand" if price is not None else "no list price"
    per_rps = policy is not None and bool(policy.target_qps_per_accelerator)
    table = INSTANCE_TYPES[cloud]
    cpus, memory = resources.cpus, resources.memory
    offered = [
        a
        for a in accelerators
        if (key := (_canonical(a.name), a.count)) in table and fits(cloud, table[key], cpus, memory)
    ]
    try:
        plain = instance_for(
            cloud, accelerators, any_of=any_of, policy=policy, cpus=cpus, memory=memory
        )
    except CloudConfigError:  # only the override runs here: nothing the catalog offers fits
        plain = choice
    if plain.instance_type != choice.instance_type:
        return (
            f"{cloud} {region} runs {choice.instance_type}, the settings' instance_types "
            f"override; its replicas are tagged {choice.accelerator}:{choice.count}, which "
            f"the catalog would run on {plain.instance_type}"
        )
    if len(offered) < 2:
        sized = " with the cpus/memory asked" if cpus or memory else ""
        why = f"the only one of {asked} the {cloud} catalog offers{sized}"
    elif any_of and per_rps:
        assert policy is not None
        target = policy.target_for(choice.accelerator) or 1.0
        shown += f", {target:g} requests/s"
        why = (
            f"the lowest list price per request/s of any of {asked} (targets from "
            f"target_qps_per_replica; {prices.region} list prices of {prices.as_of}, "
            f"{prices.source})"
        )
    elif any_of:
        why = (
            f"the lowest list price of any of {asked} ({prices.region} list prices of "
            f"{prices.as_of}, {prices.source})"
        )
    else:
        why = f"the first {cloud} offers of {asked}, in the spec's order"
    return (
        f"{cloud} {region} runs {choice.accelerator}:{choice.count} on {choice.instance_type} "
        f"({shown}): {why}"
    )
