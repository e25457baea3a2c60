"""classify_launch_error and parse_apply_errors over real-looking Terraform/cloud error text."""

from __future__ import annotations

import pytest

from reconciler.clouds.capacity import classify_launch_error, parse_apply_errors
from reconciler.policy import FailureKind, Market

CAP, QUOTA, CONFIG, OTHER = (
    FailureKind.CAPACITY,
    FailureKind.QUOTA,
    FailureKind.CONFIG,
    FailureKind.OTHER,
)

AWS_ICE = (
    "Error: creating EC2 Instance: operation error EC2: RunInstances, https response error "
    "StatusCode: 500, RequestID: 5d1d4f0a-1111-2222-3333-444455556666, api error "
    "InsufficientInstanceCapacity: We currently do not have sufficient g6.xlarge capacity in "
    "the Availability Zone you requested (us-east-1a). Our system will be working on "
    "provisioning additional capacity. You can currently get g6.xlarge capacity by not "
    "specifying an Availability Zone in your request or choosing us-east-1b, us-east-1c."
)


@pytest.mark.parametrize(
    ("cloud", "message", "kind"),
    [
        ("aws", AWS_ICE, CAP),
        (
            "aws",
            "Error launching source instance: InsufficientInstanceCapacity: There is no "
            "Spot capacity available that matches your request.\n\tstatus code: 500",
            CAP,
        ),
        ("aws", "MaxSpotInstanceCountExceeded: Max spot instance count exceeded", CAP),
        (
            "aws",
            "UnfulfillableCapacity: Unable to fulfill capacity due to your request "
            "configuration. Please adjust your request and try again.",
            CAP,
        ),
        (
            "aws",
            "SpotMaxPriceTooLow: Your Spot request price of 0.1 is lower than the "
            "minimum required Spot request fulfillment price of 0.3398.",
            CAP,
        ),
        (
            "aws",
            "Error while waiting for spot request (sir-abc) to resolve: unexpected state "
            "'capacity-not-available'",
            CAP,
        ),
        (
            "aws",
            "VcpuLimitExceeded: You have requested more vCPU capacity than your current "
            "vCPU limit of 0 allows for the instance bucket that the specified instance type "
            "belongs to.",
            QUOTA,
        ),
        ("aws", "InstanceLimitExceeded: Your quota allows for 0 more running instance(s).", QUOTA),
        ("aws", "InvalidParameterValue: Invalid availability zone: [us-east-1z]", CONFIG),
        ("aws", "InvalidAMIID.NotFound: The image id '[ami-123]' does not exist", CONFIG),
        (
            "aws",
            "Unsupported: Your requested instance type (g6.xlarge) is not supported in "
            "your requested Availability Zone (us-east-1e).",
            CONFIG,
        ),
        ("aws", "UnauthorizedOperation: You are not authorized to perform this operation.", CONFIG),
        ("aws", "InternalError: An internal error has occurred", OTHER),
        (
            "gcp",
            "Error: Error waiting for instance to create: The zone "
            "'projects/p/zones/us-central1-a' does not have enough resources available to "
            "fulfill the request.  Try a different zone, or try again later.",
            CAP,
        ),
        ("gcp", "Error code 8, message: ZONE_RESOURCE_POOL_EXHAUSTED", CAP),
        (
            "gcp",
            "googleapi: Error 503: ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS: The zone "
            "'projects/p/zones/us-central1-b' does not have enough resources",
            CAP,
        ),
        (
            "gcp",
            "A g2-standard-8 VM instance is currently unavailable in the us-central1-a "
            "zone. ... resource pool exhausted",
            CAP,
        ),
        ("gcp", "code: STOCKOUT", CAP),
        (
            "gcp",
            "Error waiting for Creating Instance: Quota 'NVIDIA_L4_GPUS' exceeded.  "
            "Limit: 1.0 in region us-central1.",
            QUOTA,
        ),
        ("gcp", "googleapi: Error 403: QUOTA_EXCEEDED", QUOTA),
        (
            "gcp",
            "googleapi: Error 400: Invalid value for field 'resource.machineType': "
            "'zones/us-central1-f/machineTypes/g2-standard-8'. Machine type with name "
            "'g2-standard-8' does not exist in zone 'us-central1-f'., invalid",
            CONFIG,
        ),
        ("gcp", "googleapi: Error 500: Internal error. Please try again", OTHER),
        (
            "azure",
            'Code="SkuNotAvailable" Message="The requested VM size for resource '
            "'Following SKUs have failed for Capacity Restrictions: Standard_NC4as_T4_v3' is "
            "currently not available in location 'eastus'. Please try another size or deploy to "
            'a different location or different zone."',
            CAP,
        ),
        (
            "azure",
            'Code="AllocationFailed" Message="Allocation failed. We do not have '
            'sufficient capacity for the requested VM size in this region."',
            CAP,
        ),
        ("azure", 'Code="ZonalAllocationFailed" Message="Allocation failed."', CAP),
        ("azure", 'Code="OverconstrainedAllocationRequest"', CAP),
        (
            "azure",
            'Code="OperationNotAllowed" Message="Operation could not be completed as '
            "it results in exceeding approved LowPriorityCores quota. Additional details - "
            'Deployment Model: Resource Manager, Location: eastus, Current Limit: 0"',
            QUOTA,
        ),
        ("azure", 'Code="QuotaExceeded"', QUOTA),
        (
            "azure",
            'Code="InvalidParameter" Message="The value of parameter '
            'imageReference.sku is invalid."',
            CONFIG,
        ),
        ("azure", 'Code="InternalServerError"', OTHER),
        (
            "local",
            "InsufficientInstanceCapacity: no spot capacity in zone local-1a "
            "(capacity 0, in use 2)",
            CAP,
        ),
        ("local", "unknown zone 'local-9z'", CONFIG),
        ("somecloud", "ZONE_RESOURCE_POOL_EXHAUSTED", CAP),
        ("somecloud", "Quota 'GPUS' exceeded", QUOTA),
    ],
)
def test_classify_launch_error(cloud: str, message: str, kind: FailureKind) -> None:
    assert classify_launch_error(cloud, message) is kind


