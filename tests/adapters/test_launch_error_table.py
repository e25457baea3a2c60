"""Launch outcomes classified by kind, from the texts each provider really prints.

One row per text: (cloud, the text as Terraform prints it, expected kind). The comment above
each row says where the text comes from:

- "provider source": the format string in the Terraform provider (or the SDK it uses), with
  the cloud's message as documented;
- an issue URL: the text was copied from a public report (ids and names shortened);
- "docs": the cloud's documentation page listing the code and its message;
- "constructed from the documented error code": no public capture was found; the row puts a
  documented code or message into the provider's known format. Treat these as weaker evidence.

Only CAPACITY marks a zone for the spot placer. A spot instance reclaimed while Terraform was
still creating it is CAPACITY too (the zone's spot market said no), not a broken stack.
"""

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

# Sources used more than once.
# hashicorp/terraform-provider-aws internal/service/ec2/ec2_instance.go:
#   "waiting for EC2 Instance (%s) create: %s"; wait.go waitInstanceCreated sets the waiter's
#   last error to the instance's StateReason.Message; terraform-plugin-sdk helper/retry:
#   "unexpected state '%s', wanted target '%s'. last error: %s".
# StateReason messages: https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_StateReason.html
# hashicorp/terraform-provider-aws internal/service/ec2/ec2_spot_instance_request.go:
#   "Error while waiting for spot request (%s) to resolve: %s" (%s is the request struct).
# Spot request status codes:
#   https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-request-status.html
# hashicorp/terraform-provider-google compute_operation.go: ComputeOperationError prints each
#   operation error's Message (and LocalizedMessage / quota details), not its code, after
#   "Error waiting for instance to create: ".
# Azure spot error codes: https://learn.microsoft.com/azure/virtual-machines/error-codes-spot

WAIT_CREATE = (
    "waiting for EC2 Instance (i-0a1b2c3d4e5f60718) create: unexpected state '{state}', "
    "wanted target 'running'. last error: {reason}"
)
SPOT_REQUEST = (
    'Error while waiting for spot request ({{ AvailabilityZone: "us-east-1f", '
    'SpotInstanceRequestId: "sir-12hyb2zk", State: "open", Status: {{ Code: '
    '"pending-evaluation", Message: "Your Spot request has been submitted for review, and is '
    "pending evaluation.\" }} }}) to resolve: unexpected state '{code}', wanted target "
    "'fulfilled'. last error: %!s(<nil>)"
)
SPOT_TERMINATION = (
    "Server.SpotInstanceTermination: The instance was terminated because the number of Spot "
    "requests with a maximum price equal to or higher than the Spot price exceeded available "
    "capacity or because of an increase in the Spot price."
)

