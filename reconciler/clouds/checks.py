"""The settings a cloud spec needs, checked before any work: each cloud's own (its
`Cloud.check_settings`, clouds/<cloud>/settings.py), then the front stack's."""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.clouds.registry import CLOUDS
from reconciler.clouds.settings import ENV_DNS_NAME, ENV_DNS_ZONE, ProviderSettings
from reconciler.spec.model import ServiceSpec


def check_cloud_settings(
    spec: ServiceSpec, regions: Sequence[tuple[str, str]], settings: ProviderSettings
) -> None:
    """Raise SettingsError, one line naming the first missing setting and where it goes
    (`settings.missing`), for a spec whose stacks are `regions` ((cloud, region) pairs).

    Each cloud's check runs on its own regions, in the order given, the clouds in the
    registry's order (AWS AMIs per region, then the GCP project, then the Azure SSH key and
    subscription); a cloud no region names is not checked, nor is a name not in the registry.
    Last, the front stack: a DNS name and a Route 53 zone id come together or not at all.
    """
    for kind in CLOUDS.values():
        own = [region for cloud, region in regions if cloud == kind.name]
        if own:
            kind.check_settings(spec, own, settings)
    if bool(settings.domain_name) != bool(settings.zone_id):
        raise settings.missing(
            "the front stack needs both a DNS name and a Route 53 zone id",
            f"{ENV_DNS_NAME} and {ENV_DNS_ZONE}",
            "dns: {domain_name, zone_id}",
        )
