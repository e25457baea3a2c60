"""Settings a SkyServe spec does not carry, for real-cloud stacks: AMIs, GCP project, Azure
SSH key and subscription, the DNS zone of the front stack, default regions.

Read from an optional `services/<service>.settings.yaml` and from environment variables; an
environment variable wins over the file, so CI and a laptop can share one file. Every value
here is an identifier, not a secret: secrets stay in the reconciler's environment.

The format is shared: one flat file whose keys name their cloud (`aws_images`, `gcp_project`),
read here in one place. What each cloud requires of it, and how its settings reach its stacks,
is the cloud's own (`check_settings` and `stack_context` of clouds/<cloud>/settings.py,
called through the registry by clouds/checks.py and clouds/stack_context.py). This module sits
below the cloud folders (they and clouds/base.py import it), so it calls none of them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reconciler.clouds.catalog import REAL_CLOUDS
from reconciler.errors import SettingsError

DEFAULT_DISK_SIZE_GB = 256

ENV_IMAGES = "HEDGEFORM_AWS_IMAGES"  # us-east-1=ami-...,us-west-2=ami-...
ENV_GCP_PROJECT = "GOOGLE_CLOUD_PROJECT"
ENV_AZURE_KEY = "HEDGEFORM_AZURE_SSH_PUBLIC_KEY"
ENV_AZURE_SUBSCRIPTION = "AZURE_SUBSCRIPTION_ID"
ENV_DNS_NAME = "HEDGEFORM_DNS_NAME"
ENV_DNS_ZONE = "HEDGEFORM_DNS_ZONE_ID"
ENV_AWS_ENDPOINT = "HEDGEFORM_AWS_ENDPOINT_URL"
FILE_KEYS = frozenset(
    {
        "aws_images",
        "gcp_project",
        "azure_ssh_public_key",
        "azure_subscription_id",
        "dns",
        "regions",
        "instance_types",
        "tags",
        "aws_endpoint_url",
    }
)


def regions_env(cloud: str) -> str:
    return f"HEDGEFORM_{cloud.upper()}_REGIONS"


@dataclass(frozen=True)
class CloudSettings:
    """Per-cloud settings that a SkyServe spec does not carry."""

    # Image per "cloud:region" or per cloud ("aws:us-east-1" beats "aws"); AWS needs one per
    # region (AMIs are regional), GCP and Azure fall back to DEFAULT_IMAGES.
    images: Mapping[str, str] = field(default_factory=dict)
    # Cloud -> instance type forced for every replica (the catalog still supplies the GPUs).
    instance_types: Mapping[str, str] = field(default_factory=dict)
    gcp_project: str = ""
    azure_admin_ssh_public_key: str = ""
    default_disk_size_gb: int = DEFAULT_DISK_SIZE_GB
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ProviderSettings:
    """Everything the cloud backend needs beyond the spec."""

    cloud: CloudSettings = field(default_factory=CloudSettings)
    azure_subscription_id: str = ""
    domain_name: str = ""  # the front stack's DNS name; empty: no front stack
    zone_id: str = ""  # its Route 53 hosted zone
    default_regions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    aws_endpoint_url: str | None = None  # moto or another emulator; never set in production
    source: str = "the environment"  # where a missing setting should go, for error messages

    @property
    def has_front(self) -> bool:
        return bool(self.domain_name and self.zone_id)

    def missing(self, what: str, env: str, key: str) -> SettingsError:
        return SettingsError(f"{what}: set {env} or `{key}` in {self.source}")


def _split_pairs(text: str, name: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        region, sep, value = item.partition("=")
        if not sep or not region or not value:
            raise SettingsError(f"{name}: expected region=value[,region=value], got {item!r}")
        pairs[region.strip()] = value.strip()
    return pairs


def _mapping(data: Mapping[str, Any], key: str, path: Path) -> dict[str, str]:
    value = data.get(key) or {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise SettingsError(f"{path}: `{key}` must map names to strings")
    return {str(k): v for k, v in value.items()}


def _string(data: Mapping[str, Any], key: str, path: Path) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise SettingsError(f"{path}: `{key}` must be a string")
    return value


def read_settings_file(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SettingsError(f"{path}: unreadable settings file ({first})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a mapping of settings")
    unknown = sorted(set(data) - FILE_KEYS)
    if unknown:
        raise SettingsError(
            f"{path}: unknown setting(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(FILE_KEYS))}"
        )
    return data


def load_settings(path: Path, env: Mapping[str, str] | None = None) -> ProviderSettings:
    """Settings from `path` (optional) overlaid with the environment."""
    env = os.environ if env is None else env
    data = read_settings_file(path)
    images = {f"aws:{r}": ami for r, ami in _mapping(data, "aws_images", path).items()}
    images.update(
        {f"aws:{r}": ami for r, ami in _split_pairs(env.get(ENV_IMAGES, ""), ENV_IMAGES).items()}
    )
    dns = data.get("dns") or {}
    if not isinstance(dns, dict):
        raise SettingsError(f"{path}: `dns` must be a mapping with domain_name and zone_id")
    regions_raw = data.get("regions") or {}
    if not isinstance(regions_raw, dict):
        raise SettingsError(f"{path}: `regions` must map a cloud to a list of regions")
    regions: dict[str, tuple[str, ...]] = {}
    for name in REAL_CLOUDS:
        listed = regions_raw.get(name) or []
        if isinstance(listed, str):
            listed = [listed]
        from_env = env.get(regions_env(name), "")
        if from_env:
            listed = [r.strip() for r in from_env.split(",") if r.strip()]
        if listed:
            regions[name] = tuple(str(r) for r in listed)
    key = env.get(ENV_AZURE_KEY) or _string(data, "azure_ssh_public_key", path)
    cloud = CloudSettings(
        images=images,
        instance_types=_mapping(data, "instance_types", path),
        gcp_project=env.get(ENV_GCP_PROJECT) or _string(data, "gcp_project", path),
        azure_admin_ssh_public_key=key.strip(),
        tags=_mapping(data, "tags", path),
    )
    return ProviderSettings(
        cloud=cloud,
        azure_subscription_id=env.get(ENV_AZURE_SUBSCRIPTION)
        or _string(data, "azure_subscription_id", path),
        domain_name=env.get(ENV_DNS_NAME) or str(dns.get("domain_name", "")),
        zone_id=env.get(ENV_DNS_ZONE) or str(dns.get("zone_id", "")),
        default_regions=regions,
        aws_endpoint_url=(
            env.get(ENV_AWS_ENDPOINT) or _string(data, "aws_endpoint_url", path) or None
        ),
        source=str(path),
    )
