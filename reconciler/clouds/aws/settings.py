"""What AWS needs beyond the spec: an AMI per region (AMIs are regional; there is no default
image), which images are AMIs, and its own tfvars context entries (none)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reconciler.clouds.settings import ENV_IMAGES, CloudSettings, ProviderSettings
from reconciler.spec.model import ServiceSpec


def image_fits(image: str) -> bool:
    """Whether a spec's image_id is an AWS image (`ami-...`)."""
    return image.startswith("ami-")


def stack_context(settings: CloudSettings) -> dict[str, Any]:
    """No entries of its own: an AWS region stack needs only the shared context."""
    return {}


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
