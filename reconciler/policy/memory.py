"""What the policy remembers between ticks, as plain data that round-trips through JSON.

SkyServe keeps this in process memory and loses it on restart; here it is passed into
`decide` and returned, and the loop persists it in `state/<service>/reconciler.json`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from reconciler.errors import MemoryFormatError
from reconciler.policy.observation import Market
from reconciler.spec.fields import ACCELERATOR_NAME
from reconciler.spec.service import MAX_REPLICAS

FORMAT_VERSION = 3
# Version 1 lacks the lifecycle and backoff fields, version 2 the service versions: they
# start empty (a fleet from before versions runs version 1, policy/rollout.py).
READABLE_VERSIONS = (1, 2, 3)


class ZoneStatus(StrEnum):
    ACTIVE = "active"
    PREEMPTED = "preempted"


@dataclass(frozen=True, slots=True)
class Backoff:
    """Consecutive failures of one kind somewhere, and when to try there again.

    `kind` names the failure (`capacity`, or a FAILED_* replica state), `count` how many in a
    row, `last_at` when the latest happened and `retry_at` the earliest time (seconds, the
    policy's clock) a launch may go there again.
    """

    kind: str
    count: int
    last_at: float
    retry_at: float

    def blocks(self, now: float) -> bool:
        return now < self.retry_at

    def to_json(self) -> list[Any]:
        return [self.kind, self.count, self.last_at, self.retry_at]

    @classmethod
    def from_json(cls, raw: Any) -> Backoff:
        kind, count, last_at, retry_at = raw
        if not 1 <= int(count) <= 1_000_000:
            raise ValueError(f"backoff count {count!r} is not from 1 to 1000000")
        return cls(str(kind), int(count), _time(last_at), _time(retry_at))


VERSION_STATES = ("rolling", "ready", "failed", "superseded")


@dataclass(frozen=True, slots=True)
class Version:
    """One version of a service (policy/rollout.py): `number` counts every change of the
    spec; `runs` is the number replicas of this version carry, the version whose replica
    fingerprint it shares (itself when what a replica runs changed, an earlier one when only
    the `service:` section did). `fingerprint` and `replica_fingerprint` are opaque digests
    the engine computes; `mode` and `max_surge` say how it rolls out; `state` is `rolling`
    until the fleet reached it, then `ready`; `failed` (with `reason`) when it was rolled
    back; `superseded` when another version came before it was ready."""

    number: int
    runs: int
    fingerprint: str
    replica_fingerprint: str
    since: float
    mode: str = "rolling"
    max_surge: int | None = None
    state: str = "rolling"
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "runs": self.runs,
            "fingerprint": self.fingerprint,
            "replica_fingerprint": self.replica_fingerprint,
            "since": self.since,
            "mode": self.mode,
            "max_surge": self.max_surge,
            "state": self.state,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Version:
        number = _count("version number", raw["number"], MAX_LAUNCH_SEQ)
        runs = _count("version runs", raw["runs"], number)
        if number < 1 or runs < 1:
            raise ValueError(f"version {number} runs {runs}: versions count from 1")
        if raw["state"] not in VERSION_STATES or raw["mode"] not in ("rolling", "blue_green"):
            raise ValueError(f"version {number}: unknown state or mode")
        surge = raw.get("max_surge")
        return cls(
            number=number,
            runs=runs,
            fingerprint=str(raw["fingerprint"]),
            replica_fingerprint=str(raw["replica_fingerprint"]),
            since=_time(raw["since"]),
            mode=str(raw["mode"]),
            max_surge=None if surge is None else _count("max_surge", surge, MAX_REPLICAS),
            state=str(raw["state"]),
            reason=str(raw.get("reason", "")),
        )


@dataclass(frozen=True)
class Memory:
    target: int | None = None  # the autoscaler's current target; None: not yet decided
    upscale_since: float | None = None  # when the load first asked for more, continuously
    downscale_since: float | None = None  # when the load first asked for fewer, continuously
    zone_status: Mapping[str, ZoneStatus] = field(default_factory=dict)  # the spot placer
    launch_seq: int = 0  # numbers new replicas and rotates ties, so no randomness is needed
    # (replica_id, zone, at) of preemptions already acted on; kept an hour to dedupe notices.
    recent_preemptions: tuple[tuple[str, str, float], ...] = ()
    # (replica_id, at) of replicas under a preemption warning that are still alive.
    warned: tuple[tuple[str, float], ...] = ()
    # Replica lifecycle (policy/lifecycle.py): replicas that passed readiness at least once,
    # when each such replica's probes started failing, and the sticky FAILED_* verdicts.
    ready_once: frozenset[str] = frozenset()
    failing_since: Mapping[str, float] = field(default_factory=dict)
    # Since when each replica has been READY without a break (a rollout trusts a replica
    # only after MIN_READY_SECONDS of it, policy/rollout.py).
    ready_since: Mapping[str, float] = field(default_factory=dict)
    failed: Mapping[str, str] = field(default_factory=dict)
    # Crash loops per "<zone>/<market>" (replicas failing the same way again and again), and
    # spot capacity refusals per zone: where not to launch before `retry_at`.
    crash_backoff: Mapping[str, Backoff] = field(default_factory=dict)
    zone_backoff: Mapping[str, Backoff] = field(default_factory=dict)
    # Service versions (policy/rollout.py): the history (oldest first, bounded), the version
    # the fleet is moving to, the last one that reached the target ready, and how many
    # replicas of the version rolling out have failed so far.
    versions: tuple[Version, ...] = ()
    version: int = 1
    stable_version: int | None = None
    rollout_failures: int = 0
    # The adaptive spare (policy/spare_risk.py): the last COLD_STARTS_KEPT measured cold starts
    # (launch to the decision that first saw the replica READY, oldest first), and until when
    # a late notice keeps the spare.
    cold_starts: tuple[float, ...] = ()
    spare_until: float | None = None
    # Several GPU types (policy/mixed.py): each type's own SpotHedge memory, by type name, in
    # the order the mix first named them. Empty for a service of one type.
    groups: tuple[tuple[str, Memory], ...] = ()

    @property
    def cold_start_s(self) -> float | None:
        """The cold start the spare is judged against: the longest of the last few measured
        (one fast start must not drop the spare), None before any."""
        return max(self.cold_starts) if self.cold_starts else None

    def to_json(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "target": self.target,
            "upscale_since": self.upscale_since,
            "downscale_since": self.downscale_since,
            "zone_status": {z: s.value for z, s in sorted(self.zone_status.items())},
            "launch_seq": self.launch_seq,
            "recent_preemptions": [list(p) for p in self.recent_preemptions],
            "warned": [list(w) for w in self.warned],
            "ready_once": sorted(self.ready_once),
            "failing_since": dict(sorted(self.failing_since.items())),
            "ready_since": dict(sorted(self.ready_since.items())),
            "failed": dict(sorted(self.failed.items())),
            "crash_backoff": {k: b.to_json() for k, b in sorted(self.crash_backoff.items())},
            "zone_backoff": {k: b.to_json() for k, b in sorted(self.zone_backoff.items())},
            "versions": [v.to_json() for v in self.versions],
            "current_version": self.version,
            "stable_version": self.stable_version,
            "rollout_failures": self.rollout_failures,
            "cold_starts": list(self.cold_starts),
            "spare_until": self.spare_until,
            # Only when set: a service of one type keeps the record it always had.
            **({"groups": {n: m.to_json() for n, m in self.groups}} if self.groups else {}),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Memory:
        if not isinstance(data, Mapping):
            raise MemoryFormatError(f"memory must be a JSON object, got {type(data).__name__}")
        if data.get("version") not in READABLE_VERSIONS:
            raise MemoryFormatError(
                f"memory format version {data.get('version')!r} is not one of "
                f"{', '.join(map(str, READABLE_VERSIONS))}"
            )
        try:
            return cls(
                target=_target(data["target"]),
                upscale_since=_opt_float(data["upscale_since"]),
                downscale_since=_opt_float(data["downscale_since"]),
                zone_status={str(z): ZoneStatus(s) for z, s in data["zone_status"].items()},
                launch_seq=_count("launch_seq", data["launch_seq"], MAX_LAUNCH_SEQ),
                recent_preemptions=tuple(
                    (str(r), str(z), float(at)) for r, z, at in data["recent_preemptions"]
                ),
                warned=tuple((str(r), float(at)) for r, at in data["warned"]),
                ready_once=frozenset(str(r) for r in data.get("ready_once", ())),
                failing_since={
                    str(r): _time(at) for r, at in dict(data.get("failing_since", {})).items()
                },
                ready_since={
                    str(r): _time(at) for r, at in dict(data.get("ready_since", {})).items()
                },
                failed={str(r): _verdict(s) for r, s in dict(data.get("failed", {})).items()},
                crash_backoff={
                    _crash_key(k): Backoff.from_json(b)
                    for k, b in dict(data.get("crash_backoff", {})).items()
                },
                zone_backoff={
                    str(k): Backoff.from_json(b)
                    for k, b in dict(data.get("zone_backoff", {})).items()
                },
                **_versions(data),
                cold_starts=_cold_starts(data.get("cold_starts", [])),
                spare_until=_opt_time("spare_until", data.get("spare_until")),
                groups=_groups(data.get("groups", {})),
            )
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            what = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
            raise MemoryFormatError(f"malformed memory: {what}") from exc


MAX_GROUPS = 32  # GPU types in one service: far more than any cloud offers for one model


def _groups(value: Any) -> tuple[tuple[str, Memory], ...]:
    """Each GPU type's memory; one level deep (a group holds no groups)."""
    if not isinstance(value, Mapping) or len(value) > MAX_GROUPS:
        raise ValueError(f"groups: expected an object of at most {MAX_GROUPS} GPU types")
    found = []
    for name, raw in value.items():
        if not isinstance(name, str) or not ACCELERATOR_NAME.fullmatch(name):
            raise ValueError(f"groups: {name!r} is not a GPU type name")
        if isinstance(raw, Mapping) and raw.get("groups"):
            raise ValueError(f"groups.{name}: a GPU type's memory holds no groups")
        try:
            found.append((name, Memory.from_json(raw)))
        except MemoryFormatError as exc:
            raise ValueError(f"groups.{name}: {exc}") from None
    return tuple(found)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _target(value: Any) -> int | None:
    """A replica count the spec could ask for (0 to MAX_REPLICAS), or None."""
    return None if value is None else _count("target", value, MAX_REPLICAS)


# Replica ids carry the launch number (<zone>-spot-<n>); a billion launches is decades of
# churn, and keeps ids well inside Terraform's and the clouds' name limits.
MAX_LAUNCH_SEQ = 10**9


def _count(name: str, value: Any, maximum: int) -> int:
    """A whole number from 0 to `maximum` as JSON writes it (not a float, not a boolean)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise ValueError(f"{name} {value!r} is not a whole number from 0 to {maximum}")
    return value


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


COLD_STARTS_KEPT = 5
_COLD_START_MAX_S = 86_400.0  # a day: longer is no cold start (SkyServe's initial delay is 20 min)


def _json_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}: {value!r} is not a number")
    return float(value)


def _opt_time(name: str, value: Any) -> float | None:
    """A time since the epoch within the clock's range (as `_time`), or None."""
    if value is None:
        return None
    t = _json_number(name, value)
    if not (math.isfinite(t) and _TIME_RANGE[0] <= t <= _TIME_RANGE[1]):
        raise ValueError(f"{name}: {value!r} is not a finite time since the epoch")
    return t


def _cold_starts(value: Any) -> tuple[float, ...]:
    if not isinstance(value, list) or len(value) > COLD_STARTS_KEPT:
        raise ValueError(f"cold_starts: expected a list of at most {COLD_STARTS_KEPT} numbers")
    found = []
    for item in value:
        t = _json_number("cold_starts", item)
        if not (math.isfinite(t) and 0 <= t <= _COLD_START_MAX_S):
            raise ValueError(f"cold_starts: {item!r} is not from 0 to {_COLD_START_MAX_S:.0f} s")
        found.append(t)
    return tuple(found)


# Times are seconds since the epoch: finite, and within what the platform's clock can show.
_TIME_RANGE = (0.0, 1e11)
# ReplicaState values policy/lifecycle records: its verdicts, and FAILED (a replica seen dead).
VERDICTS = ("FAILED", "FAILED_INITIAL_DELAY", "FAILED_PROBING")
MARKETS = tuple(m.value for m in Market)  # as the record stores them


def _time(value: Any) -> float:
    t = float(value)
    if not (math.isfinite(t) and _TIME_RANGE[0] <= t <= _TIME_RANGE[1]):
        raise ValueError(f"time {value!r} is not a finite time since the epoch")
    return t


def _verdict(value: Any) -> str:
    if value not in VERDICTS:
        raise ValueError(f"verdict {value!r} is not one of {', '.join(VERDICTS)}")
    return str(value)


def _crash_key(key: Any) -> str:
    zone, _, market = str(key).rpartition("/")
    if not zone or market not in MARKETS:
        raise ValueError(f"crash backoff key {key!r} is not <zone>/<spot|on_demand>")
    return str(key)


def _versions(data: Mapping[str, Any]) -> dict[str, Any]:
    """The version fields, checked against each other (numbers rising, the current and
    stable versions in the history)."""
    versions = tuple(Version.from_json(v) for v in data.get("versions", ()))
    numbers = [v.number for v in versions]
    if numbers != sorted(set(numbers)):
        raise ValueError("versions are not in rising order")
    version = _count("current_version", data.get("current_version", 1), MAX_LAUNCH_SEQ)
    stable = data.get("stable_version")
    stable = None if stable is None else _count("stable_version", stable, MAX_LAUNCH_SEQ)
    if versions and (version not in numbers or (stable is not None and stable not in numbers)):
        raise ValueError(f"version {version} or stable version {stable} is not in the history")
    return {
        "versions": versions,
        "version": max(1, version),
        "stable_version": stable,
        "rollout_failures": _count("rollout_failures", data.get("rollout_failures", 0), 10**6),
    }