AWS_ROWS = [
    # Capacity at RunInstances. Format: provider source ("creating EC2 Instance: %s", aws-sdk-go-v2
    # "operation error EC2: RunInstances, https response error ..."); message from
    # https://github.com/cattle-ops/terraform-aws-gitlab-runner/issues/756
    pytest.param(
        "aws",
        "creating EC2 Instance: operation error EC2: RunInstances, https response error "
        "StatusCode: 500, RequestID: 0c7c4f1e-1111-2222-3333-444455556666, api error "
        "InsufficientInstanceCapacity: We currently do not have sufficient t3.medium capacity "
        "in the Availability Zone you requested (eu-central-1a). Our system will be working on "
        "provisioning additional capacity. You can currently get t3.medium capacity by not "
        "specifying an Availability Zone in your request or choosing eu-central-1b, "
        "eu-central-1c.",
        CAP,
        id="aws-ice-runinstances",
    ),
    # Reclaimed while Terraform was still creating it: provider source (ec2_instance.go, wait.go,
    # retry) with the StateReason message from the API_StateReason docs.
    pytest.param(
        "aws",
        WAIT_CREATE.format(state="terminated", reason=SPOT_TERMINATION),
        CAP,
        id="aws-reclaimed-during-create",
    ),
    # Same, caught while shutting down, with the short message seen in the wild
    # ("Server.SpotInstanceTermination: Spot instance termination"; constructed from the
    # documented error code: no public Terraform capture found).
    pytest.param(
        "aws",
        WAIT_CREATE.format(
            state="shutting-down",
            reason="Server.SpotInstanceTermination: Spot instance termination",
        ),
        CAP,
        id="aws-reclaimed-shutting-down",
    ),
    # Older providers: "Error waiting for instance (%s) to become ready: Failed to launch
    # instance. Reason: %s" (https://github.com/hashicorp/terraform/pull/14479); the reason is
    # the documented StateReason (constructed from the documented error code).
    pytest.param(
        "aws",
        "Error waiting for instance (i-02feceda8f0eb3927) to become ready: Failed to launch "
        "instance. Reason: " + SPOT_TERMINATION,
        CAP,
        id="aws-reclaimed-old-provider",
    ),
    # Stopped instead of terminated (interruption behaviour stop): API_StateReason docs.
    pytest.param(
        "aws",
        WAIT_CREATE.format(
            state="stopped",
            reason="Server.SpotInstanceShutdown: The instance was stopped because the number "
            "of Spot requests with a maximum price equal to or higher than the Spot price "
            "exceeded available capacity or because of an increase in the Spot price.",
        ),
        CAP,
        id="aws-reclaimed-stopped",
    ),
    # No capacity found after RunInstances accepted the launch: API_StateReason docs.
    pytest.param(
        "aws",
        WAIT_CREATE.format(
            state="terminated",
            reason="Server.InsufficientInstanceCapacity: There was insufficient capacity "
            "available to satisfy the launch request.",
        ),
        CAP,
        id="aws-state-reason-ice",
    ),
    # Spot request resolved to a reclaim: provider source (ec2_spot_instance_request.go, request
    # struct shortened as in https://github.com/osbuild/osbuild-composer/issues/2056); status
    # codes from the spot-request-status docs and
    # https://aws.amazon.com/premiumsupport/knowledge-center/ec2-spot-instance-termination-reasons/
    pytest.param(
        "aws",
        SPOT_REQUEST.format(code="instance-terminated-no-capacity"),
        CAP,
        id="aws-spot-request-terminated-no-capacity",
    ),
    pytest.param(
        "aws",
        SPOT_REQUEST.format(code="marked-for-termination"),
        CAP,
        id="aws-spot-request-marked-for-termination",
    ),
    pytest.param(
        "aws",
        SPOT_REQUEST.format(code="instance-stopped-no-capacity"),
        CAP,
        id="aws-spot-request-stopped-no-capacity",
    ),
    # https://github.com/osbuild/osbuild-composer/pull/4954 (the event subtype says
    # "configuration invalid", the description says no capacity: capacity wins).
    pytest.param(
        "aws",
        "waiting for EC2 Spot Fleet Request (sfr-b6e9637c-8690-44f1-a007-d6f4ee5056d7) "
        "fulfillment: unexpected state 'error', wanted target 'fulfilled'. last error: { "
        'EventInformation: { EventDescription: "t3.medium, ami-00b8cf0e30376f680, Linux/UNIX: '
        'There is no Spot capacity available that matches your request. ", EventSubType: '
        '"spotFleetRequestConfigurationInvalid" }, EventType: "error" }',
        CAP,
        id="aws-spot-fleet-no-capacity",
    ),
    # https://github.com/hortonworks/cloudbreak/pull/11254 ("request configuration" in the text,
    # but UnfulfillableCapacity is a capacity code: EC2 API errors-overview docs).
    pytest.param(
        "aws",
        "Could not launch Spot Instances. UnfulfillableCapacity - Unable to fulfill capacity "
        "due to your request configuration. Please adjust your request and try again.",
        CAP,
        id="aws-unfulfillable-capacity",
    ),
    # Quota: EC2 API error codes docs (VcpuLimitExceeded), in the provider's RunInstances format.
    pytest.param(
        "aws",
        "creating EC2 Instance: operation error EC2: RunInstances, https response error "
        "StatusCode: 400, RequestID: 5d1d4f0a-1111-2222-3333-444455556666, api error "
        "VcpuLimitExceeded: You have requested more vCPU capacity than your current vCPU limit "
        "of 0 allows for the instance bucket that the specified instance type belongs to. "
        "Please visit http://aws.amazon.com/contact-us/ec2-request to request an adjustment to "
        "this limit.",
        QUOTA,
        id="aws-vcpu-limit",
    ),
    # Quota reached after launch: API_StateReason docs (Client.VolumeLimitExceeded).
    pytest.param(
        "aws",
        WAIT_CREATE.format(
            state="terminated",
            reason="Client.VolumeLimitExceeded: The limit on the number of EBS volumes or "
            "total storage was exceeded. Decrease usage or request an increase in your account "
            "limits.",
        ),
        QUOTA,
        id="aws-volume-limit",
    ),
    # Config: https://github.com/hashicorp/terraform/pull/14479 (real StateReason).
    pytest.param(
        "aws",
        "Error waiting for instance (i-02feceda8f0eb3927) to become ready: Failed to launch "
        "instance. Reason: Client.InvalidParameterCombination: Could not create volume with "
        "size 50GiB and iops 32000 from snapshot 'snap-0721118841565684b'",
        CONFIG,
        id="aws-state-reason-config",
    ),
    # Config: EC2 API error codes docs (InsufficientFreeAddressesInSubnet; "Insufficient..." but
    # a subnet that is too small, not the spot market).
    pytest.param(
        "aws",
        "creating EC2 Instance: operation error EC2: RunInstances, https response error "
        "StatusCode: 400, RequestID: 5d1d4f0a-1111-2222-3333-444455556666, api error "
        "InsufficientFreeAddressesInSubnet: The specified subnet does not contain enough free "
        "private IP addresses to fulfill your request.",
        CONFIG,
        id="aws-subnet-full",
    ),
    # API throttling, not a quota to raise:
    # https://github.com/cattle-ops/terraform-aws-gitlab-runner/issues/756
    pytest.param(
        "aws",
        "Error launching instance: RequestLimitExceeded: Request limit exceeded.",
        OTHER,
        id="aws-throttled",
    ),
    # Terminated during create for no stated reason: https://github.com/hashicorp/terraform/issues/14086
    pytest.param(
        "aws",
        WAIT_CREATE.format(state="terminated", reason="%!s(<nil>)"),
        OTHER,
        id="aws-terminated-no-reason",
    ),
    # The guest OS shut itself down (API_StateReason docs): the image or user data, not the spot
    # market; the same would happen in every zone, so not CAPACITY.
    pytest.param(
        "aws",
        WAIT_CREATE.format(
            state="terminated",
            reason="Client.InstanceInitiatedShutdown: The instance was shut down from the "
            "operating system of the instance.",
        ),
        OTHER,
        id="aws-guest-shutdown",
    ),
    # A missing image: hashicorp/aws 5.100.0 looks the AMI up before RunInstances; captured
    # here from `hedgeform apply` with HEDGEFORM_AWS_IMAGES naming an AMI the test emulator
    # does not have (tests/emulators/aws.py, 2026-11-30). The same in every zone: CONFIG.
    pytest.param(
        "aws",
        "collecting instance settings: couldn't find resource",
        CONFIG,
        id="aws-missing-ami",
    ),
]

