"""How Azure's launch errors are classified (clouds/capacity.py explains the kinds and where
the texts come from; tests/adapters/test_launch_error_table.py holds a row per source)."""

from __future__ import annotations

import re

from reconciler.clouds.base import CAP, CONFIG, OTHER, QUOTA, launch_error_rules

RULES = launch_error_rules(
    # 1. Throttling.
    (r"TooManyRequests", OTHER),
    # 2. No capacity for this size in this zone or region, or spot above our max price.
    (r"SkuNotAvailable|ZonalAllocationFailed|AllocationFailed", CAP),
    (r"Overconstrained(Zonal)?AllocationRequest|SpotPriceGreaterThanProvidedMaxPrice", CAP),
    # A spot VM evicted while being created: the platform's eviction preempts the create
    # operation ("Operation execution has been preempted by a more recent operation."). In
    # general the code means any newer operation on the resource; Terraform is the only other
    # writer of our VMs, so on a replica it is read as a reclaim (ScyllaDB's Azure provisioner
    # does the same). A wrong guess marks one zone for a while; the stack does not fail.
    (r"OperationPreempted", CAP),
    # 3. Quota.
    (r"QuotaExceeded|OperationNotAllowed.*\bquota\b|exceeding (?:approved [\w ]+ )?quota", QUOTA),
    # 4. Configuration, including spot settings the VM or subscription does not allow.
    (r"InvalidParameter|InvalidTemplate\w*|InvalidResourceReference|BadRequest", CONFIG),
    (r"AuthorizationFailed|InvalidAuthenticationToken|ResourceNotFound|ImageNotFound", CONFIG),
    (r"AzureSpot\w*Not\w*|EvictionPolicyCanBeSetOnly\w*|VMPriorityCannotBeApplied", CONFIG),
    (r"MaxPriceValueInvalid|MaxPriceChangeNotAllowed\w*|does not support Azure Spot", CONFIG),
)

# Azure zones are numbers within a location; Hedgeform names them `<location>-<n>`.
ZONE_PATTERNS = (re.compile(r"location '([a-z0-9]+)' zones? '(\d)'"),)
