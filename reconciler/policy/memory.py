"""What the policy remembers between ticks, as plain data that round-trips through JSON.

SkyServe keeps this in process memory and loses it on restart; here it is passed into
`decide` and returned, and the loop persists it in `state/<service>/reconciler.json`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

FORMAT_VERSION = 1


class ZoneStatus(StrEnum):
    ACTIVE = "active"
    PREEMPTED = "preempted"


class MemoryFormatError(ValueError):
    """Memory JSON that this version cannot read."""


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
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Memory:
        if data.get("version") != FORMAT_VERSION:
            raise MemoryFormatError(
                f"memory format version {data.get('version')!r} is not {FORMAT_VERSION}"
            )
        try:
            return cls(
                target=_opt_int(data["target"]),
                upscale_since=_opt_float(data["upscale_since"]),
                downscale_since=_opt_float(data["downscale_since"]),
                zone_status={str(z): ZoneStatus(s) for z, s in data["zone_status"].items()},
                launch_seq=int(data["launch_seq"]),
                recent_preemptions=tuple(
                    (str(r), str(z), float(at)) for r, z, at in data["recent_preemptions"]
                ),
                warned=tuple((str(r), float(at)) for r, at in data["warned"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MemoryFormatError(f"malformed memory: {exc!r}") from exc


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)
