"""A remote state lock left by a Terraform that died (a leader killed mid-apply, issue 12):
the S3 backend's DynamoDB lock item outlives it, so the next plan fails; the error names the
lock and how to release it, and `force_unlock` (hedgeform state unlock) releases it. Real
Terraform 1.0.3 with the S3 backend, against the test AWS emulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from reconciler.errors import InitError, LockError, TerraformError
from reconciler.terraform.backend import parse_state_backend
from tests.emulators import aws as emulator
from tests.terraform.conftest import RunnerFactory, write_vars

BUCKET, TABLE = "hf-lock-state", "hf-lock-table"
LOCK_ID = "3f1c2a4b-5d6e-4f70-8a9b-0c1d2e3f4a5b"


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with emulator.running() as address:
        aws = {
            "endpoint_url": address,
            "region_name": "us-east-1",
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }
        boto3.client("s3", **aws).create_bucket(Bucket=BUCKET)
        boto3.client("dynamodb", **aws).create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "LockID", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "LockID", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield address


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def test_a_dead_terraforms_lock_is_named_with_how_to_release_it(
    make_runner: RunnerFactory, url: str
) -> None:
    backend = parse_state_backend(
        f"s3://{BUCKET}?dynamodb_table={TABLE}&region=us-east-1", "test", endpoint_url=url
    )
    runner = make_runner(service="svc", state_backend=backend, lock_timeout_s=1)
    write_vars(runner, value="a")
    runner.apply_saved_plan(runner.plan().plan_path)
    path = f"{BUCKET}/svc/local-1/terraform.tfstate"
    info = {
        "ID": LOCK_ID,
        "Operation": "OperationTypeApply",
        "Info": "",
        "Who": "root@dead-host",
        "Version": "1.0.3",
        "Created": "2026-11-30T06:00:00.000000000Z",
        "Path": path,
    }
    dynamodb: Any = boto3.client("dynamodb", endpoint_url=url, region_name="us-east-1")
    dynamodb.put_item(
        TableName=TABLE, Item={"LockID": {"S": path}, "Info": {"S": json.dumps(info)}}
    )
    write_vars(runner, value="b")
    with pytest.raises(LockError) as caught:
        runner.plan()
    message = str(caught.value)
    assert f"lock {LOCK_ID}, held by root@dead-host" in message, message
    assert f"`hedgeform state unlock svc local-1 {LOCK_ID}`" in message
    runner.force_unlock(LOCK_ID)
    assert runner.plan().changed
    # Releasing it again: one line that says there is no such lock (Terraform's own output
    # was "unexpected end of JSON input").
    with pytest.raises(TerraformError, match=f"no lock {LOCK_ID} on this stack"):
        runner.force_unlock(LOCK_ID)


def test_a_missing_bucket_is_named_with_what_to_do(make_runner: RunnerFactory, url: str) -> None:
    backend = parse_state_backend(
        f"s3://no-such-bucket?dynamodb_table={TABLE}&region=us-east-1", "test", endpoint_url=url
    )
    runner = make_runner(service="svc", state_backend=backend)
    write_vars(runner, value="a")
    with pytest.raises(InitError) as caught:
        runner.plan()
    message = str(caught.value)
    assert "S3 bucket no-such-bucket does not exist in us-east-1: create it once" in message
    assert "\n" not in message
    with pytest.raises(ValueError, match="not a Terraform lock id"):
        runner.force_unlock("../../etc; true")
