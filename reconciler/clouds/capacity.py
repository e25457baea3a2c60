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

from reconciler.clouds.base import CAP, CONFIG, OTHER, QUOTA, LaunchErrorRule, launch_error_rules
from reconciler.clouds.registry import CLOUDS
from reconciler.policy.observation import Market
from reconciler.policy.signals import FailureKind, LaunchResult

# The sandbox cloud speaks AWS codes on purpose (its CapacityError message), plus its own
# usage errors (reconciler/sandbox/statefiles.py, market.py).
LOCAL_RULES = (
    *CLOUDS["aws"].launch_errors,
    *launch_error_rules(
        (r"unknown zone|no such zone|invalid (?:market|zone|replica id)\b", CONFIG),
        (r"no spot market in\b", CONFIG),
    ),
)
LOCAL_ZONE_PATTERNS = (re.compile(r"\b(local-\d+[a-z])\b"),)


def _rules_of(cloud: str) -> tuple[LaunchErrorRule, ...] | None:
    if cloud == "local":
        return LOCAL_RULES
    known = CLOUDS.get(cloud)
    return known.launch_errors if known is not None else None


def _zone_patterns_of(cloud: str) -> tuple[re.Pattern[str], ...]:
    if cloud == "local":
        return LOCAL_ZONE_PATTERNS
    known = CLOUDS.get(cloud)
    if known is not None:
        return known.zone_patterns
    return (*(p for c in CLOUDS.values() for p in c.zone_patterns), *LOCAL_ZONE_PATTERNS)


def classify_launch_error(cloud: str, message: str) -> FailureKind:
    """Why a launch in `cloud` failed, from the error text Terraform (or the SDK) printed.

    An unknown cloud is checked against every cloud's rules (each in its own order), and the
    most specific answer wins, capacity first.
    """
    text = " ".join(message.split())
    rules = _rules_of(cloud.lower())
    if rules is None:
        kinds = (_first_match(c.launch_errors, text) for c in CLOUDS.values())
        return min(kinds, key=lambda kind: _PRECEDENCE[kind])
    return _first_match(rules, text)


def _first_match(rules: tuple[LaunchErrorRule, ...], text: str) -> FailureKind:
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
    patterns = _zone_patterns_of(cloud)
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
