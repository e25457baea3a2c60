"""Where Hedgeform keeps its own two items per service beside a remote state: the leader
lease (engine/lease.py) and the reconciler's record (engine/state_store.py).

    s3       items of the backend's DynamoDB lock table (partition key `LockID`, a string),
             which Terraform's state locks share: `hedgeform-lease/BUCKET[/PREFIX]/<service>`
             and `hedgeform-record/BUCKET[/PREFIX]/<service>` (two deployments of one
             service, under two prefixes, never share a lease or a record)
    gcs      objects next to the service's stacks: `[PREFIX/]<service>/hedgeform-lease.json`,
    azurerm  `[PREFIX/]<service>/hedgeform-record.json`, written with generation (GCS) or
             ETag (Azure) preconditions (clouds/objects.py)

Credentials come from the environment, as Terraform's backends read them.
"""

from __future__ import annotations

import os
from typing import Any

from reconciler.clouds.objects import (
    AZURE_STORAGE_SCOPE,
    AzureBlobs,
    ConditionalObjects,
    GcsObjects,
)
from reconciler.errors import StateError
from reconciler.terraform.backend import StateBackend


def lock_table_client(backend: StateBackend) -> Any:
    """A DynamoDB client for the backend's lock table (the emulator's when it has one);
    credentials from the environment, as Terraform's S3 backend reads them."""
    import boto3  # type: ignore[import-untyped]

    return boto3.client("dynamodb", region_name=backend.region, endpoint_url=backend.endpoint_url)


NO_TABLE = (
    "the table does not exist in this region (create it once: partition key LockID, a "
    "string; Terraform's S3 backend locks in it too)"
)


def first_line(exc: BaseException) -> str:
    """A botocore error in one short line (never a credential: botocore does not echo them);
    a missing table says how to create it."""
    code = getattr(exc, "response", {}).get("Error", {}).get("Code")
    if code == "ResourceNotFoundException":
        return NO_TABLE
    if type(exc).__name__ == "NoCredentialsError":
        return (
            "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
            "AWS_PROFILE (Terraform's S3 backend reads the same)"
        )
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


def item_key(backend: StateBackend, service: str, item: str) -> str:
    """The lock-table key of a service's `item` (lease, record) in an S3 backend: scoped by
    bucket and prefix, as Terraform's own lock items are (`BUCKET/KEY`)."""
    return "/".join(
        p for p in (f"hedgeform-{item}", backend.container, backend.prefix, service) if p
    )


def aws_cli_target(backend: StateBackend) -> str:
    """`--region R [--endpoint-url URL]` for a command line that reaches the lock table."""
    target = f"--region {backend.region}"
    return f"{target} --endpoint-url {backend.endpoint_url}" if backend.endpoint_url else target


def object_name(backend: StateBackend, service: str, item: str) -> str:
    """`[PREFIX/]<service>/hedgeform-<item>.json`: beside the service's stack folders, never
    inside one (their state is `<service>/<stack>/...`)."""
    return "/".join(p for p in (backend.prefix, service, f"hedgeform-{item}.json") if p)


def object_store(backend: StateBackend) -> ConditionalObjects:
    """The GCS bucket or Azure container of a gcs/azurerm backend."""
    if backend.kind == "gcs":
        from reconciler.clouds.gcp.signals import GoogleAuthTokens
        from reconciler.clouds.rest import StaticToken, TokenProvider

        token = os.environ.get("GOOGLE_OAUTH_ACCESS_TOKEN")  # as Terraform's gcs backend
        tokens: TokenProvider = StaticToken(token) if token else GoogleAuthTokens()
        return GcsObjects(backend.container, tokens)
    if backend.kind == "azurerm":
        from reconciler.clouds.azure.signals import AzureIdentityTokens

        return AzureBlobs(
            backend.account, backend.container, AzureIdentityTokens(scope=AZURE_STORAGE_SCOPE)
        )
    raise ValueError(f"no object store for a {backend.kind} backend")
