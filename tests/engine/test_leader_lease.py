"""The leader lease (engine/lease.py) on DynamoDB, against moto in this process: one holder at
a time, renewal, takeover after expiry, hand-over on release, and the loop standing by."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from reconciler.engine.lease import DynamoDBLease, LeaseKeeper

TABLE = "hf-locks"


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
    a = DynamoDBLease(client, TABLE, "llama", me="host-a", duration_s=60, clock=clock)
    b = DynamoDBLease(client, TABLE, "llama", me="host-b", duration_s=60, clock=clock)
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
    a = DynamoDBLease(client, TABLE, "llama", me="host-a", clock=clock)
    b = DynamoDBLease(client, TABLE, "llama", me="host-b", clock=clock)
    other = DynamoDBLease(client, TABLE, "mistral", me="host-b", clock=clock)
    assert a.take() and other.take()  # one lease per service
    b.release()  # not b's: nothing happens
    assert not b.take()
    a.release()
    assert b.take()


def test_the_keeper_renews_in_the_background_and_notices_a_loss(client: Any) -> None:
    clock = Clock()
    a = DynamoDBLease(client, TABLE, "llama", me="host-a", duration_s=30, clock=clock)
    b = DynamoDBLease(client, TABLE, "llama", me="host-b", duration_s=30, clock=clock)
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
            "LockID": {"S": "hedgeform-lease/llama"},
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
