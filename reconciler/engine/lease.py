"""Which `hedgeform run` acts for a service when several run on several hosts: a leader lease.

With local state the loop's `flock` (engine/loop.py) is the whole story: one host. With the
state in S3 the lease is an item in the backend's own DynamoDB lock table, key
`hedgeform-lease/BUCKET[/PREFIX]/<service>` (engine/backend_store.py), written with a
conditional put: it is taken when it does not exist, has expired (or has no readable
expiry), or is already ours, and renewed the same way. Any number of loops may run;
the one holding the lease ticks, the others stand by and take over once it has not been
renewed for `duration_s` (it stopped, or its host died).

The times, and why: the lease lasts 60 s and is renewed every 20 s by a thread of its own
(a third of the duration, as Kubernetes' leader election renews well inside its lease), so
a tick that runs for minutes (a cloud apply) keeps it; a standby asks every 10 s. The lease
only decides who plans: two applies to one stack are kept apart by Terraform's own state
lock in the same table. Expiry compares wall clocks of different hosts, so they must keep
time (NTP); a skew of a few seconds only shortens or lengthens a takeover by as much.

With the state in GCS or Azure Blob Storage the lease is an object beside the service's
stacks (`ObjectLease`, engine/backend_store.py names it), holding the same two fields and
replaced only with a generation/ETag precondition: the same compare-and-swap, so the same
rules. (Azure's own blob leases last at most 60 s, shorter than `--lease` allows; the
precondition needs no such limit.)
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from reconciler.clouds.objects import ConditionalObjects
from reconciler.engine.backend_store import (
    first_line,
    get_item,
    item_key,
    lock_table_client,
    object_name,
    object_store,
)
from reconciler.errors import StateError, WrittenMeanwhile
from reconciler.terraform.backend import StateBackend

LEASE_DURATION_S = 60.0
STANDBY_RETRY_S = 10.0


@dataclass(frozen=True)
class Holder:
    """Who holds a service's lease (`host:pid:nonce`) and until when (epoch seconds)."""

    holder: str
    expires_at: float


class Lease(Protocol):
    duration_s: float
    """Seconds the lease lasts unrenewed; its keeper renews it every third of that."""

    def take(self) -> bool:
        """Take or renew the lease; True while this process holds it."""
        ...

    def release(self) -> None: ...

    def holder(self) -> Holder | None: ...


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class AlwaysHeld:
    """Local state: the loop's flock already makes this process the only one."""

    duration_s = LEASE_DURATION_S

    def take(self) -> bool:
        return True

    def release(self) -> None:
        return None

    def holder(self) -> Holder | None:
        return None


