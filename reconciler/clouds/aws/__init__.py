"""AWS: EC2 replicas behind an ALB (terraform/modules/aws), signals from SQS, EC2 and
CloudWatch, live spot prices.

The folder's layout and the rules for it: clouds/base.py `Cloud`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from reconciler.clouds.aws import launch_errors, state
from reconciler.clouds.aws.settings import check_settings, image_fits, stack_context
from reconciler.clouds.base import SHARED_VERSION_FIELDS, Cloud

if TYPE_CHECKING:
    from reconciler.clouds.apis import CloudApis
    from reconciler.clouds.settings import ProviderSettings
    from reconciler.spec.model import ServiceSpec


def _apis(spec: ServiceSpec, settings: ProviderSettings) -> CloudApis:
    from reconciler.clouds.aws.apis import AwsApis

    return AwsApis(spec, settings.aws_endpoint_url)


# Every AWS API the module and the front module call (the provider's `endpoints` block names),
# sent to the emulator when an endpoint is set.
EMULATED_SERVICES = (
    "acm", "cloudwatch", "dynamodb", "ec2", "elbv2", "events", "iam", "kms", "route53", "s3",
    "secretsmanager", "sqs", "ssm", "sts",
)  # fmt: skip
EMULATOR_MAX_RETRIES = 2  # an emulator's 500 for an unimplemented call is not worth 25 retries


def _provider_config(region: str, settings: ProviderSettings) -> dict[str, Any]:
    """The `provider "aws"` block of a stack's root configuration. With
    `aws_endpoint_url` (HEDGEFORM_AWS_ENDPOINT_URL: an emulator such as moto), every API
    goes there: the provider skips the credential check and the instance metadata lookup,
    retries little, and addresses S3 by path. Credentials come from the environment
    (AWS_ACCESS_KEY_ID, ...), never from this file. The account id is still requested
    (STS answers on the emulator): without it the provider leaves security-group references
    incomplete, and they drift on every plan."""
    config: dict[str, Any] = {"region": region}
    url = settings.aws_endpoint_url
    if url:
        config.update(
            endpoints={service: url for service in EMULATED_SERVICES},
            max_retries=EMULATOR_MAX_RETRIES,
            skip_credentials_validation=True,
            skip_metadata_api_check=True,
            skip_requesting_account_id=False,
            s3_use_path_style=True,
        )
    return config


# A `versions` entry of terraform/modules/aws: (its field, the tfvars context key).
VERSION_FIELDS = (("instance_type", "instance_type"), *SHARED_VERSION_FIELDS)

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
    version_fields=VERSION_FIELDS,
    typed_replicas=True,
    # One ALB target group per type plus the shared one in a weighted forward, and AWS
    # allows 5 target groups per action (Elastic Load Balancing quotas, not adjustable).
    max_types_per_region=4,
    weighs_types=True,
)
