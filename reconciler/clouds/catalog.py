"""A small shipped catalog: accelerator -> instance type per cloud, and known regions/zones.

Deliberately modest and explicit: a typo in a region, a zone of another region or a GPU a
cloud does not offer is caught here with one line, before Terraform and a cloud API spend
minutes failing on it. Extend the tables when a service needs more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from reconciler.errors import CloudConfigError
from reconciler.spec.model import Accelerator

REAL_CLOUDS = ("aws", "gcp", "azure")


@dataclass(frozen=True)
class InstanceChoice:
    """What a replica runs on: the cloud's instance type and the GPUs it carries."""

    instance_type: str
    accelerator: str  # canonical name, e.g. "L4"; "" for CPU only
    count: int
    # GCP N1 only: the GPU type to attach; "" when the machine type has its GPUs built in.
    guest_accelerator_type: str = ""


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
        ("T4", 1): _plain("g4dn.xlarge", "T4", 1),
        ("V100", 1): _plain("p3.2xlarge", "V100", 1),
        ("V100", 4): _plain("p3.8xlarge", "V100", 4),
        ("V100", 8): _plain("p3.16xlarge", "V100", 8),
        ("A100", 8): _plain("p4d.24xlarge", "A100", 8),
        ("A100-80GB", 8): _plain("p4de.24xlarge", "A100-80GB", 8),
    },
    "gcp": {
        ("L4", 1): _gcp("g2-standard-8", "L4", 1),
        ("L4", 2): _gcp("g2-standard-24", "L4", 2),
        ("L4", 4): _gcp("g2-standard-48", "L4", 4),
        ("A100", 1): _gcp("a2-highgpu-1g", "A100", 1),
        ("A100", 2): _gcp("a2-highgpu-2g", "A100", 2),
        ("A100", 8): _gcp("a2-highgpu-8g", "A100", 8),
        ("A100-80GB", 1): _gcp("a2-ultragpu-1g", "A100-80GB", 1),
        ("V100", 1): _gcp("n1-standard-8", "V100", 1, "nvidia-tesla-v100"),
        ("V100", 4): _gcp("n1-standard-32", "V100", 4, "nvidia-tesla-v100"),
        ("T4", 1): _gcp("n1-standard-8", "T4", 1, "nvidia-tesla-t4"),
        ("T4", 4): _gcp("n1-standard-32", "T4", 4, "nvidia-tesla-t4"),
    },
    "azure": {
        ("A100", 1): _plain("Standard_NC24ads_A100_v4", "A100", 1),
        ("A100", 2): _plain("Standard_NC48ads_A100_v4", "A100", 2),
        ("A100-80GB", 1): _plain("Standard_NC24ads_A100_v4", "A100-80GB", 1),
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


def instance_for(
    cloud: str, accelerators: Sequence[Accelerator], overrides: Mapping[str, str] | None = None
) -> InstanceChoice:
    """The instance type for the first of `accelerators` the cloud offers (in spec order).

    An override (cloud -> instance type) wins but keeps the accelerator, so tags stay right.
    """
    _cloud(cloud)
    table = INSTANCE_TYPES[cloud]
    if not accelerators:
        choice = CPU_INSTANCE_TYPES[cloud]
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
        choice = found[0]
    if overrides and cloud in overrides:
        return InstanceChoice(
            overrides[cloud], choice.accelerator, choice.count, choice.guest_accelerator_type
        )
    return choice
