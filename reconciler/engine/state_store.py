"""The reconciler's record between ticks (`state/<service>/reconciler.json`).

Written atomically (temp file, fsync, rename), so a crash leaves the old or the new record,
never half of one. A record we cannot read is refused with its path and how to recover:
silently starting over would forget the placer's zone states and the notices already seen.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.errors import MemoryFormatError, StateError
from reconciler.files import write_atomic
from reconciler.policy import FailureKind, LaunchResult, Market, Memory

RECORD_VERSION = 1


@dataclass(frozen=True)
class Record:
    memory: Memory = field(default_factory=Memory)
    notice_cursor: int = 0  # byte offset into the sandbox notice feed
    launch_results: tuple[LaunchResult, ...] = ()  # outcome of the last apply's launches
    request_samples: tuple[tuple[float, int], ...] = ()  # (time, LB requests total)
    last_tick: float | None = None
    lb_epoch: int = 0  # bumped when the load balancer lost its members (HAProxy restarted)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": RECORD_VERSION,
            "memory": self.memory.to_json(),
            "notice_cursor": self.notice_cursor,
            "launch_results": [
                {
                    "zone": r.zone,
                    "market": r.market.value,
                    "ok": r.ok,
                    "failure": r.failure.value if r.failure else None,
                    "message": r.message,
                }
                for r in self.launch_results
            ],
            "request_samples": [list(s) for s in self.request_samples],
            "last_tick": self.last_tick,
            "lb_epoch": self.lb_epoch,
        }

    @classmethod
    def from_json(cls, raw: Any) -> Record:
        if not isinstance(raw, dict) or raw.get("version") != RECORD_VERSION:
            raise ValueError(f"not a version-{RECORD_VERSION} reconciler record")
        return cls(
            memory=Memory.from_json(raw["memory"]),
            notice_cursor=int(raw["notice_cursor"]),
            launch_results=tuple(
                LaunchResult(
                    str(r["zone"]),
                    Market(r["market"]),
                    bool(r["ok"]),
                    FailureKind(r["failure"]) if r["failure"] else None,
                    str(r.get("message", "")),
                )
                for r in raw["launch_results"]
            ),
            request_samples=tuple((float(t), int(n)) for t, n in raw["request_samples"]),
            last_tick=None if raw.get("last_tick") is None else float(raw["last_tick"]),
            lb_epoch=int(raw.get("lb_epoch", 0)),
        )


def load_record(path: Path) -> Record:
    if not path.exists():
        return Record()
    try:
        return Record.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError, OverflowError, MemoryFormatError) as exc:
        raise StateError(
            f"{path}: cannot read the reconciler's record ({exc}). It holds the placer's zone "
            "states and the notices already handled; fix the file, or move it aside to start "
            "over from what Terraform and the cloud report (the next tick re-observes "
            "everything)"
        ) from exc


def save_record(path: Path, record: Record) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(record.to_json(), indent=1, sort_keys=True) + "\n")
    except OSError as exc:
        raise StateError(f"{path}: cannot write the reconciler's record ({exc.strerror})") from exc
