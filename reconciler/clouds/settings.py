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

import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from reconciler.clouds.catalog import REAL_CLOUDS
from reconciler.errors import SettingsError
from reconciler.terraform.backend import ENV_STATE_BACKEND, StateBackend, parse_state_backend

DEFAULT_DISK_SIZE_GB = 256

ENV_IMAGES = "HEDGEFORM_AWS_IMAGES"  # us-east-1=ami-...,us-west-2=ami-...
ENV_GCP_PROJECT = "GOOGLE_CLOUD_PROJECT"
ENV_AZURE_KEY = "HEDGEFORM_AZURE_SSH_PUBLIC_KEY"
ENV_AZURE_SUBSCRIPTION = "AZURE_SUBSCRIPTION_ID"
ENV_DNS_NAME = "HEDGEFORM_DNS_NAME"
ENV_DNS_ZONE = "HEDGEFORM_DNS_ZONE_ID"
ENV_AWS_ENDPOINT = "HEDGEFORM_AWS_ENDPOINT_URL"
ENV_CERTIFICATES = "HEDGEFORM_AWS_CERTIFICATE_ARNS"
ENV_ALLOWED_CIDRS = "HEDGEFORM_ALLOWED_CIDRS"
PUBLIC: tuple[str, ...] = ("0.0.0.0/0",)  # the default: the endpoint is public, as SkyServe's is
# arn:aws:acm:us-east-1:123456789012:certificate/<uuid> (also aws-us-gov, aws-cn partitions)
ACM_ARN = re.compile(
    r"arn:aws(?:-[a-z]+)*:acm:([a-z]{2}(?:-gov)?-[a-z]+-\d):\d{12}:certificate/[0-9a-f-]{8,64}"
)
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
        "aws_certificate_arns",
        "allowed_cidrs",
        "state_backend",
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
    # AWS region -> ACM certificate: HTTPS on 443 there, port 80 redirecting to it.
    certificate_arns: Mapping[str, str] = field(default_factory=dict)
    # Who may reach the load balancers' listeners (IPv4 CIDR blocks); public by default.
    allowed_cidrs: tuple[str, ...] = PUBLIC


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


def endpoint_url(value: str, where: str) -> str | None:
    """An emulator's base URL (`http://127.0.0.1:4566`), or None when unset. It is written
    into each stack's provider block and handed to every API client, so it must be a plain
    http(s) URL: a host, maybe a port and a path, no credentials, query or whitespace.
    SettingsError naming `where` otherwise."""
    if not value:
        return None
    plain = value.isprintable() and not any(ch.isspace() for ch in value)
    try:
        parts = urlsplit(value)
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:  # an unclosed IPv6 bracket, a port that is no number
        parts, port_ok = urlsplit(""), False
    if (
        not plain
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.username is not None
        or parts.query
        or parts.fragment
        or not port_ok
    ):
        raise SettingsError(  # the value is not repeated: it may hold a password
            f"{where} is not an endpoint URL: give http(s)://HOST[:PORT], without "
            "credentials, query or spaces"
        )
    return value.rstrip("/")


def _certificates(pairs: Mapping[str, str], where: str) -> dict[str, str]:
    """Region -> ACM certificate ARN, each ARN of that region (ACM certificates are regional
    and an ALB can only use one of its own region's). SettingsError naming `where`."""
    for region, arn in pairs.items():
        match = ACM_ARN.fullmatch(arn)
        if match is None:
            raise SettingsError(
                f"{where}: {region}: not an ACM certificate ARN "
                "(arn:aws:acm:REGION:ACCOUNT:certificate/ID)"
            )
        if match.group(1) != region:
            raise SettingsError(
                f"{where}: {region}: the certificate is in {match.group(1)}; a load balancer in "
                f"{region} needs one of {region} (ACM certificates are regional)"
            )
    return dict(pairs)


