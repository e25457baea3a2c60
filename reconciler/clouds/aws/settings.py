"""What AWS needs beyond the spec: an AMI per region (AMIs are regional; there is no default
image), which images are AMIs, and its own tfvars context entries (the load balancer's
certificate and allowed CIDR blocks)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from reconciler.clouds.settings import ENV_IMAGES, CloudSettings, ProviderSettings
from reconciler.spec.model import ServiceSpec

log = logging.getLogger(__name__)
_SAID: set[tuple[str, tuple[str, ...]]] = set()  # (region, allowed CIDRs) already noted


def image_fits(image: str) -> bool:
    """Whether a spec's image_id is an AWS image (`ami-...`)."""
    return image.startswith("ami-")


def stack_context(settings: CloudSettings, region: str) -> dict[str, Any]:
    """The load balancer's endpoint security in `region`: its ACM certificate (HTTPS on 443,
    port 80 redirecting; "" for plain HTTP on 80) and who may reach it (IPv4 CIDR blocks).
    The defaults (plain HTTP, open to anyone, as SkyServe's own endpoint) are a choice, so
    they are said once per process on stderr, never silently."""
    certificate = settings.certificate_arns.get(region, "")
    context = {"certificate_arn": certificate, "allowed_cidrs": list(settings.allowed_cidrs)}
    if not certificate and (region, settings.allowed_cidrs) not in _SAID:
        _SAID.add((region, settings.allowed_cidrs))
        log.warning(
            "note: the aws %s load balancer serves plain HTTP on port 80 to %s "
            "(set aws_certificate_arns and allowed_cidrs in the service's settings file; "
            "docs/clouds.md)",
            region,
            ", ".join(settings.allowed_cidrs),
        )
    return context


def check_settings(spec: ServiceSpec, regions: Sequence[str], settings: ProviderSettings) -> None:
    """SettingsError naming the first of `regions` (in order) with no AMI: neither the spec's
    image_id (an `ami-...`) nor `aws_images` (for that region, or for every region)."""
    image = spec.resources.image_id or ""
    images = settings.cloud.images
    for region in regions:
        known = f"aws:{region}" in images or "aws" in images
        if not image_fits(image) and not known:
            raise settings.missing(
                f"no AMI for aws {region}", f"{ENV_IMAGES}={region}=ami-...", "aws_images"
            )
