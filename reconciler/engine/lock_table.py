"""The S3 state backend's DynamoDB lock table (partition key `LockID`, a string), which
Hedgeform shares with Terraform's state locks for its own two items per service: the leader
lease (engine/lease.py) and the reconciler's record (engine/state_store.py)."""

from __future__ import annotations

from typing import Any

from reconciler.errors import StateError
from reconciler.terraform.backend import StateBackend


def lock_table_client(backend: StateBackend) -> Any:
    """A DynamoDB client for the backend's lock table (the emulator's when it has one);
    credentials from the environment, as Terraform's S3 backend reads them."""
    import boto3  # type: ignore[import-untyped]

    return boto3.client("dynamodb", region_name=backend.region, endpoint_url=backend.endpoint_url)


def first_line(exc: BaseException) -> str:
    """A botocore error in one short line (never a credential: botocore does not echo them)."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]


def get_item(client: Any, table: str, key: str, what: str) -> dict[str, Any] | None:
    """The item `LockID=key`, read consistently, or None; StateError naming `what` and the
    table when DynamoDB cannot be asked."""
    try:
        item = client.get_item(
            TableName=table, Key={"LockID": {"S": key}}, ConsistentRead=True
        ).get("Item")
    except Exception as exc:
        raise StateError(f"{what} in DynamoDB table {table}: {first_line(exc)}") from None
    return dict(item) if item else None