def test_a_quota_error_is_not_capacity_even_mentioning_capacity() -> None:
    # "vCPU capacity" appears in the text of a quota error: the code decides.
    text = "VcpuLimitExceeded: You have requested more vCPU capacity than your limit allows"
    assert classify_launch_error("aws", text) is QUOTA


# Captured from Terraform 1.0.3 (-no-color) with a local-exec that fails like the sandbox.
PLAIN = """\
null_resource.r["r-1"] (local-exec): Error: InsufficientInstanceCapacity: no spot capacity in zone local-1a (capacity 0, in use 2)

Error: local-exec provisioner error

  with null_resource.r["r-1"],
  on main.tf line 3, in resource "null_resource" "r":
   3:   provisioner "local-exec" {

Error running command 'sandbox replica launch': exit status
3. Output: Error: InsufficientInstanceCapacity: no spot capacity in zone
local-1a (capacity 0, in use 2)

"""  # noqa: E501

BOXED = """\
\x1b[31m╷\x1b[0m\x1b[0m
\x1b[31m│\x1b[0m \x1b[0m\x1b[1m\x1b[31mError: \x1b[0m\x1b[0m\x1b[1mcreating EC2 Instance: InsufficientInstanceCapacity: We currently do not have sufficient g6.xlarge capacity in the Availability Zone you requested (us-east-1b). You can currently get g6.xlarge capacity by choosing us-east-1a, us-east-1c.\x1b[0m
\x1b[31m│\x1b[0m \x1b[0m
\x1b[31m│\x1b[0m \x1b[0m\x1b[0m  with module.replicas.aws_instance.replica["r-7"],
\x1b[31m│\x1b[0m \x1b[0m  on main.tf line 10, in resource "aws_instance" "replica":
\x1b[31m│\x1b[0m \x1b[0m
\x1b[31m╵\x1b[0m\x1b[0m
╷
│ Warning: Argument is deprecated
│
│   with aws_instance.replica["r-8"],
╵
╷
│ Error: creating EC2 Instance: VcpuLimitExceeded: You have requested more vCPU capacity than your current vCPU limit of 0 allows
│
│   with module.replicas.aws_instance.replica["r-9"],
╵
"""  # noqa: E501


def test_plain_output_nested_error_does_not_split_the_diagnostic() -> None:
    failures = parse_apply_errors("local", PLAIN)
    assert len(failures) == 1
    (failure,) = failures
    assert failure.kind is CAP
    assert failure.zone == "local-1a"  # found across Terraform's line wrap
    assert failure.address == 'null_resource.r["r-1"]'
    assert failure.replica_id == "r-1"
    result = failure.launch_result(Market.SPOT)
    assert result is not None and not result.ok and result.failure is CAP
    assert result.zone == "local-1a" and result.market is Market.SPOT


def test_boxed_output_with_colours_warnings_and_two_errors() -> None:
    failures = parse_apply_errors("aws", BOXED)
    assert [(f.kind, f.zone, f.replica_id) for f in failures] == [
        (CAP, "us-east-1b", "r-7"),  # the zone requested, not the zones suggested
        (QUOTA, None, "r-9"),
    ]
    assert failures[0].address == 'module.replicas.aws_instance.replica["r-7"]'
    assert failures[1].launch_result(Market.SPOT) is None  # no zone: nothing to mark


def test_replica_zones_mapping_wins_over_the_text() -> None:
    failures = parse_apply_errors("aws", BOXED, {"r-7": "us-east-1b", "r-9": "us-east-1c"})
    assert [f.zone for f in failures] == ["us-east-1b", "us-east-1c"]


@pytest.mark.parametrize(
    ("cloud", "text", "zone"),
    [
        (
            "gcp",
            "Error: Error waiting for instance to create: The zone "
            "'projects/p/zones/europe-west4-b' does not have enough resources available",
            "europe-west4-b",
        ),
        (
            "azure",
            'Error: Code="SkuNotAvailable" Message="The requested size for resource is '
            "currently not available in location 'eastus' zones '2' for subscription\"",
            "eastus-2",
        ),
    ],
)
def test_zone_from_message(cloud: str, text: str, zone: str) -> None:
    (failure,) = parse_apply_errors(cloud, text + "\n")
    assert failure.zone == zone and failure.kind is CAP


def test_no_errors_no_failures() -> None:
    assert parse_apply_errors("aws", "Apply complete! Resources: 1 added, 0 changed.\n") == []