GCP_ROWS = [
    # Stockout, message and localized message as the provider prints them (provider source);
    # text from https://github.com/kubernetes/k8s.io/issues/9834
    pytest.param(
        "gcp",
        "Error waiting for instance to create: The zone "
        "'projects/k8s-infra-e2e-boskos-gpu-06/zones/us-central1-b' does not have enough "
        "resources available to fulfill the request.  'NULL:0/NULL:0/NULL:0 (state:STOCKOUT)'.\n"
        "A n1-standard-4 VM instance with 1 nvidia-tesla-t4 accelerator(s) is currently "
        "unavailable in the us-central1-b zone. Consider trying your request in the "
        "us-central1-a, us-central1-f zone(s), which currently has capacity to accommodate your "
        "request.",
        CAP,
        id="gcp-stockout-with-details",
    ),
    # https://github.com/cloud-barista/cb-spider/issues/1125
    pytest.param(
        "gcp",
        "Operation errors: The zone 'projects/powerkimhub/zones/us-central1-a' does not have "
        "enough resources available to fulfill the request.  '(resource type:compute)'.",
        CAP,
        id="gcp-stockout-resource-type",
    ),
    # The localized message alone ("configuration" in the text, still capacity):
    # https://github.com/GoogleCloudPlatform/ai-on-gke/issues/849
    pytest.param(
        "gcp",
        "Error waiting for instance to create: A e2-standard-2 VM instance is currently "
        "unavailable in the europe-west4-a zone. Alternatively, you can try your request again "
        "with a different VM hardware configuration or at a later time. For more information, "
        "see the troubleshooting documentation.",
        CAP,
        id="gcp-unavailable-localized",
    ),
    # Preempted while the insert operation ran: operation error message from
    # https://github.com/hashicorp/packer/issues/9133 in the provider's format.
    pytest.param(
        "gcp",
        "Error waiting for instance to create: Instance failed to start due to preemption.",
        CAP,
        id="gcp-preempted-during-create",
    ),
    # Constructed from the documented operation type compute.instances.preempted (Compute
    # Engine "Detecting if a VM was preempted"); no Terraform capture found.
    pytest.param(
        "gcp",
        "Error waiting for instance to create: Instance was preempted "
        "(compute.instances.preempted).",
        CAP,
        id="gcp-preempted-operation-type",
    ),
    # Quota with the details the provider adds (provider source: writeOperationError).
    pytest.param(
        "gcp",
        "Error waiting for instance to create: Quota 'NVIDIA_L4_GPUS' exceeded.  Limit: 0.0 in "
        "region us-central1.\n\tmetric name = compute.googleapis.com/nvidia_l4_gpus\n\tlimit "
        "name = NVIDIA-L4-GPUS-per-project-region\n\tdimensions = map[region:us-central1]",
        QUOTA,
        id="gcp-gpu-quota",
    ),
    # Global GPU quota: message quoted in skypilot-org/skypilot
    # sky/backends/cloud_vm_ray_backend.py (FailoverCloudErrorHandlerV2._gcp_handler).
    pytest.param(
        "gcp",
        "Error waiting for instance to create: Quota 'GPUS_ALL_REGIONS' exceeded.  Limit: 0.0 "
        "globally.",
        QUOTA,
        id="gcp-global-gpu-quota",
    ),
    # Config that mentions preemptible / SPOT:
    # https://github.com/terraform-google-modules/terraform-google-vm/pull/254
    pytest.param(
        "gcp",
        "Error creating instance template: googleapi: Error 400: Invalid value for field "
        "'resource.properties.scheduling.provisioningModel': 'STANDARD'. For preemptible, only "
        "allowed provisioning_model value is SPOT., invalid",
        CONFIG,
        id="gcp-config-mentions-preemptible",
    ),
    # Message from https://github.com/jenkinsci/google-compute-engine-plugin/issues/215 in the
    # googleapi "Error %d: %s, %s" format.
    pytest.param(
        "gcp",
        "Error creating instance: googleapi: Error 400: e2 instances do not support "
        "onHostMaintenance=TERMINATE unless they are preemptible., badRequest",
        CONFIG,
        id="gcp-bad-request",
    ),
    # https://github.com/fastai/course-v3/pull/430 in the googleapi format.
    pytest.param(
        "gcp",
        "Error creating instance: googleapi: Error 404: The resource "
        "'projects/static-protocol-256618/zones/us-west1-b/acceleratorTypes/nvidia-tesla-p4' "
        "was not found, notFound",
        CONFIG,
        id="gcp-accelerator-not-in-zone",
    ),
    # API rate limit (googleapi format, rateLimitExceeded reason; captured from other Google
    # APIs, constructed for Compute): retry later, not a quota to raise, not a config error.
    pytest.param(
        "gcp",
        "Error creating instance: googleapi: Error 403: Rate Limit Exceeded, rateLimitExceeded",
        OTHER,
        id="gcp-rate-limited",
    ),
    # https://github.com/hashicorp/terraform-provider-google/issues/17333
    pytest.param(
        "gcp",
        "Error waiting for Creating Instance: Error code 9, message: Unable to delegate the "
        "access of CMEK. Please try again later.",
        OTHER,
        id="gcp-unknown",
    ),
]

