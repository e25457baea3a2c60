"""The reconciler's record between ticks: `state/<service>/reconciler.json`, or, with a
remote state, beside it (engine/backend_store.py): an item of the S3 backend's DynamoDB lock
table (`DynamoDBRecords`) or an object of the GCS bucket or Azure container
(`ObjectRecords`), so a loop on another host continues where the last leader stopped.

A file is written atomically (temp file, fsync, rename), so a crash leaves the old or the new
record, never half of one; the item is one conditional put, refused when another loop wrote
since this one read it. A record we cannot read is refused with where it is and how to
recover: silently starting over would forget the placer's zone states and the notices
already seen.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from reconciler.clouds.objects import ConditionalObjects
from reconciler.engine.backend_store import first_line, get_item
from reconciler.errors import MemoryFormatError, StateError, WrittenMeanwhile
from reconciler.files import write_atomic, write_json_atomic
from reconciler.policy import FailureKind, LaunchResult, Market, Memory

RECORD_VERSION = 1
# Written by `hedgeform destroy` once nothing is left running; removed when an apply starts.
# `hedgeform status` reads it to say the service is destroyed, and since when.
DESTROYED_FILE = "destroyed.json"
# What the apply that removes DESTROYED_FILE renames it to: when the service's current life
# began. `hedgeform status` reads only the tick records after it (a replica id of an earlier
# life may be reused; its events are not this replica's).
LAST_DESTROYED_FILE = "destroyed.last.json"
# Written by `hedgeform destroy` before it destroys anything, removed once DESTROYED_FILE is
# written (or an apply starts): while it is there alone, a destroy started and did not
# finish (killed, or failed), and `hedgeform status` says to run it again.
DESTROYING_FILE = "destroying.json"


def mark_destroying(state_dir: Path, at: float) -> None:
    """Note that a destroy of the service of `state_dir` started at `at` (unix s)."""
    try:
        write_json_atomic(
            state_dir / DESTROYING_FILE, {"at": round(at, 3), "by": "hedgeform destroy"}
        )
    except OSError as exc:
        path = state_dir / DESTROYING_FILE
        raise StateError(f"{path}: cannot write it ({exc.strerror})") from exc


def destroy_started_at(state_dir: Path) -> float | None:
    """When a destroy that has not finished started (unix s), or None: none started since
    the last one finished or the last apply."""
    return _marker_time(state_dir / DESTROYING_FILE)


def mark_destroyed(state_dir: Path, at: float) -> None:
    """Note that the service of `state_dir` was destroyed at `at` (unix s): the destroy
    finished (its DESTROYING_FILE goes, after DESTROYED_FILE is written). A service already
    destroyed since its last apply keeps the time it went: a second `destroy` found
    nothing to take down."""
    try:
        if destroyed_at(state_dir) is not None:
            (state_dir / DESTROYING_FILE).unlink(missing_ok=True)
            return
        write_json_atomic(
            state_dir / DESTROYED_FILE, {"at": round(at, 3), "by": "hedgeform destroy"}
        )
        (state_dir / DESTROYING_FILE).unlink(missing_ok=True)
    except OSError as exc:
        raise StateError(f"{state_dir / DESTROYED_FILE}: cannot write it ({exc.strerror})") from exc


def destroyed_at(state_dir: Path) -> float | None:
    """When the service of `state_dir` was destroyed (unix s), or None: not destroyed since
    its last apply (an unreadable marker counts as destroyed at its file's time)."""
    return _marker_time(state_dir / DESTROYED_FILE)


def last_destroyed_at(state_dir: Path) -> float | None:
    """When the service was last destroyed, whether or not it was applied since (unix s);
    None: never destroyed since destroys were recorded (LAST_DESTROYED_FILE)."""
    times = [_marker_time(state_dir / name) for name in (DESTROYED_FILE, LAST_DESTROYED_FILE)]
    return max((t for t in times if t is not None), default=None)


def previous_destroyed_at(state_dir: Path) -> float | None:
    """For a destroyed service: when the life it ended began (the destroy before it; None:
    none recorded)."""
    at, before = destroyed_at(state_dir), _marker_time(state_dir / LAST_DESTROYED_FILE)
    return before if before is not None and (at is None or before < at) else None


def _marker_time(path: Path) -> float | None:
    try:
        data = json.loads(path.read_text())
        return float(data["at"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        try:
            return path.stat().st_mtime
        except OSError:
            return None


def clear_destroyed(state_dir: Path) -> None:
    """An apply starts: the service exists again. The marker is renamed, not deleted
    (atomically: LAST_DESTROYED_FILE keeps when this life began)."""
    with contextlib.suppress(FileNotFoundError):
        (state_dir / DESTROYED_FILE).replace(state_dir / LAST_DESTROYED_FILE)
    (state_dir / DESTROYING_FILE).unlink(missing_ok=True)  # a destroy cut short: superseded


@dataclass(frozen=True)
class Record:
    memory: Memory = field(default_factory=Memory)
    notice_cursor: int = 0  # byte offset into the sandbox notice feed
    launch_results: tuple[LaunchResult, ...] = ()  # outcome of the last apply's launches
    request_samples: tuple[tuple[float, int], ...] = ()  # (time, LB requests total)
    last_tick: float | None = None
    lb_epoch: int = 0  # bumped when the load balancer lost its members (HAProxy restarted)
    # What each service version's replicas run (Version.runs -> spec/fingerprint.replica_part),
    # for the versions still in use: old replicas are rendered with their own.
    version_specs: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)
    # The texts the service's current spec was read from (spec.loading.read_service_texts:
    # `service`, `sidecar`): what the last pass or applied reviewed plan ran. Under
    # `changes: review` the loop runs these, not a service file changed since (review.py).
    approved: Mapping[str, str] = field(default_factory=dict)

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
            "version_specs": {str(k): v for k, v in sorted(self.version_specs.items())},
            "approved": dict(sorted(self.approved.items())),
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
            version_specs={int(k): dict(v) for k, v in dict(raw.get("version_specs", {})).items()},
            approved={str(k): str(v) for k, v in dict(raw.get("approved") or {}).items()},
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


_RECOVER = (
    "It holds the placer's zone states and the notices already handled; fix it, or remove it "
    "to start over from what Terraform and the cloud report (the next tick re-observes "
    "everything)"
)
_STALE = (
    "another loop wrote the record since this one read it (the leader lease moved); this "
    "tick's record is dropped, the next tick re-reads"
)
# A DynamoDB item holds at most 400 KB; a record is a few KB (its request samples are a
# bounded window), so one that grows near the limit is a bug to report, not to truncate.
_ITEM_LIMIT = 350_000


class RecordStore(Protocol):
    """Where the record lives: `load` (an empty Record before the first tick), `save`, and
    `clear` (destroy). `where` names it in messages."""

    @property
    def where(self) -> str: ...

    def load(self) -> Record: ...

    def save(self, record: Record) -> None: ...

    def clear(self) -> None: ...


@dataclass
class FileRecords:
    """The record as `state/<service>/reconciler.json` (local state: one host)."""

    path: Path

    @property
    def where(self) -> str:
        return str(self.path)

    def load(self) -> Record:
        return load_record(self.path)

    def save(self, record: Record) -> None:
        save_record(self.path, record)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


class DynamoDBRecords:
    """The record as an item of the S3 backend's lock table (`key`: backend_store.item_key,
    `hedgeform-record/BUCKET[/PREFIX]/<service>`): attribute `record` (the JSON text) and
    `version` (a counter). `save` is a conditional put on the version `load` saw, so a loop
    that lost its lease cannot overwrite what the new leader wrote: it gets StateError
    instead, and its tick fails. `cli_target` (`--region R [--endpoint-url U]`) goes into
    the recovery command a corrupt record's message gives."""

    def __init__(self, client: Any, table: str, key: str, cli_target: str = "") -> None:
        self.client = client
        self.table = table
        self.key = key
        self.cli_target = cli_target
        self._version: int | None = None

    @property
    def where(self) -> str:
        return f"DynamoDB table {self.table}, item LockID={self.key}"

    def load(self) -> Record:
        item = get_item(self.client, self.table, self.key, "the reconciler's record")
        if not item:
            self._version = 0
            return Record()
        try:
            version = int(item["version"]["N"])
            record = Record.from_json(json.loads(item["record"]["S"]))
        except (KeyError, ValueError, TypeError, OverflowError, MemoryFormatError) as exc:
            target = f" {self.cli_target}" if self.cli_target else ""
            delete = (
                f"aws dynamodb delete-item{target} --table-name {self.table} "
                f'--key \'{{"LockID": {{"S": "{self.key}"}}}}\''
            )
            why = f"no attribute {exc}" if isinstance(exc, KeyError) else first_line(exc)
            raise StateError(
                f"{self.where}: cannot read the reconciler's record ({why}). {_RECOVER}: {delete}"
            ) from None
        self._version = version
        return record

    def save(self, record: Record) -> None:
        if self._version is None:
            self.load()
        seen = self._version or 0
        text = json.dumps(record.to_json(), sort_keys=True, separators=(",", ":"))
        if len(text) > _ITEM_LIMIT:
            raise StateError(f"{self.where}: the record is {len(text)} bytes, over {_ITEM_LIMIT}")
        extra: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(LockID)"}
        if seen:
            extra = {
                "ConditionExpression": "version = :seen",
                "ExpressionAttributeValues": {":seen": {"N": str(seen)}},
            }
        try:
            self.client.put_item(
                TableName=self.table,
                Item={
                    "LockID": {"S": self.key},
                    "record": {"S": text},
                    "version": {"N": str(seen + 1)},
                },
                **extra,
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            self._version = None
            raise StateError(f"{self.where}: {_STALE}") from None
        except Exception as exc:
            raise StateError(
                f"{self.where}: cannot write the reconciler's record ({first_line(exc)})"
            ) from None
        self._version = seen + 1

    def clear(self) -> None:
        try:
            self.client.delete_item(TableName=self.table, Key={"LockID": {"S": self.key}})
        except Exception as exc:
            raise StateError(
                f"{self.where}: cannot remove the record ({first_line(exc)})"
            ) from None
        self._version = 0


class ObjectRecords:
    """The record as an object of a GCS bucket or Azure container (JSON, as the file), saved
    only over the version `load` saw, like DynamoDBRecords."""

    def __init__(self, objects: ConditionalObjects, name: str) -> None:
        self.objects = objects
        self.name = name
        self._token: str | None = None
        self._loaded = False

    @property
    def where(self) -> str:
        return self.objects.where(self.name)

    def load(self) -> Record:
        current = self.objects.get(self.name)
        self._loaded = True
        if current is None:
            self._token = None
            return Record()
        try:
            record = Record.from_json(json.loads(current.data))
        except (KeyError, ValueError, TypeError, OverflowError, MemoryFormatError) as exc:
            raise StateError(
                f"{self.where}: cannot read the reconciler's record ({first_line(exc)}). "
                f"{_RECOVER}: {self.objects.remove_command(self.name)}"
            ) from None
        self._token = current.token
        return record

    def save(self, record: Record) -> None:
        if not self._loaded:
            self.load()
        text = json.dumps(record.to_json(), sort_keys=True, separators=(",", ":"))
        try:
            self._token = self.objects.put(self.name, text.encode(), if_token=self._token)
        except WrittenMeanwhile:
            self._loaded = False
            raise StateError(f"{self.where}: {_STALE}") from None

    def clear(self) -> None:
        self.objects.delete(self.name)  # unconditional: destroy removes it whoever wrote last
        self._token = None
        self._loaded = True
