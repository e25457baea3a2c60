"""The `resources` section: where replicas may run and what each one needs.

Accepts the SkyPilot spellings (`L4`, `L4:2`, `{L4: 1}`, `32+`, `8080-8081`, ...) and turns
them into one normal form, so nothing downstream parses strings again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace

from reconciler.paths import NAME_RE
from reconciler.spec import schema
from reconciler.spec.errors import Problems
from reconciler.spec.fields import (
    ACCELERATOR_NAME,
    ACCELERATOR_RULE,
    Section,
    check_name,
    choice_message,
    describe,
    is_int,
    join,
    open_section,
)
from reconciler.spec.model import CLOUDS, Accelerator, Location, Resources

LOCATION_NAME = NAME_RE
LOCATION_RULE = "use lowercase letters, digits and '-' (at most 63, not starting with '-')"
_QUANTITY = re.compile(r"(\d+(?:\.\d+)?)(\+?)")
_IMAGE_ID = re.compile(r"[\x21-\x7e]{1,512}")


def parse_resources(value: object, problems: Problems) -> Resources:
    section = open_section(value, "resources", problems, schema.RESOURCES)
    if section is None:
        return Resources()
    top = parse_location(section, problems)
    any_of = _any_of(section, problems)
    if section.has("any_of") and any(section.has(key) for key in schema.LOCATION):
        section.bad(
            "any_of",
            "cannot be combined with resources.cloud/region/zone/infra; "
            "put the location in each any_of entry instead",
        )
    accelerators, accelerators_any_of = parse_accelerators(
        section.get("accelerators"), section.at("accelerators"), problems
    )
    image_id = _image_id(section)
    locations = any_of or (top,)
    return Resources(
        cloud=top.cloud,
        region=top.region,
        zone=top.zone,
        any_of=any_of,
        use_spot=bool(section.boolean("use_spot")),
        accelerators=accelerators,
        accelerators_any_of=accelerators_any_of,
        cpus=parse_quantity(section, "cpus"),
        memory=parse_quantity(section, "memory"),
        ports=parse_ports(section.get("ports"), section.at("ports"), problems),
        disk_size=_disk_size(section),
        image_id=image_id,
        instance_type=_instance_type(section, locations),
        disk_tier=_tier(section, "disk_tier", DISK_TIERS, locations),
        network_tier=_tier(section, "network_tier", NETWORK_TIERS, locations),
    )


def _image_id(section: Section) -> str | None:
    value = section.get("image_id")
    if isinstance(value, Mapping):
        section.bad(
            "image_id",
            "an image per region is not supported here; give one image, or one per region "
            "in services/<SERVICE>.settings.yaml (aws_images: {us-east-1: ami-...}; "
            "docs/clouds.md)",
        )
        return None
    image_id = section.string("image_id")
    if image_id is not None and not _IMAGE_ID.fullmatch(image_id):
        section.bad("image_id", "must be non-empty, without spaces or control characters")
        return None
    return image_id


MAX_DISK_GB = 65_536  # GCP's persistent disk maximum
_DISK_SIZE = re.compile(r"\s*(\d{1,9})\s*([kmgtp]?)b?\s*", re.IGNORECASE)
_GB_PER_UNIT = {"": 1.0, "k": 1 / 1024**2, "m": 1 / 1024, "g": 1.0, "t": 1024.0, "p": 1024.0**2}


def _disk_size(section: Section) -> int | None:
    """GB: an integer, or SkyPilot's string form (`256`, `256GB`, `1TB`; GB when no unit)."""
    value = section.get("disk_size")
    if not isinstance(value, str):
        return section.integer("disk_size", minimum=1, maximum=MAX_DISK_GB)
    match = _DISK_SIZE.fullmatch(value)
    gb = int(match.group(1)) * _GB_PER_UNIT[match.group(2).lower()] if match else 0.0
    if not (gb.is_integer() and 1 <= gb <= MAX_DISK_GB):
        section.bad(
            "disk_size",
            f"must be a whole number of GB from 1 to {MAX_DISK_GB} (e.g. 256, '256GB', "
            f"'1TB'), got {describe(value)}",
        )
        return None
    return int(gb)


# An instance type as clouds name them (`g6.xlarge`, `a2-highgpu-1g`, `Standard_NC24ads_A100_v4`).
_INSTANCE_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _instance_type(section: Section, locations: tuple[Location, ...]) -> str | None:
    """The instance type, if every location is on one cloud that has instance types (the
    catalog maps it to its accelerators when the stacks are planned, clouds/catalog.py)."""
    value = section.string("instance_type")
    if value is None:
        return None
    if not _INSTANCE_TYPE.fullmatch(value):
        section.bad("instance_type", f"{describe(value)} is not an instance type name")
        return None
    clouds = {location.cloud for location in locations}
    if len(clouds) != 1 or None in clouds:
        section.bad(
            "instance_type",
            "names one cloud's machine, so every location needs that cloud (resources.cloud "
            "or the same cloud in each any_of entry); to run on several clouds, name "
            "resources.accelerators instead",
        )
        return None
    if "local" in clouds:
        section.bad(
            "instance_type",
            "the local sandbox has no instance types; name resources.accelerators instead",
        )
        return None
    return value