AZURE_ROWS = [
    # azurerm v4+ format: https://github.com/Azure-Samples/azuresandbox/issues/492
    pytest.param(
        "azure",
        'creating Windows Virtual Machine (Subscription: "8e93423f-0000-0000-0000-000000000000"\n'
        'Resource Group Name: "rg-sand-dev-zflz7ap9"\nVirtual Machine Name: "adds1"): performing '
        "CreateOrUpdate: unexpected status 409 (409 Conflict) with error: SkuNotAvailable: The "
        "requested VM size for resource 'Following SKUs have failed for Capacity Restrictions: "
        "Standard_B2ls_v2' is currently not available in location 'eastus2'. Please try another "
        "size or deploy to a different location or different zone. See "
        "https://aka.ms/azureskunotavailable for details.",
        CAP,
        id="azure-sku-not-available",
    ),
    # https://github.com/openshift/release/pull/5182
    pytest.param(
        "azure",
        'Error: Code="ZonalAllocationFailed" Message="Allocation failed. We do not have '
        "sufficient capacity for the requested VM size in this zone. Read more about improving "
        'likelihood of allocation success at http://aka.ms/allocation-guidance"',
        CAP,
        id="azure-zonal-allocation-failed",
    ),
    # https://github.com/vmware-tanzu/community-edition/issues/3963
    pytest.param(
        "azure",
        'Code="AllocationFailed" Message="Allocation failed. We do not have sufficient capacity '
        "for the requested VM size in this region. Read more about improving likelihood of "
        'allocation success at http://aka.ms/allocation-guidance"',
        CAP,
        id="azure-allocation-failed",
    ),
    # Troubleshooting allocation failures docs
    # (https://learn.microsoft.com/troubleshoot/azure/virtual-machines/allocation-failure):
    # "remove some constraints" reads like config, but it is the zone's capacity for this size.
    pytest.param(
        "azure",
        'Code="OverconstrainedZonalAllocationRequest" Message="Allocation failed. VM(s) with the '
        "following constraints cannot be allocated, because the condition is too restrictive. "
        "Please remove some constraints and try again. Constraints applied are: - Networking "
        'Constraints (such as Accelerated Networking or IPv6) - VM Size"',
        CAP,
        id="azure-overconstrained",
    ),
    # Spot VM evicted while being created: the create operation is preempted by the platform's
    # eviction. Text from https://github.com/osbuild/osbuild-composer/issues/1447; reading it as
    # a spot reclaim follows scylladb/scylla-cluster-tests
    # sdcm/provision/azure/virtual_machine_provider.py ("spot instance preemption").
    pytest.param(
        "azure",
        'waiting for creation of Linux Virtual Machine "hf-llama-eastus-1-spot-3" (Resource '
        'Group "rg-hedgeform"): Code="OperationPreempted" Message="Operation execution has been '
        'preempted by a more recent operation."',
        CAP,
        id="azure-preempted-during-create",
    ),
    # Spot price above our max price: error-codes-spot docs (constructed from the documented
    # message; treated like AWS SpotMaxPriceTooLow).
    pytest.param(
        "azure",
        "performing CreateOrUpdate: unexpected status 409 (409 Conflict) with error: "
        "SpotPriceGreaterThanProvidedMaxPrice: Unable to perform operation 'Create VM' since the "
        "provided max price '0.1 USD' is lower than the current spot price '0.2 USD' for Azure "
        "Spot VM size 'Standard_NC4as_T4_v3'.",
        CAP,
        id="azure-spot-price-above-max",
    ),
    # https://github.com/cloud-barista/cb-spider/issues/1558 (message) in the azurerm v4 format.
    pytest.param(
        "azure",
        "performing CreateOrUpdate: unexpected status 409 (409 Conflict) with error: "
        "OperationNotAllowed: Operation could not be completed as it results in exceeding "
        "approved Total Regional Cores quota. Additional details - Deployment Model: Resource "
        "Manager, Location: KoreaSouth, Current Limit: 50, Current Usage: 50, Additional "
        "Required: 2, (Minimum) New Limit Required: 52.",
        QUOTA,
        id="azure-regional-cores-quota",
    ),
    # https://github.com/hashicorp/terraform/issues/10056
    pytest.param(
        "azure",
        "compute.VirtualMachinesClient#CreateOrUpdate: Failure responding to request: "
        "StatusCode=409 -- Original Error: autorest/azure: Service returned an error. "
        'Status=409 Code="OperationNotAllowed" Message="Operation results in exceeding quota '
        'limits of Core. Maximum allowed: 20, Current in use: 20, Additional requested: 2."',
        QUOTA,
        id="azure-core-quota-old",
    ),
    # error-codes-spot docs: config errors that mention Spot (constructed from the documented
    # messages in the azurerm v4 format).
    pytest.param(
        "azure",
        "performing CreateOrUpdate: unexpected status 400 (400 Bad Request) with error: "
        "EvictionPolicyCanBeSetOnlyOnAzureSpotVirtualMachines: Eviction policy can be set only "
        "on Azure Spot Virtual Machines.",
        CONFIG,
        id="azure-eviction-policy-config",
    ),
    pytest.param(
        "azure",
        "performing CreateOrUpdate: unexpected status 409 (409 Conflict) with error: "
        "AzureSpotFeatureNotEnabledForSubscription: Subscription not enabled with Azure Spot "
        "Virtual Machine feature.",
        CONFIG,
        id="azure-spot-not-enabled",
    ),
    # Constructed from the documented error code (ARM common error codes).
    pytest.param(
        "azure",
        'Code="InvalidParameter" Message="The value of parameter imageReference.sku is invalid." '
        'Target="imageReference.sku"',
        CONFIG,
        id="azure-invalid-parameter",
    ),
    # Constructed from the documented error code (Compute internal error): unknown, retry.
    pytest.param(
        "azure",
        'Code="InternalExecutionError" Message="An internal execution error occurred. Please '
        'retry later."',
        OTHER,
        id="azure-internal-error",
    ),
]

