"""Azure: Linux VMs behind a Standard load balancer (terraform/modules/azure), evictions from
the activity log, request rate from the replicas, prices from the shipped catalog.

The folder's layout and the rules for it: clouds/base.py `Cloud`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from reconciler.clouds.azure import launch_errors, state
from reconciler.clouds.azure.settings import check_settings, image_fits, stack_context
from reconciler.clouds.base import SHARED_VERSION_FIELDS, Cloud

if TYPE_CHECKING:
    from reconciler.clouds.apis import CloudApis
    from reconciler.clouds.settings import ProviderSettings
    from reconciler.spec.model import ServiceSpec


def _apis(spec: ServiceSpec, settings: ProviderSettings) -> CloudApis:
    from reconciler.clouds.azure.apis import AzureApis

    return AzureApis(spec, settings.azure_subscription_id)


def _provider_config(region: str, settings: ProviderSettings) -> dict[str, Any]:
    return {"features": {}, "subscription_id": settings.azure_subscription_id}


# A `versions` entry of terraform/modules/azure: (its field, the tfvars context key).
VERSION_FIELDS = (("vm_size", "instance_type"), *SHARED_VERSION_FIELDS)

CLOUD = Cloud(
    name="azure",
    provider="azurerm",
    replica_type=state.REPLICA_TYPE,
    read_replica=state.read_replica,
    launch_errors=launch_errors.RULES,
    zone_patterns=launch_errors.ZONE_PATTERNS,
    live_spot_prices=False,
    make_apis=_apis,
    provider_config=_provider_config,
    image_fits=image_fits,
    stack_context=stack_context,
    check_settings=check_settings,
    version_fields=VERSION_FIELDS,
    typed_replicas=True,
)