def _cidrs(items: Sequence[object], where: str) -> tuple[str, ...]:
    """IPv4 CIDR blocks in their canonical form (`10.0.0.0/8`); SettingsError naming
    `where` for anything else (a host address with a prefix, IPv6, a name)."""
    out: list[str] = []
    for item in items:
        try:
            if not isinstance(item, str):
                raise ValueError
            out.append(str(ipaddress.IPv4Network(item.strip(), strict=True)))
        except ValueError:
            raise SettingsError(
                f"{where}: {item!r} is not an IPv4 CIDR block (like 203.0.113.0/24)"
            ) from None
    if not out:
        raise SettingsError(f"{where}: empty: name at least one CIDR block (0.0.0.0/0: anyone)")
    return tuple(dict.fromkeys(out))


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


def load_state_backend(path: Path, env: Mapping[str, str] | None = None) -> StateBackend:
    """Where the service's Terraform state lives (terraform/backend.py): the environment's
    HEDGEFORM_STATE_BACKEND, else `state_backend` in the settings file at `path`, else local.
    Read for every service, sandbox ones too. With an AWS emulator configured
    (HEDGEFORM_AWS_ENDPOINT_URL or `aws_endpoint_url`), an S3 backend points at it.
    SettingsError, one line, for a bad value."""
    env = os.environ if env is None else env
    data = read_settings_file(path)
    if env.get(ENV_STATE_BACKEND):
        value, where = env[ENV_STATE_BACKEND], ENV_STATE_BACKEND
    else:
        value, where = _string(data, "state_backend", path), f"{path}: state_backend"
    emulator = endpoint_url(
        env.get(ENV_AWS_ENDPOINT) or _string(data, "aws_endpoint_url", path),
        ENV_AWS_ENDPOINT if env.get(ENV_AWS_ENDPOINT) else f"{path}: aws_endpoint_url",
    )
    return parse_state_backend(value, where, endpoint_url=emulator)


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
    certificates = _certificates(
        _mapping(data, "aws_certificate_arns", path), f"{path}: aws_certificate_arns"
    )
    if env.get(ENV_CERTIFICATES):
        certificates = _certificates(
            _split_pairs(env[ENV_CERTIFICATES], ENV_CERTIFICATES), ENV_CERTIFICATES
        )
    allowed = PUBLIC
    if "allowed_cidrs" in data:
        listed = data["allowed_cidrs"]
        if not isinstance(listed, list):
            raise SettingsError(f"{path}: `allowed_cidrs` must be a list of CIDR blocks")
        allowed = _cidrs(listed, f"{path}: allowed_cidrs")
    if env.get(ENV_ALLOWED_CIDRS):
        allowed = _cidrs(env[ENV_ALLOWED_CIDRS].split(","), ENV_ALLOWED_CIDRS)
    cloud = CloudSettings(
        images=images,
        instance_types=_mapping(data, "instance_types", path),
        gcp_project=env.get(ENV_GCP_PROJECT) or _string(data, "gcp_project", path),
        azure_admin_ssh_public_key=key.strip(),
        tags=_mapping(data, "tags", path),
        certificate_arns=certificates,
        allowed_cidrs=allowed,
    )
    return ProviderSettings(
        cloud=cloud,
        azure_subscription_id=env.get(ENV_AZURE_SUBSCRIPTION)
        or _string(data, "azure_subscription_id", path),
        domain_name=env.get(ENV_DNS_NAME) or str(dns.get("domain_name", "")),
        zone_id=env.get(ENV_DNS_ZONE) or str(dns.get("zone_id", "")),
        default_regions=regions,
        aws_endpoint_url=endpoint_url(
            env.get(ENV_AWS_ENDPOINT) or _string(data, "aws_endpoint_url", path),
            ENV_AWS_ENDPOINT if env.get(ENV_AWS_ENDPOINT) else f"{path}: aws_endpoint_url",
        ),
        source=str(path),
    )
