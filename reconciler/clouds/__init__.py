"""Real clouds (AWS, GCP, Azure): the shipped catalog and the tfvars context of a region stack.

The Terraform modules under terraform/modules/{aws,gcp,azure,front} are static; everything a
stack varies by is rendered from the context built here, so the contract tests can check the
rendered variables against each module's variables.tf.
"""

from reconciler.clouds.catalog import (
    AWS_DLAMI_SSM_PARAMETER,
    DEFAULT_IMAGES,
    REAL_CLOUDS,
    InstanceChoice,
    accelerators_for_region,
    check_zone,
    choice_note,
    instance_for,
    instance_for_region,
    instances_for_region,
    list_price,
    list_prices,
    list_spot_price,
    zones_of,
)
from reconciler.clouds.stack_context import (
    CloudSettings,
    Origin,
    cloud_stack_context,
    front_stack_context,
    secret_env_names,
    secret_env_values,
    template_for,
    type_entry,
    version_entry,
)
from reconciler.errors import CloudConfigError

__all__ = [
    "AWS_DLAMI_SSM_PARAMETER",
    "DEFAULT_IMAGES",
    "REAL_CLOUDS",
    "CloudConfigError",
    "CloudSettings",
    "InstanceChoice",
    "Origin",
    "accelerators_for_region",
    "check_zone",
    "choice_note",
    "cloud_stack_context",
    "front_stack_context",
    "instance_for",
    "instance_for_region",
    "instances_for_region",
    "list_price",
    "list_prices",
    "list_spot_price",
    "secret_env_names",
    "secret_env_values",
    "template_for",
    "type_entry",
    "version_entry",
    "zones_of",
]