LOCAL_ROWS = [
    # The sandbox's refusal: reconciler/sandbox/market.py SpotMarket.try_acquire, printed by
    # reconciler/sandbox/cli.py as "Error: <message>" (exit code 3).
    pytest.param(
        "local",
        "Error: InsufficientInstanceCapacity: no spot capacity in zone local-1a (capacity 0, in "
        "use 2)",
        CAP,
        id="local-no-spot-capacity",
    ),
    # The sandbox cannot reclaim a replica during its launch today (see the note in
    # test_sandbox_reclaim_during_launch_would_be_capacity); if it ever reports one, it speaks
    # AWS codes like its capacity error does. Constructed from the documented AWS code.
    pytest.param(
        "local",
        "Error: replica local-1a-spot-3 reclaimed during launch: Server.SpotInstanceTermination: "
        "no spot capacity in zone local-1a",
        CAP,
        id="local-reclaimed-during-launch",
    ),
    # reconciler/sandbox/market.py SpotMarket._check_zone.
    pytest.param(
        "local",
        "Error: InvalidParameterValue: local-9z is not a sandbox zone (zones: local-1a, "
        "local-1b, local-1c)",
        CONFIG,
        id="local-unknown-zone",
    ),
    # reconciler/sandbox/statefiles.py check_name.
    pytest.param(
        "local",
        "Error: invalid zone 'Local_1A': use 1-63 lowercase letters, digits or '-', starting "
        "with a letter or digit",
        CONFIG,
        id="local-invalid-zone-name",
    ),
    # reconciler/sandbox/statefiles.py check_market.
    pytest.param(
        "local",
        "Error: invalid market 'preemptible': use one of spot, on_demand",
        CONFIG,
        id="local-invalid-market",
    ),
    # reconciler/sandbox/market.py SpotMarket.load_config: no market daemon set up.
    pytest.param(
        "local",
        "Error: no spot market in /tmp/sandbox: start one with `hedgeform sandbox market run "
        "--state-dir /tmp/sandbox`",
        CONFIG,
        id="local-no-market",
    ),
    # reconciler/sandbox/replicas.py launch / _wait_for_port.
    pytest.param(
        "local",
        "Error: replica local-1a-spot-3 is already running in local-1b (spot); stop it first",
        OTHER,
        id="local-already-running",
    ),
    pytest.param(
        "local",
        "Error: replica local-1a-spot-3 exited during launch: OSError: [Errno 98] Address "
        "already in use",
        OTHER,
        id="local-exited-during-launch",
    ),
    pytest.param(
        "local",
        "Error: replica local-1a-spot-3 did not start listening within 15s",
        OTHER,
        id="local-launch-timeout",
    ),
]