# SkyPilot's tiers -> the clouds whose modules provision that tier for every replica (the root
# disk: gp3 on AWS, pd-balanced on GCP, Premium_LRS on Azure, which SkyPilot calls `medium`,
# and on Azure also `high`; networking: each cloud's default, SkyPilot's `standard`). The
# sandbox has neither disks nor networks to tier: it accepts what every cloud provisions.
DISK_TIERS = {
    "low": (),
    "medium": ("aws", "gcp", "azure", "local"),
    "high": ("azure",),
    "ultra": (),
    "best": (),
}
NETWORK_TIERS = {"standard": ("aws", "gcp", "azure", "local"), "best": ()}
_TIER_TYPES = "gp3 on aws, pd-balanced on gcp, Premium_LRS on azure"


def _tier(
    section: Section,
    key: str,
    tiers: Mapping[str, tuple[str, ...]],
    locations: tuple[Location, ...],
) -> str | None:
    value = section.get(key)
    if value is None:
        return None
    tier = value.lower() if isinstance(value, str) else value
    if not isinstance(tier, str) or tier not in tiers:
        section.bad(key, choice_message(value, tuple(tiers)))
        return None
    # A location without a cloud may be placed on any of them.
    clouds = sorted({c for loc in locations for c in ((loc.cloud,) if loc.cloud else CLOUDS)})
    missing = [cloud for cloud in clouds if cloud not in tiers[tier]]
    if missing:
        provisioned = (
            f"every replica's root disk is SkyPilot's medium tier ({_TIER_TYPES})"
            if key == "disk_tier"
            else "replicas get each cloud's standard networking"
        )
        usable = ", ".join(t for t in tiers if all(c in tiers[t] for c in clouds))
        section.bad(
            key,
            f"{tier!r} is not provisioned on {', '.join(missing)}: {provisioned}; use "
            f"{key}: {usable} or leave it out",
        )
        return None
    return tier


def parse_location(section: Section, problems: Problems) -> Location:
    """cloud/region/zone of `section` (the resources or one any_of entry), each validated;
    or SkyPilot's newer spelling of the same, `infra: cloud[/region[/zone]]`."""
    if section.has("infra"):
        if any(section.has(key) for key in ("cloud", "region", "zone")):
            section.bad(
                "infra",
                "cannot be combined with cloud/region/zone (it is their newer spelling); "
                "write the location once, e.g. infra: aws/us-east-1",
            )
            return Location()
        return _infra(section, problems)
    cloud = section.string("cloud")
    if cloud is not None:
        cloud = cloud.lower()  # SkyPilot accepts `AWS`, `GCP`
        if cloud not in CLOUDS:
            section.bad("cloud", choice_message(cloud, CLOUDS))
            cloud = None
    region, zone = (_location_name(section, key, problems) for key in ("region", "zone"))
    if section.has("zone") and not section.has("region") and not section.has("cloud"):
        section.bad("zone", "a zone without a region needs 'cloud' (zone names are per cloud)")
    return Location(cloud=cloud, region=region, zone=zone)


INFRA_FORM = "cloud[/region[/zone]], e.g. aws, aws/us-east-1 or gcp/us-central1/us-central1-a"
# SkyPilot's infra clouds that are not VMs Terraform places: a Kubernetes context, an SSH node
# pool (sky/utils/infra_utils.py reads everything after `k8s/` or `ssh/` as its name).
_NOT_VMS = {"k8s": "Kubernetes", "kubernetes": "Kubernetes", "ssh": "an SSH node pool"}
_WHICH_CLOUD = (
    "Hedgeform does not choose the cloud (SkyPilot's optimizer does): name it, "
    "e.g. infra: aws/us-east-1, or list each place under resources.any_of"
)


