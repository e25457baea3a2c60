"""GCP: Compute Engine replicas behind a regional load balancer (terraform/modules/gcp),
signals from zone operations and Cloud Monitoring, prices from the shipped catalog.

The folder's layout and the rules for it: clouds/base.py `Cloud`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from reconciler.clouds.base import SHARED_VERSION_FIELDS, Cloud
from reconciler.clouds.gcp import launch_errors, state
from reconciler.clouds.gcp.settings import check_settings, image_fits, stack_context

if TYPE_CHECKING:
    from reconciler.clouds.apis import CloudApis
    from reconciler.clouds.settings import ProviderSettings
    from reconciler.spec.model import ServiceSpec


def _apis(spec: ServiceSpec, settings: ProviderSettings) -> CloudApis:
    from reconciler.clouds.gcp.apis import GcpApis

    return GcpApis(spec, settings.cloud.gcp_project)


def _provider_config(region: str, settings: ProviderSettings) -> dict[str, Any]:
    return {"project": settings.cloud.gcp_project, "region": region}


# A `versions` entry of terraform/modules/gcp: (its field, the tfvars context key).
VERSION_FIELDS = (
    ("machine_type", "instance_type"),
    ("guest_accelerator_type", "guest_accelerator_type"),
    *SHARED_VERSION_FIELDS,
)

CLOUD = Cloud(
    name="gcp",
    provider="google",
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