@pytest.mark.parametrize(
    ("cloud", "message", "kind"), AWS_ROWS + GCP_ROWS + AZURE_ROWS + LOCAL_ROWS
)
def test_launch_error_table(cloud: str, message: str, kind: FailureKind) -> None:
    assert classify_launch_error(cloud, message) is kind


def test_table_covers_every_kind_per_cloud() -> None:
    rows = {"aws": AWS_ROWS, "gcp": GCP_ROWS, "azure": AZURE_ROWS, "local": LOCAL_ROWS}
    for cloud, table in rows.items():
        kinds = {p.values[2] for p in table}
        assert len(table) >= 8, cloud
        assert {CAP, CONFIG, OTHER} <= kinds, cloud
        if cloud != "local":  # the sandbox has no quotas
            assert QUOTA in kinds, cloud


@pytest.mark.parametrize(
    ("cloud", "message", "kind"),
    [
        # A config code wins over the word "capacity" in its message (constructed).
        (
            "aws",
            "api error InvalidParameterValue: Value (capacity-optimized) for parameter "
            "SpotOptions.AllocationStrategy is invalid.",
            CONFIG,
        ),
        # A config reason wins over "unexpected state 'terminated'" (constructed from the
        # documented code Client.InvalidKMSKey.InvalidState).
        (
            "aws",
            WAIT_CREATE.format(
                state="terminated",
                reason="Client.InvalidKMSKey.InvalidState: The KMS key provided is in an "
                "incorrect state",
            ),
            CONFIG,
        ),
        # A capacity code wins over "configuration" in its message (see the table).
        (
            "aws",
            "UnfulfillableCapacity: Unable to fulfill capacity due to your request configuration.",
            CAP,
        ),
        # Throttling is not quota, though its code ends in LimitExceeded.
        ("aws", "RequestLimitExceeded: Request limit exceeded.", OTHER),
        # "preemptible" in a config error is not a preemption.
        (
            "gcp",
            "googleapi: Error 400: Invalid value for field "
            "'resource.scheduling.preemptible': 'true'. Preemptible instances cannot be "
            "configured to automatically restart., invalid",
            CONFIG,
        ),
        # A 403 that is a rate limit is not a permission problem.
        ("gcp", "googleapi: Error 403: Rate Limit Exceeded, rateLimitExceeded", OTHER),
        # Spot-related config errors on Azure are not spot capacity.
        (
            "azure",
            "AzureSpotVMNotSupportedInAvailabilitySet: Azure Spot Virtual Machine is not "
            "supported in Availability Set.",
            CONFIG,
        ),
        # ...nor is a quota message that names the spot cores.
        (
            "azure",
            'Code="OperationNotAllowed" Message="Operation could not be completed as it results '
            "in exceeding approved LowPriorityCores quota. Additional details - Deployment "
            'Model: Resource Manager, Location: eastus, Current Limit: 0"',
            QUOTA,
        ),
    ],
)
def test_precedence(cloud: str, message: str, kind: FailureKind) -> None:
    assert classify_launch_error(cloud, message) is kind