def _infra(section: Section, problems: Problems) -> Location:
    """SkyPilot's `resources.infra` (sky/utils/infra_utils.py `InfraInfo.from_str`): `aws`,
    `aws/us-east-1`, `aws/us-east-1/us-east-1a`, `*` for "any" in a part, surrounding `/`
    ignored -> the same Location cloud/region/zone give. `aws/*` is `aws` (its regions:
    the settings' default, else the catalog's first), `aws/*/us-east-1a` the zone's region.
    Refused, each in one line saying what to write instead: `*` or no cloud (any cloud:
    SkyPilot's optimizer picks one, Hedgeform does not), `k8s/...`/`ssh/...`, other clouds."""
    raw = section.string("infra")
    if raw is None:
        return Location()
    parts = [part.strip() for part in raw.strip().strip("/").split("/")]
    cloud_part = parts[0]
    if cloud_part.lower() in _NOT_VMS:
        section.bad(
            "infra",
            f"{describe(raw)} is {_NOT_VMS[cloud_part.lower()]}, not a cloud Hedgeform "
            "provisions (it places VMs with Terraform on aws, gcp, azure, or the local "
            "sandbox); write e.g. infra: aws/us-east-1",
        )
        return Location()
    if not 1 <= len(parts) <= 3 or not all(parts):
        section.bad("infra", f"must be {INFRA_FORM}; got {describe(raw)}")
        return Location()
    if cloud_part == "*":
        what = "any cloud" if len(parts) == 1 else "a region or zone of any cloud"
        section.bad("infra", f"{describe(raw)} means {what} to SkyPilot; {_WHICH_CLOUD}")
        return Location()
    region_part, zone_part = (*parts[1:], None, None)[:2]
    cloud = cloud_part.lower()
    if cloud not in CLOUDS:
        section.bad(
            "infra",
            f"cloud {cloud_part!r} is not one Hedgeform provisions: use aws, gcp, azure or "
            "local (the sandbox), e.g. infra: aws/us-east-1",
        )
        return Location()
    names: list[str | None] = []
    for part in (region_part, zone_part):
        if part is None or part == "*":
            names.append(None)
            continue
        checked = check_name(problems, section.at("infra"), part, LOCATION_NAME, LOCATION_RULE)
        if checked is None:
            section.invalid.add("infra")
            return Location()
        names.append(checked)
    region, zone = names
    return Location(cloud=cloud, region=region, zone=zone)


def _location_name(section: Section, key: str, problems: Problems) -> str | None:
    raw = section.string(key)
    if raw is None:
        return None
    return check_name(problems, section.at(key), raw, LOCATION_NAME, LOCATION_RULE)


def _any_of(section: Section, problems: Problems) -> tuple[Location, ...]:
    """The any_of entries. Entries for the same place that differ only in `accelerators`
    become one entry offering all of them (SkyPilot: any of the entries may be launched)."""
    value = section.get("any_of")
    if value is None:
        return ()
    path = section.at("any_of")
    if not isinstance(value, list) or not value:
        problems.add(
            path,
            "must be a non-empty list of {cloud, region, zone, accelerators} mappings, "
            f"got {describe(value)}",
        )
        return ()
    locations: list[Location] = []
    for index, item in enumerate(value):
        entry = open_section(item, join(path, index), problems, schema.ANY_OF_ENTRY)
        if entry is None:
            continue
        location = parse_location(entry, problems)
        if entry.has("accelerators"):
            own, any_of = parse_accelerators(
                entry.get("accelerators"), entry.at("accelerators"), problems
            )
            location = replace(location, accelerators=own, accelerators_any_of=any_of)
        place = _place(location)
        same = next((i for i, seen in enumerate(locations) if _place(seen) == place), None)
        if same is None:
            locations.append(location)
        elif location.accelerators is None or locations[same].accelerators is None:
            problems.add(
                join(path, index),
                "duplicate location; to offer several accelerators in one place, give each "
                "entry its own (one per entry), or a set at resources.accelerators",
            )
        else:
            locations[same] = _merged(locations[same], location, join(path, index), problems)
    return tuple(locations)


def _place(location: Location) -> tuple[str | None, str | None, str | None]:
    return (location.cloud, location.region, location.zone)


def _merged(first: Location, second: Location, path: str, problems: Problems) -> Location:
    assert first.accelerators is not None and second.accelerators is not None
    names = {a.name.upper() for a in first.accelerators}
    repeated = [a.name for a in second.accelerators if a.name.upper() in names]
    if repeated:
        problems.add(
            path, f"duplicate location: {repeated[0]!r} is already offered here by another entry"
        )
        return first
    return replace(
        first, accelerators=first.accelerators + second.accelerators, accelerators_any_of=True
    )


