"""Terraform state in a remote backend (issue 12): S3 with a DynamoDB lock table on the test
AWS emulator, for sandbox stacks (the cheapest stacks there are).

The regression this exists for: observation read `state/<service>/<stack>/terraform.tfstate`
from disk, a file a remote backend never writes, so the reconciler saw zero replicas and
launched a whole second fleet on every apply. Now each stack's state is read through
Terraform (`terraform state pull`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

from reconciler.cli import main
from reconciler.paths import ServicePaths
from reconciler.stacks import FRONT
from tests.e2e.conftest import SANDBOX_ZONES, free_port, project_root
from tests.emulators import aws as emulator

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SERVICE = "remote"
STACKS = (FRONT, "local-1", "local-2")
BUCKET, TABLE, PREFIX = "hf-state", "hf-locks", "e2e"
SPEC = (
    """\
service:
  readiness_probe: /health
  replicas: 2
"""
    + SANDBOX_ZONES
)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with emulator.running() as address:
        s3 = client(address, "s3")
        s3.create_bucket(Bucket=BUCKET)
        client(address, "dynamodb").create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "LockID", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "LockID", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield address


def client(url: str, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    with project_root(tmp_path, {SERVICE: SPEC}) as path:
        yield path


def env_for(url: str, backend: str | None) -> dict[str, str]:
    env = {
        "HEDGEFORM_LB_PORT": str(free_port()),
        "HEDGEFORM_SANDBOX_COLD_START": "1",
        "HEDGEFORM_SANDBOX_LATENCY_MS": "1",
        "HEDGEFORM_AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    if backend is not None:
        env["HEDGEFORM_STATE_BACKEND"] = backend
    return env


S3_BACKEND = f"s3://{BUCKET}/{PREFIX}?dynamodb_table={TABLE}&region=us-east-1"


def hedgeform(root: Path, env: dict[str, str], *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(main, [*args, "--root", str(root)], env=env)
    assert result.exit_code == code, result.output
    return result.output


def remote_replicas(url: str, stack: str) -> set[str]:
    """Replica ids in the stack's state object in S3 (what Terraform keeps there)."""
    key = f"{PREFIX}/{SERVICE}/{stack}/terraform.tfstate"
    body = client(url, "s3").get_object(Bucket=BUCKET, Key=key)["Body"].read()
    state = json.loads(body)
    return {
        str(instance["index_key"])
        for res in state.get("resources", [])
        if res.get("type") == "null_resource" and res.get("name") == "replica"
        for instance in res.get("instances", [])
    }


def local_state_files(root: Path) -> list[Path]:
    paths = ServicePaths.for_service(SERVICE, root=root)
    return [
        paths.stack_dir(s) / "terraform.tfstate"
        for s in STACKS
        if (paths.stack_dir(s) / "terraform.tfstate").is_file()
        and (paths.stack_dir(s) / "terraform.tfstate").stat().st_size
    ]


def test_apply_twice_with_state_in_s3_launches_nothing_the_second_time(
    root: Path, url: str
) -> None:
    env = env_for(url, S3_BACKEND)
    hedgeform(root, env, "apply", SERVICE, "--timeout", "120")
    first = {s: remote_replicas(url, s) for s in ("local-1", "local-2")}
    assert sum(len(r) for r in first.values()) >= 2, first
    assert local_state_files(root) == []  # the state is in S3 only
    out = hedgeform(root, env, "apply", SERVICE, "--timeout", "120")
    assert "0 to create" in out and "(no changes)" in out, out
    assert {s: remote_replicas(url, s) for s in ("local-1", "local-2")} == first
    status = hedgeform(root, env, "status", SERVICE)
    for replica in set().union(*first.values()):
        assert replica in status, status
    out = hedgeform(root, env, "destroy", SERVICE)
    assert "nothing left running" in out, out
    assert remote_replicas(url, "local-1") == remote_replicas(url, "local-2") == set()


def test_a_stack_whose_state_is_still_local_is_not_started_afresh_in_s3(
    root: Path, url: str
) -> None:
    """Switching the setting alone would give Terraform an empty state in S3 (and a second
    fleet): plan refuses in one line until `hedgeform state migrate` moved it."""
    local = env_for(url, None)
    hedgeform(root, local, "apply", SERVICE, "--timeout", "120")
    before = sorted(local_state_files(root))
    assert before
    remote = env_for(url, S3_BACKEND)
    remote["HEDGEFORM_LB_PORT"] = local["HEDGEFORM_LB_PORT"]
    out = hedgeform(root, remote, "apply", SERVICE, "--no-wait", code=1)
    assert "hedgeform state migrate remote" in out, out
    assert "Traceback" not in out
    out = hedgeform(root, remote, "state", "migrate", SERVICE)
    assert "now in s3://" in out, out
    moved = {s: remote_replicas(url, s) for s in ("local-1", "local-2")}
    assert sum(len(r) for r in moved.values()) >= 2, moved
    out = hedgeform(root, remote, "apply", SERVICE, "--timeout", "120")
    assert "0 to create" in out, out
    assert {s: remote_replicas(url, s) for s in ("local-1", "local-2")} == moved
    hedgeform(root, remote, "destroy", SERVICE)