class DynamoDBLease:
    """The lease as an item of the S3 backend's DynamoDB lock table (partition key LockID)."""

    def __init__(
        self,
        client: Any,
        table: str,
        key: str,
        *,
        me: str | None = None,
        duration_s: float = LEASE_DURATION_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`key`: the item's LockID (backend_store.item_key)."""
        self.client = client
        self.table = table
        self.key = key
        self.me = me or holder_id()
        self.duration_s = duration_s
        self.clock = clock

    def take(self) -> bool:
        now = self.clock()
        try:
            self.client.put_item(
                TableName=self.table,
                Item={
                    "LockID": {"S": self.key},
                    "holder": {"S": self.me},
                    "expires_at": {"N": repr(now + self.duration_s)},
                },
                # An item without a numeric expiry (written by hand, or damaged) counts as
                # expired, as an unreadable GCS/Azure lease object does.
                ConditionExpression=(
                    "attribute_not_exists(LockID) OR holder = :me OR expires_at < :now "
                    "OR attribute_not_exists(expires_at) OR NOT attribute_type(expires_at, :n)"
                ),
                ExpressionAttributeValues={
                    ":me": {"S": self.me},
                    ":now": {"N": repr(now)},
                    ":n": {"S": "N"},
                },
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        except Exception as exc:  # botocore's errors: one line naming the table
            raise StateError(
                f"leader lease in DynamoDB table {self.table}: {first_line(exc)}"
            ) from None
        return True

    def release(self) -> None:
        """Give the lease up at once (a clean stop), so a standby need not wait for expiry."""
        try:
            self.client.delete_item(
                TableName=self.table,
                Key={"LockID": {"S": self.key}},
                ConditionExpression="holder = :me",
                ExpressionAttributeValues={":me": {"S": self.me}},
            )
        except Exception:  # not ours any more, or the table is gone: nothing to give up
            return

    def holder(self) -> Holder | None:
        item = get_item(self.client, self.table, self.key, "the leader lease")
        try:
            return (
                Holder(str(item["holder"]["S"]), float(item["expires_at"]["N"])) if item else None
            )
        except (KeyError, TypeError, ValueError):  # damaged: expired, take() replaces it
            return None


class ObjectLease:
    """The lease as a small JSON object (`{"holder": ..., "expires_at": ...}`) in a bucket with
    conditional writes (GCS, Azure Blob Storage). An object that does not parse is treated as
    an expired lease: it holds nothing but who acts, and the conditional write that replaces
    it still admits one writer only."""

    def __init__(
        self,
        objects: ConditionalObjects,
        name: str,
        *,
        me: str | None = None,
        duration_s: float = LEASE_DURATION_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.objects = objects
        self.name = name
        self.me = me or holder_id()
        self.duration_s = duration_s
        self.clock = clock

    def _read(self) -> tuple[Holder | None, str | None]:
        current = self.objects.get(self.name)
        if current is None:
            return None, None
        return _parse_holder(current.data), current.token

    def take(self) -> bool:
        now = self.clock()
        held, token = self._read()
        if held is not None and held.holder != self.me and held.expires_at >= now:
            return False
        body = json.dumps({"holder": self.me, "expires_at": now + self.duration_s})
        try:
            self.objects.put(self.name, body.encode(), if_token=token)
        except WrittenMeanwhile:  # another loop took or renewed it between our read and write
            return False
        return True

    def release(self) -> None:
        """Give the lease up at once if it is still ours (see DynamoDBLease.release)."""
        try:
            held, token = self._read()
            if held is not None and held.holder == self.me:
                self.objects.delete(self.name, if_token=token)
        except (StateError, WrittenMeanwhile):
            return

    def holder(self) -> Holder | None:
        return self._read()[0]


def _parse_holder(data: bytes) -> Holder | None:
    try:
        raw = json.loads(data)
        return Holder(str(raw["holder"]), float(raw["expires_at"]))
    except (ValueError, KeyError, TypeError):
        return None


def lease_for(
    backend: StateBackend, service: str, *, duration_s: float = LEASE_DURATION_S
) -> Lease:
    """The lease that decides which loop of `service` acts (see the module docstring)."""
    if backend.kind == "s3":
        client = lock_table_client(backend)
        key = item_key(backend, service, "lease")
        return DynamoDBLease(client, backend.lock_table, key, duration_s=duration_s)
    if backend.remote:
        name = object_name(backend, service, "lease")
        return ObjectLease(object_store(backend), name, duration_s=duration_s)
    return AlwaysHeld()


class LeaseKeeper:
    """Renews a held lease every `every_s` from a thread of its own, so a long tick keeps it;
    `held` turns False the moment a renewal fails (another host took over)."""

    def __init__(self, lease: Lease, every_s: float | None = None) -> None:
        self.lease = lease
        self.every_s = every_s if every_s is not None else lease.duration_s / 3
        self.held = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def take(self) -> bool:
        self.held = self.lease.take()
        if self.held and self._thread is None:
            self._thread = threading.Thread(target=self._renew, daemon=True)
            self._thread.start()
        return self.held

    def _renew(self) -> None:
        while not self._stop.wait(self.every_s):
            if self.held:
                try:
                    self.held = self.lease.take()
                except StateError:
                    self.held = False

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.held:
            self.lease.release()
            self.held = False