def parse_accelerators(
    value: object, path: str, problems: Problems
) -> tuple[tuple[Accelerator, ...], bool]:
    """`L4`, `L4:2`, `{L4: 2}`, `{L4, A100}` or a list of those -> ((Accelerator, ...), any_of).

    SkyPilot's meaning: a list is an ordered preference (any_of False); a mapping or set of
    several names is "any of" (True): the cheapest a cloud offers is used.
    """
    if value is None:
        return (), False
    if isinstance(value, Mapping | list | set | frozenset | str) and not value:
        problems.add(
            path,
            "is empty; name at least one accelerator (e.g. L4), or leave the field out for a "
            "replica without one",
        )
        return (), False
    any_of = isinstance(value, Mapping | set | frozenset) and len(value) > 1
    found: list[Accelerator] = []
    if isinstance(value, str):
        found.extend(_accelerator_string(value, path, problems))
    elif isinstance(value, Mapping):
        found.extend(_accelerator_mapping(value, path, problems))
    elif isinstance(value, list | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        for index, item in enumerate(items):
            item_path = join(path, index)
            if isinstance(item, str):
                found.extend(_accelerator_string(item, item_path, problems))
            elif isinstance(item, Mapping) and len(item) == 1:
                found.extend(_accelerator_mapping(item, item_path, problems))
            elif isinstance(item, Mapping):
                problems.add(
                    item_path,
                    "a list item names one accelerator (a list is an ordered preference); "
                    "for 'any of', write the mapping itself: {L4: 1, A10G: 1}",
                )
            else:
                problems.add(
                    item_path,
                    f"must be 'NAME', 'NAME:COUNT' or {{NAME: COUNT}}, got {describe(item)}",
                )
    else:
        problems.add(
            path,
            "must be 'NAME', 'NAME:COUNT', {NAME: COUNT} or a list of those, "
            f"got {describe(value)}",
        )
    names = [a.name.upper() for a in found]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.add(path, f"{name!r} is listed more than once")
    return tuple(dict.fromkeys(found)), any_of


def _accelerator_string(text: str, path: str, problems: Problems) -> list[Accelerator]:
    name, sep, count_text = text.partition(":")
    count_text = count_text.strip() if sep else "1"
    count = int(count_text) if re.fullmatch(r"[0-9]+", count_text) else None
    return _accelerator(name.strip(), count, repr(count_text), path, problems)


def _accelerator_mapping(
    data: Mapping[object, object], path: str, problems: Problems
) -> list[Accelerator]:
    found: list[Accelerator] = []
    for name, count in data.items():
        if not isinstance(name, str):
            problems.add(path, f"accelerator names must be strings, got {describe(name)}")
            continue
        if count is None and ":" in name:
            # `{L4:1, A10G:1}` (no space after the colon, as SkyPilot's docs write it): YAML
            # reads `L4:1` as a key with no value.
            found.extend(_accelerator_string(name, join(path, name), problems))
            continue
        if count is None:  # `{L4, A100}`: a YAML set, one of each
            count = 1
        if isinstance(count, float) and count.is_integer():
            count = int(count)  # SkyPilot accepts `L4: 1.0`
        whole = count if is_int(count) else None
        found.extend(_accelerator(name, whole, describe(count), join(path, name), problems))
    return found


def _accelerator(
    name: str, count: int | None, shown: str, path: str, problems: Problems
) -> list[Accelerator]:
    ok = check_name(problems, path, name, ACCELERATOR_NAME, ACCELERATOR_RULE) is not None
    if count is None or count < 1:
        problems.add(path, f"accelerator count must be a whole number >= 1, got {shown}")
        ok = False
    return [Accelerator(name, count)] if ok and count is not None else []


def parse_quantity(section: Section, key: str) -> str | None:
    """cpus/memory: `8`, `0.5`, `32+` (at least 32) -> a normalised string like `32+`."""
    value = section.get(key)
    if value is None:
        return None
    if is_int(value) or isinstance(value, float):
        text = str(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        text = ""
    match = _QUANTITY.fullmatch(text)
    if match is None or float(match.group(1)) <= 0:
        section.bad(
            key,
            f"must be a number > 0, optionally with '+' for 'at least' "
            f"(e.g. 8, 32+), got {describe(value)}",
        )
        return None
    number = float(match.group(1))
    shown = str(int(number)) if number.is_integer() else str(number)
    return shown + match.group(2)


def parse_ports(value: object, path: str, problems: Problems) -> tuple[int, ...]:
    """8081, "8081", "8080-8081" or a list of those -> sorted unique port numbers."""
    if value is None:
        return ()
    items = list(enumerate(value)) if isinstance(value, list) else [(None, value)]
    ports: set[int] = set()
    for index, item in items:
        item_path = path if index is None else join(path, index)
        found = _port_item(item)
        if found is None:
            problems.add(
                item_path,
                "must be a port 1-65535, a range like '8080-8081' "
                f"or a list of those, got {describe(item)}",
            )
        else:
            ports.update(found)
    return tuple(sorted(ports))


def _port_item(item: object) -> range | None:
    if is_int(item):
        low = high = item
    elif isinstance(item, str) and re.fullmatch(r"\s*\d{1,5}\s*(-\s*\d{1,5}\s*)?", item):
        low_text, _, high_text = item.partition("-")
        low = int(low_text)
        high = int(high_text) if high_text else low
    else:
        return None
    if not 1 <= low <= high <= 65535:
        return None
    return range(low, high + 1)