# -- full Terraform apply output ------------------------------------------------------------

# Colour mode: a spot replica reclaimed during create, next to a config error on another
# replica and a warning. Layout as Terraform 1.x prints diagnostics (see test_capacity.py).
AWS_BOXED = (
    'module.stack.aws_instance.replica["us-east-1a-spot-3"]: Still creating... [40s elapsed]\n'
    "\x1b[31m╷\x1b[0m\x1b[0m\n"
    "\x1b[31m│\x1b[0m \x1b[0m\x1b[1m\x1b[31mError: \x1b[0m\x1b[0m\x1b[1mwaiting for EC2 Instance "
    "(i-0a1b2c3d4e5f60718) create: unexpected state 'terminated', wanted target 'running'. "
    "last error: Server.SpotInstanceTermination: Spot instance termination\x1b[0m\n"
    "\x1b[31m│\x1b[0m \x1b[0m\n"
    "\x1b[31m│\x1b[0m \x1b[0m\x1b[0m  with "
    'module.stack.aws_instance.replica["us-east-1a-spot-3"],\n'
    "\x1b[31m│\x1b[0m \x1b[0m  on ../../modules/aws/main.tf line 206, in resource "
    '"aws_instance" "replica":\n'
    '\x1b[31m│\x1b[0m \x1b[0m 206: resource "aws_instance" "replica" \x1b[4m{\x1b[0m\x1b[0m\n'
    "\x1b[31m│\x1b[0m \x1b[0m\n"
    "\x1b[31m╵\x1b[0m\x1b[0m\n"
    "╷\n"
    "│ Warning: Argument is deprecated\n"
    "│\n"
    '│   with module.stack.aws_instance.replica["us-east-1b-spot-4"],\n'
    "╵\n"
    "╷\n"
    "│ Error: creating EC2 Instance: operation error EC2: RunInstances, https response error "
    "StatusCode: 400, RequestID: 5d1d4f0a-1111-2222-3333-444455556666, api error "
    "InvalidAMIID.NotFound: The image id '[ami-0123456789abcdef0]' does not exist\n"
    "│\n"
    '│   with module.stack.aws_instance.replica["us-east-1c-od-5"],\n'
    '│   on ../../modules/aws/main.tf line 206, in resource "aws_instance" "replica":\n'
    '│  206: resource "aws_instance" "replica" {\n'
    "│\n"
    "╵\n"
)

