"""What Azure needs beyond the spec: an SSH public key for its VMs and the subscription,
which images are Azure images, and the key as a tfvars context entry."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reconciler.clouds.settings import (
    ENV_AZURE_KEY,
    ENV_AZURE_SUBSCRIPTION,
    CloudSettings,
    ProviderSettings,
)
from reconciler.errors import CloudConfigError
from reconciler.spec.model import ServiceSpec


def image_fits(image: str) -> bool:
    """Whether a spec's image_id is an Azure image: a resource id (`/subscriptions/...`) or a
    marketplace URN (`publisher:offer:sku:version`)."""
    return image.startswith("/subscriptions/") or image.count(":") == 3


def stack_context(settings: CloudSettings, region: str) -> dict[str, Any]:
    """`admin_ssh_public_key` for the Azure module; CloudConfigError when none is set."""
    if not settings.azure_admin_ssh_public_key:
        raise CloudConfigError(
            "set an SSH public key for Azure VMs (CloudSettings.azure_admin_ssh_public_key)"
        )
    return {"admin_ssh_public_key": settings.azure_admin_ssh_public_key}


def check_settings(spec: ServiceSpec, regions: Sequence[str], settings: ProviderSettings) -> None:
    """SettingsError naming the first missing of the VMs' SSH public key
    (`azure_ssh_public_key`) and the subscription (`azure_subscription_id`), in that order."""
    if not settings.cloud.azure_admin_ssh_public_key:
        raise settings.missing(
            "no SSH public key for Azure VMs", ENV_AZURE_KEY, "azure_ssh_public_key"
        )
    if not settings.azure_subscription_id:
        raise settings.missing(
            "no Azure subscription", ENV_AZURE_SUBSCRIPTION, "azure_subscription_id"
        )
