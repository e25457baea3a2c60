"""AWS: EC2 replicas behind an ALB (terraform/modules/aws), signals from SQS, EC2 and
CloudWatch, live spot prices.

The folder's layout and the rules for it: clouds/base.py `Cloud`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from reconciler.clouds.aws import launch_errors, state
from reconciler.clouds.aws.settings import check_settings, image_fits, stack_context
from reconciler.clouds.base import Cloud

if TYPE_CHECKING:
    from reconciler.clouds.apis import CloudApis
    from reconciler.clouds.settings import ProviderSettings
    from reconciler.spec.model import ServiceSpec


def _apis(spec: ServiceSpec, settings: ProviderSettings) -> CloudApis:
    from reconciler.clouds.aws.apis import AwsApis

    return AwsApis(spec, settings.aws_endpoint_url)


def _provider_config(region: str, settings: ProviderSettings) -> dict[str, Any]:
    return {"region": region}


CLOUD = Cloud(
    name="aws",
    provider="aws",
    replica_type=state.REPLICA_TYPE,
    read_replica=state.read_replica,
    launch_errors=launch_errors.RULES,
    zone_patterns=launch_errors.ZONE_PATTERNS,
    live_spot_prices=True,
    make_apis=_apis,
    provider_config=_provider_config,
    image_fits=image_fits,
    stack_context=stack_context,
    check_settings=check_settings,
)
