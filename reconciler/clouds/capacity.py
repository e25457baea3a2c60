"""Classify failed launches from Terraform apply output, per cloud.

Only CAPACITY says something about a zone's spot market: the placer marks the zone PREEMPTED
for it. SkyServe marks a zone on *any* launch failure, so a typo in an image id or an exhausted
GPU quota walks the placer through every zone; quota and config errors must not do that. A spot
instance reclaimed while Terraform was still creating it is CAPACITY too: the zone's market said
no, so the placer replaces it elsewhere instead of failing the stack.

Where the rule texts come from (each test row in tests/adapters/test_launch_error_table.py
names its source):

- AWS: the EC2 API error codes and `StateReason` messages (docs.aws.amazon.com, API_StateReason
  and errors-overview), the spot request status codes (UserGuide spot-request-status), and the
  hashicorp/terraform-provider-aws formats that wrap them: `creating EC2 Instance: ...`,
  `waiting for EC2 Instance (i-...) create: unexpected state 'terminated', wanted target
  'running'. last error: <StateReason message>` (ec2_instance.go, wait.go) and `Error while
  waiting for spot request (...) to resolve: unexpected state '<status code>'`.
- GCP: Compute Engine operation error messages as hashicorp/terraform-provider-google prints
  them (compute_operation.go prints each error's message, localized message and quota details,
  not its code), and googleapi `Error <status>: <message>, <reason>` errors.
- Azure: ARM/Compute error codes (allocation-failure troubleshooting, error-codes-spot) in the
  azurerm formats `Code="..." Message="..."` and `unexpected status 409 ... with error: Code:`.
- local: the sandbox's own messages (reconciler/sandbox), which reuse AWS codes on purpose.

Captures from public issues and from SkyPilot's failover handler
(sky/backends/cloud_vm_ray_backend.py) were read for the wording; the rules are our own.

Pure functions: no I/O, so the reconciler and the tests can feed them any text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from reconciler.policy.observation import Market
from reconciler.policy.signals import FailureKind, LaunchResult

_Rule = tuple[re.Pattern[str], FailureKind]


def _rules(*pairs: tuple[str, FailureKind]) -> tuple[_Rule, ...]:
    return tuple((re.compile(pattern, re.IGNORECASE), kind) for pattern, kind in pairs)


CAP, QUOTA, CONFIG, OTHER = (
    FailureKind.CAPACITY,
    FailureKind.QUOTA,
    FailureKind.CONFIG,
    FailureKind.OTHER,
)

# First match wins. Each cloud's rules come in tiers:
#   1. "retry later" codes (throttling): OTHER, before any word that looks like a quota;
#   2. capacity and reclaim *codes*: CAPACITY;
#   3. quota codes: QUOTA;
#   4. configuration codes: CONFIG;
#   5. capacity and reclaim *phrases* (free text without a code): CAPACITY. They come after the
#      config codes, so a config error whose message says "capacity" or "preemptible" stays
#      CONFIG, while a capacity code whose message says "configuration" stays CAPACITY;
#   6. generic quota words: QUOTA.
_AWS = _rules(
    # 1. API throttling: the code ends in LimitExceeded, but there is no quota to raise.
    (r"RequestLimitExceeded|\bThrottling(?:Exception)?\b", OTHER),
    # 2. No capacity at launch (RunInstances codes; spot request status codes).
    (r"InsufficientInstanceCapacity|InsufficientCapacity\b|InsufficientHostCapacity", CAP),
    (r"UnfulfillableCapacity|capacity-not-available|capacity-oversubscribed", CAP),
    # Reclaimed while Terraform was still creating it: the instance's StateReason (the
    # provider's "last error") or the spot request's status when the waiter gave up.
    (r"Server\.SpotInstance(?:Termination|Shutdown)\b", CAP),
    (r"instance-(?:terminated|stopped)-no-capacity|marked-for-(?:termination|stop)\b", CAP),
    # A spot price above our max price: no spot *at our price* in this zone, a market signal
    # like a stockout (the module sets no max price, so this only appears if a user adds one).
    (r"SpotMaxPriceTooLow|price-too-low|instance-(?:terminated|stopped)-by-price", CAP),
    # In reality an account-wide limit on running spot instances (a quota), but DESIGN §5 lists
    # it with the capacity errors and SkyServe treats it so; followed here, see docs/clouds.md.
    (r"MaxSpotInstanceCountExceeded", CAP),
    # 3. Quota.
    (r"VcpuLimitExceeded|InstanceLimitExceeded|MaxSpotFleetRequestCountExceeded", QUOTA),
    (r"VolumeLimitExceeded", QUOTA),
    # 4. Configuration (ours, the same in every zone).
    (r"InvalidParameter\w*|InvalidAMIID\.\w+|InvalidSubnetID\.\w+|InvalidGroup\.\w+", CONFIG),
    (r"InvalidKeyPair\.\w+|InvalidInstanceType|Unsupported\b|UnauthorizedOperation", CONFIG),
    (r"OptInRequired|AuthFailure|InvalidBlockDeviceMapping|MissingParameter", CONFIG),
    (r"InvalidKMSKey\.\w+|InvalidSnapshot\.\w+|\bbad-parameters\b", CONFIG),
    # A subnet too small for another instance: "Insufficient..." but not the spot market.
    (r"InsufficientFreeAddressesInSubnet", CONFIG),
    # 5. Capacity phrases (e.g. a spot fleet's event description).
    (r"no Spot capacity available", CAP),
    # 6. Quota words.
    (r"\bquota\b|LimitExceeded", QUOTA),
)
# Not CAPACITY on purpose: `Client.InstanceInitiatedShutdown` (the guest OS powered off: the
# image or user data, the same in every zone) and a terminated instance with no StateReason
# (`last error: %!s(<nil>)`): nothing says the market did it, so they stay OTHER.

_GCP = _rules(
    # 1. API rate limits ("Error 403: Rate Limit Exceeded, rateLimitExceeded"): not permission.
    (r"rateLimitExceeded|Rate Limit Exceeded", OTHER),
    # 2. Stockout: the operation's message and the localized message that comes with it.
    (r"ZONE_RESOURCE_POOL_EXHAUSTED(_WITH_DETAILS)?|resource pool exhausted|STOCKOUT", CAP),
    (r"does not have enough resources available", CAP),
    (r"is currently unavailable in the [a-z]+-[a-z]+\d+-[a-z] zone", CAP),
    # 3. Quota.
    (r"QUOTA_EXCEEDED|quotaExceeded|Quota '[^']*' exceeded", QUOTA),
    # 4. Configuration.
    (r"Invalid value for field|invalidParameter|badRequest|\bError 400\b", CONFIG),
    (r"does not exist in zone|was not found|\bnotFound\b|\bError 404\b", CONFIG),
    (r"\bError 403\b|forbidden|permission", CONFIG),
    # 5. A spot VM preempted while the insert operation ran ("Instance failed to start due to
    # preemption."). "preemptible" in a config error does not match.
    (r"due to preemption|\bpreempted\b", CAP),
)

_AZURE = _rules(
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

# The sandbox cloud speaks AWS codes on purpose (its CapacityError message), plus its own
# usage errors (reconciler/sandbox/statefiles.py, market.py).
_LOCAL = (
    *_AWS,
    *_rules(
        (r"unknown zone|no such zone|invalid (?:market|zone|replica id)\b", CONFIG),
        (r"no spot market in\b", CONFIG),
    ),
)

_BY_CLOUD: dict[str, tuple[_Rule, ...]] = {
    "aws": _AWS,
    "gcp": _GCP,
    "azure": _AZURE,
    "local": _LOCAL,
}


def classify_launch_error(cloud: str, message: str) -> FailureKind:
    """Why a launch in `cloud` failed, from the error text Terraform (or the SDK) printed.

    An unknown cloud is checked against every cloud's rules (each in its own order), and the
    most specific answer wins, capacity first.
    """
    text = " ".join(message.split())
    rules = _BY_CLOUD.get(cloud.lower())
    if rules is None:
        kinds = (_first_match(r, text) for r in (_AWS, _GCP, _AZURE))
        return min(kinds, key=lambda kind: _PRECEDENCE[kind])
    return _first_match(rules, text)


def _first_match(rules: tuple[_Rule, ...], text: str) -> FailureKind:
    for pattern, kind in rules:
        if pattern.search(text):
            return kind
    return OTHER


_PRECEDENCE = {CAP: 0, QUOTA: 1, CONFIG: 2, OTHER: 3}


# -- Terraform apply output -> per-zone failures ---------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_ADDRESS = re.compile(
    r"^\s*with ((?:module\.[\w-]+(?:\[[^\]]+\])?\.)*[\w-]+\.[\w-]+(?:\[[^\]]+\])?),"
)
_INDEX_KEY = re.compile(r'\[("?)([^\]"]+)\1\]$')
# Hedgeform's replica ids are `<zone>-spot-<n>` / `<zone>-od-<n>` (reconciler.policy.changes).
_REPLICA_ID_ZONE = re.compile(r"^([a-z0-9][a-z0-9-]*?)-(?:spot|od)-\d+$")

_ZONES: dict[str, tuple[re.Pattern[str], ...]] = {
    # "the Availability Zone you requested (us-east-1a)" names the failed zone; the same
    # message also lists *other* zones to try, so it wins over the generic pattern.
    "aws": (
        re.compile(r"Availability Zone you requested \(([a-z]{2}(?:-gov)?-[a-z]+-\d[a-z])\)"),
        re.compile(r"\b([a-z]{2}(?:-gov)?-[a-z]+-\d[a-z])\b"),
    ),
    "gcp": (
        re.compile(r"zones/([a-z]+-[a-z]+\d+-[a-z])\b"),
        re.compile(r"\b([a-z]+-[a-z]+\d+-[a-z])\b"),
    ),
    # Azure zones are numbers within a location; Hedgeform names them `<location>-<n>`.
    "azure": (re.compile(r"location '([a-z0-9]+)' zones? '(\d)'"),),
    "local": (re.compile(r"\b(local-\d+[a-z])\b"),),
}


@dataclass(frozen=True, slots=True)
class ApplyFailure:
    """One error diagnostic of a Terraform apply, with what could be recovered from it."""

    kind: FailureKind
    message: str  # the diagnostic, on one line
    zone: str | None = None
    address: str | None = None  # e.g. module.replicas.aws_instance.replica["r-3"]
    replica_id: str | None = None  # the for_each key of the address, when it has one

    def launch_result(self, market: Market) -> LaunchResult | None:
        """The policy's view of this failure; None when the zone is unknown (the policy can
        only act on a failure it can place)."""
        if self.zone is None:
            return None
        return LaunchResult(self.zone, market, ok=False, failure=self.kind, message=self.message)


def parse_apply_errors(
    cloud: str,
    output: str,
    replica_zones: Mapping[str, str] | None = None,
) -> list[ApplyFailure]:
    """Best effort: split `terraform apply` output (colour or `-no-color`) into its error
    diagnostics, classify each, and find its zone.

    The zone comes from `replica_zones` (replica id -> zone, what the reconciler asked for)
    when the diagnostic's resource address has a for_each key, else from the replica id
    itself (`<zone>-spot-<n>`), else from the message text.
    """
    failures: list[ApplyFailure] = []
    for block in _error_blocks(output):
        text = " ".join(" ".join(block).split())
        address = None
        for line in block:
            match = _ADDRESS.match(line)
            if match:
                address = match.group(1)
                break
        replica_id = None
        if address is not None:
            key = _INDEX_KEY.search(address)
            replica_id = key.group(2) if key else None
        zone = None
        if replica_id is not None and replica_zones:
            zone = replica_zones.get(replica_id)
        if zone is None and replica_id is not None:
            named = _REPLICA_ID_ZONE.match(replica_id)
            zone = named.group(1) if named else None
        if zone is None:
            zone = _zone_in(cloud.lower(), text)
        failures.append(
            ApplyFailure(
                kind=classify_launch_error(cloud, text),
                message=text,
                zone=zone,
                address=address,
                replica_id=replica_id,
            )
        )
    return failures


def _zone_in(cloud: str, text: str) -> str | None:
    patterns = _ZONES.get(cloud) or tuple(p for ps in _ZONES.values() for p in ps)
    for pattern in patterns:
        match = pattern.search(text)
        if match:
            return "-".join(match.groups())
    return None


def _error_blocks(output: str) -> list[list[str]]:
    """Lines of each `Error:` diagnostic. Boxed (╷ │ ╵, colour mode) or plain (`-no-color`:
    an `Error:` line at column 0 after a blank line; a nested `Error:` in wrapped command
    output does not start a block)."""
    lines = [_ANSI.sub("", line).rstrip() for line in output.splitlines()]
    blocks: list[list[str]] = []
    current: list[str] | None = None
    boxed = header_seen = False
    previous_blank = True
    for raw in lines:
        if raw.startswith(("╷", "╵")):
            boxed, header_seen, current, previous_blank = raw.startswith("╷"), False, None, True
            continue
        if boxed:
            line = raw[1:].removeprefix(" ") if raw.startswith("│") else raw
            if not header_seen and line.strip():
                header_seen = True  # the box's first line is its header: Error: or Warning:
                current = [line.removeprefix("Error: ")] if line.startswith("Error: ") else None
                if current is not None:
                    blocks.append(current)
            elif current is not None:
                current.append(line)
            continue
        if raw.startswith(("Error: ", "Warning: ")) and previous_blank:
            current = [raw.removeprefix("Error: ")] if raw.startswith("Error: ") else None
            if current is not None:
                blocks.append(current)
        elif current is not None:
            current.append(raw)
        previous_blank = not raw.strip()
    return blocks
