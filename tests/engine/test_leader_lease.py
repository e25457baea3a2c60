"""The leader lease (engine/lease.py) and the record beside the state (engine/state_store.py)
on DynamoDB, against moto in this process: one holder at a time, renewal, takeover after
expiry, hand-over on release; the record's round trip, stale writers, corrupt items."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import boto3
import pytest
from moto import mock_aws

from reconciler.engine.lease import DynamoDBLease, LeaseKeeper
from reconciler.engine.state_store import DynamoDBRecords, Record
from reconciler.errors import StateError
from reconciler.policy import Memory, ZoneStatus

TABLE = "hf-locks"
LEASE = "hedgeform-lease/hf-state/llama"  # backend_store.item_key
RECORD = "hedgeform-record/hf-state/llama"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        dynamodb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "LockID", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "LockID", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield dynamodb


def test_one_holder_at_a_time_and_takeover_only_after_expiry(client: Any) -> None:
    clock = Clock()
    a = DynamoDBLease(client, TABLE, LEASE, me="host-a", duration_s=60, clock=clock)
    b = DynamoDBLease(client, TABLE, LEASE, me="host-b", duration_s=60, clock=clock)
    assert a.take() and not b.take()
    clock.now += 50
    assert a.take()  # renewed: good for another 60 s
    clock.now += 59
    assert not b.take()
    holder = b.holder()
    assert holder is not None and holder.holder == "host-a"
    clock.now += 2  # host-a stopped renewing 61 s ago: it is gone
    assert b.take() and not a.take()
    assert a.holder() == b.holder()


def test_release_hands_over_at_once_and_never_frees_another_holders_lease(client: Any) -> None:
    clock = Clock()
    a = DynamoDBLease(client, TABLE, LEASE, me="host-a", clock=clock)
    b = DynamoDBLease(client, TABLE, LEASE, me="host-b", clock=clock)
    other = DynamoDBLease(
        client, TABLE, "hedgeform-lease/hf-state/mistral", me="host-b", clock=clock
    )
    assert a.take() and other.take()  # one lease per service
    b.release()  # not b's: nothing happens
    assert not b.take()
    a.release()
    assert b.take()


def test_the_keeper_renews_in_the_background_and_notices_a_loss(client: Any) -> None:
    clock = Clock()
    a = DynamoDBLease(client, TABLE, LEASE, me="host-a", duration_s=30, clock=clock)
    b = DynamoDBLease(client, TABLE, LEASE, me="host-b", duration_s=30, clock=clock)
    keeper = LeaseKeeper(a, every_s=0.01)
    assert keeper.take()
    clock.now += 25
    deadline = 200
    while deadline and (a.holder() or b.holder()).expires_at < clock.now + 29:  # type: ignore[union-attr]
        deadline -= 1
        keeper._stop.wait(0.01)
    assert deadline, "the keeper did not renew"
    # Another host forces it (as after a long pause of this one): the keeper sees the loss.
    client.put_item(
        TableName=TABLE,
        Item={
            "LockID": {"S": LEASE},
            "holder": {"S": "host-b"},
            "expires_at": {"N": repr(clock.now + 30)},
        },
    )
    deadline = 200
    while deadline and keeper.held:
        deadline -= 1
        keeper._stop.wait(0.01)
    assert not keeper.held
    keeper.stop()
    holder = b.holder()
    assert holder is not None and holder.holder == "host-b"  # stop() freed nothing of b's


def test_the_record_round_trips_through_the_lock_table_and_refuses_a_stale_writer(
    client: Any,
) -> None:
    """The reconciler's record beside the state (engine/state_store.DynamoDBRecords): what one
    loop saved another reads; a loop that read before the other wrote cannot overwrite."""
    first = DynamoDBRecords(client, TABLE, RECORD)
    assert first.load() == Record()
    memory = Memory(target=3, launch_seq=7, zone_status={"us-east-1a": ZoneStatus.PREEMPTED})
    first.save(Record(memory=memory, last_tick=12.5))
    second = DynamoDBRecords(client, TABLE, RECORD)  # another host, starting fresh
    loaded = second.load()
    assert loaded.memory == memory and loaded.last_tick == 12.5
    second.save(replace(loaded, last_tick=13.0))
    with pytest.raises(StateError, match="another loop wrote the record"):
        first.save(Record(memory=memory, last_tick=99.0))  # read before the other wrote
    assert DynamoDBRecords(client, TABLE, RECORD).load().last_tick == 13.0
    second.clear()
    assert DynamoDBRecords(client, TABLE, RECORD).load() == Record()


def test_a_corrupt_remote_record_is_refused_with_where_it_is_and_how_to_recover(
    client: Any,
) -> None:
    client.put_item(
        TableName=TABLE,
        Item={
            "LockID": {"S": RECORD},
            "record": {"S": '{"version": 1, "memory": '},
            "version": {"N": "4"},
        },
    )
    with pytest.raises(StateError) as caught:
        DynamoDBRecords(client, TABLE, RECORD).load()
    message = str(caught.value)
    assert message.startswith(f"DynamoDB table {TABLE}, item LockID={RECORD}: ")
    assert "aws dynamodb delete-item" in message and "\n" not in message
    # Never silently reset: the item is still there.
    assert (
        client.get_item(TableName=TABLE, Key={"LockID": {"S": RECORD}})["Item"]["version"]["N"]
        == "4"
    )


def test_a_missing_lock_table_says_how_to_create_it(client: Any) -> None:
    lease = DynamoDBLease(client, "no-such-table", LEASE, me="host-a")
    with pytest.raises(StateError) as caught:
        lease.take()
    assert str(caught.value) == (
        "leader lease in DynamoDB table no-such-table: the table does not exist in this region "
        "(create it once: partition key LockID, a string; Terraform's S3 backend locks in it "
        "too)"
    )
    with pytest.raises(StateError, match="does not exist in this region"):
        DynamoDBRecords(client, "no-such-table", RECORD).load()


def test_a_damaged_lease_item_counts_as_expired_never_as_a_traceback(client: Any) -> None:
    """An item written by hand without a numeric expiry: no holder, and the next loop takes
    it over (a KeyError used to end `destroy` in a traceback and block every loop)."""
    # (An expiry of the wrong type is covered by `NOT attribute_type(...)` on DynamoDB; moto
    # cannot evaluate that item: it raises comparing a string with a number.)
    client.put_item(TableName=TABLE, Item={"LockID": {"S": LEASE}, "holder": {"S": "x:1:y"}})
    lease = DynamoDBLease(client, TABLE, LEASE, me="host-a", clock=Clock())
    assert lease.holder() is None
    assert lease.take()
    holder = lease.holder()
    assert holder is not None and holder.holder == "host-a"


@pytest.mark.parametrize(
    ("url", "lease", "record"),
    [
        (
            "s3://hf-state/prod?dynamodb_table=hf-locks&region=us-east-1",
            "hedgeform-lease/hf-state/prod/llama",
            "hedgeform-record/hf-state/prod/llama",
        ),
        (
            "s3://hf-state?dynamodb_table=hf-locks&region=us-east-1",
            "hedgeform-lease/hf-state/llama",
            "hedgeform-record/hf-state/llama",
        ),
    ],
)
def test_two_deployments_of_one_service_never_share_a_lease_or_a_record(
    url: str, lease: str, record: str
) -> None:
    """Keys scoped by bucket and prefix, as Terraform's lock items are: `llama` under two
    prefixes of one table used to share its lease and its memory."""
    from reconciler.engine.backend_store import item_key
    from reconciler.engine.lease import lease_for
    from reconciler.terraform.backend import parse_state_backend

    backend = parse_state_backend(url, "HEDGEFORM_STATE_BACKEND")
    held = lease_for(backend, "llama")
    assert isinstance(held, DynamoDBLease) and held.key == lease
    assert item_key(backend, "llama", "record") == record


def test_no_aws_credentials_says_which_to_set() -> None:
    from botocore.exceptions import NoCredentialsError

    from reconciler.engine.backend_store import first_line

    assert first_line(NoCredentialsError()).startswith(
        "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    )
