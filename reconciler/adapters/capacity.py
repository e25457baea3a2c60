"""Classify failed launches from Terraform apply output, per cloud.

Only CAPACITY says something about a zone's spot market: the placer marks the zone PREEMPTED
for it. SkyServe marks a zone on *any* launch failure, so a typo in an image id or an exhausted
GPU quota walks the placer through every zone; quota and config errors must not do that.

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


CAP, QUOTA, CONFIG = FailureKind.CAPACITY, FailureKind.QUOTA, FailureKind.CONFIG

# First match wins, so the specific codes come before the generic words.
_AWS = _rules(
    (r"InsufficientInstanceCapacity|InsufficientCapacity\b|InsufficientHostCapacity", CAP),
    (r"UnfulfillableCapacity|capacity-not-available|capacity-oversubscribed", CAP),
    # A spot price above our max price: no spot *at our price* in this zone, a market signal
    # like a stockout (the module sets no max price, so this only appears if a user adds one).
    (r"SpotMaxPriceTooLow|price-too-low", CAP),
    # In reality an account-wide limit on running spot instances (a quota), but DESIGN §5 lists
    # it with the capacity errors and SkyServe treats it so; followed here, see docs/clouds.md.
    (r"MaxSpotInstanceCountExceeded", CAP),
    (r"VcpuLimitExceeded|InstanceLimitExceeded|MaxSpotFleetRequestCountExceeded", QUOTA),
    (r"\bquota\b|LimitExceeded", QUOTA),
    (r"InvalidParameter\w*|InvalidAMIID\.\w+|InvalidSubnetID\.\w+|InvalidGroup\.\w+", CONFIG),
    (r"InvalidKeyPair\.\w+|InvalidInstanceType|Unsupported\b|UnauthorizedOperation", CONFIG),
    (r"OptInRequired|AuthFailure|InvalidBlockDeviceMapping|MissingParameter", CONFIG),
)

_GCP = _rules(
    (r"ZONE_RESOURCE_POOL_EXHAUSTED(_WITH_DETAILS)?|resource pool exhausted|STOCKOUT", CAP),
    (r"does not have enough resources available", CAP),
    (r"QUOTA_EXCEEDED|quotaExceeded|Quota '[^']*' exceeded", QUOTA),
    (r"Invalid value for field|invalidParameter|badRequest|\bError 400\b", CONFIG),
    (r"does not exist in zone|was not found|\bnotFound\b|\bError 404\b", CONFIG),
    (r"\bError 403\b|forbidden|permission", CONFIG),
)

_AZURE = _rules(
    (r"SkuNotAvailable|ZonalAllocationFailed|AllocationFailed", CAP),
    (r"Overconstrained(Zonal)?AllocationRequest", CAP),
    (r"QuotaExceeded|OperationNotAllowed.*\bquota\b|exceeding approved \w+ quota", QUOTA),
    (r"InvalidParameter|InvalidTemplate\w*|InvalidResourceReference|BadRequest", CONFIG),
    (r"AuthorizationFailed|InvalidAuthenticationToken|ResourceNotFound|ImageNotFound", CONFIG),
)

# The sandbox cloud speaks AWS codes on purpose (its CapacityError message), plus its own
# usage errors.
_LOCAL = (*_AWS, *_rules((r"unknown zone|no such zone|invalid market", CONFIG)))

_BY_CLOUD: dict[str, tuple[_Rule, ...]] = {
    "aws": _AWS,
    "gcp": _GCP,
    "azure": _AZURE,
    "local": _LOCAL,
}


def classify_launch_error(cloud: str, message: str) -> FailureKind:
    """Why a launch in `cloud` failed, from the error text Terraform (or the SDK) printed.

    An unknown cloud is checked against every cloud's rules, capacity first.
    """
    rules = _BY_CLOUD.get(cloud.lower())
    if rules is None:
        rules = tuple(sorted((*_AWS, *_GCP, *_AZURE), key=lambda rule: _PRECEDENCE[rule[1]]))
    text = " ".join(message.split())
    for pattern, kind in rules:
        if pattern.search(text):
            return kind
    return FailureKind.OTHER


_PRECEDENCE = {CAP: 0, QUOTA: 1, CONFIG: 2, FailureKind.OTHER: 3}


# -- Terraform apply output -> per-zone failures ---------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_ADDRESS = re.compile(
    r"^\s*with ((?:module\.[\w-]+(?:\[[^\]]+\])?\.)*[\w-]+\.[\w-]+(?:\[[^\]]+\])?),"
)
_INDEX_KEY = re.compile(r'\[("?)([^\]"]+)\1\]$')

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
    when the diagnostic's resource address has a for_each key, else from the message text.
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