# -no-color mode: the same layout without the box.
GCP_PLAIN = """\
module.stack.google_compute_instance.replica["us-central1-a-spot-2"]: Still creating... [50s elapsed]

Error: Error waiting for instance to create: Instance failed to start due to preemption.

  with module.stack.google_compute_instance.replica["us-central1-a-spot-2"],
  on ../../modules/gcp/main.tf line 79, in resource "google_compute_instance" "replica":
  79: resource "google_compute_instance" "replica" {


Error: Error waiting for instance to create: Quota 'NVIDIA_L4_GPUS' exceeded.  Limit: 0.0 in region us-central1.
	metric name = compute.googleapis.com/nvidia_l4_gpus
	limit name = NVIDIA-L4-GPUS-per-project-region

  with module.stack.google_compute_instance.replica["us-central1-b-od-3"],
  on ../../modules/gcp/main.tf line 79, in resource "google_compute_instance" "replica":
  79: resource "google_compute_instance" "replica" {

"""  # noqa: E501

AZURE_PLAIN = """\
Error: waiting for creation of Linux Virtual Machine "hf-llama-eastus-2-spot-1" (Resource Group "rg-hedgeform"): Code="OperationPreempted" Message="Operation execution has been preempted by a more recent operation."

  with module.stack.azurerm_linux_virtual_machine.replica["eastus-2-spot-1"],
  on ../../modules/azure/main.tf line 191, in resource "azurerm_linux_virtual_machine" "replica":
 191: resource "azurerm_linux_virtual_machine" "replica" {

"""  # noqa: E501


def test_boxed_apply_output_reclaimed_during_create() -> None:
    failures = parse_apply_errors("aws", AWS_BOXED)
    assert [(f.replica_id, f.zone, f.kind) for f in failures] == [
        ("us-east-1a-spot-3", "us-east-1a", CAP),
        ("us-east-1c-od-5", "us-east-1c", CONFIG),
    ]
    assert failures[0].address == 'module.stack.aws_instance.replica["us-east-1a-spot-3"]'
    result = failures[0].launch_result(Market.SPOT)
    assert result is not None and result.failure is CAP and result.zone == "us-east-1a"
    # What the reconciler asked for wins over what the id or the text says.
    mapped = parse_apply_errors("aws", AWS_BOXED, {"us-east-1a-spot-3": "us-east-1a"})
    assert mapped[0].zone == "us-east-1a"


def test_plain_apply_output_preempted_during_create() -> None:
    failures = parse_apply_errors("gcp", GCP_PLAIN)
    assert [(f.replica_id, f.zone, f.kind) for f in failures] == [
        ("us-central1-a-spot-2", "us-central1-a", CAP),
        ("us-central1-b-od-3", "us-central1-b", QUOTA),
    ]


def test_plain_apply_output_azure_zone_from_replica_id() -> None:
    # Azure messages name no zone; the replica id (<zone>-<market>-<n>) does.
    (failure,) = parse_apply_errors("azure", AZURE_PLAIN)
    assert failure.replica_id == "eastus-2-spot-1"
    assert failure.zone == "eastus-2"
    assert failure.kind is CAP


def test_sandbox_reclaim_during_launch_would_be_capacity() -> None:
    """The sandbox cannot reclaim a spot replica during its launch today: `replicas.launch`
    holds the replica's lock from spawn until the replica listens, and the market's
    `preemption_check` stops replicas through `replicas.stop`, which takes the same lock. So
    the kill waits until the launch has returned; Terraform sees a successful create and the
    reclaim arrives as a `warning`/`preempted` notice. Should the sandbox ever fail a launch
    for it, an AWS-style reason in the local-exec output classifies as CAPACITY for the zone."""
    output = (
        'null_resource.replica["local-1a-spot-3"] (local-exec): Error: replica '
        "local-1a-spot-3 reclaimed during launch: Server.SpotInstanceTermination: no spot "
        "capacity in zone local-1a\n"
        "\n"
        "Error: local-exec provisioner error\n"
        "\n"
        '  with module.stack.null_resource.replica["local-1a-spot-3"],\n'
        '  on ../../modules/local/main.tf line 25, in resource "null_resource" "replica":\n'
        '  25:   provisioner "local-exec" {\n'
        "\n"
        "Error running command 'sandbox replica launch': exit status 3. Output: Error: replica\n"
        "local-1a-spot-3 reclaimed during launch: Server.SpotInstanceTermination: no spot\n"
        "capacity in zone local-1a\n"
        "\n"
    )
    (failure,) = parse_apply_errors("local", output)
    assert (failure.replica_id, failure.zone, failure.kind) == ("local-1a-spot-3", "local-1a", CAP)
