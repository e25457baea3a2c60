"""Terraform state in a remote backend (issue 12): S3 with a DynamoDB lock table on the test
AWS emulator, for sandbox stacks (the cheapest stacks there are).

The regression this exists for: observation read `state/<service>/<stack>/terraform.tfstate`
from disk, a file a remote backend never writes, so the reconciler saw zero replicas and
launched a whole second fleet on every apply. Now each stack's state is read through
Terraform (`terraform state pull`).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

from reconciler.cli import main
from reconciler.engine.reconcile import replica_seq
from reconciler.engine.state_store import DynamoDBRecords, Record
from reconciler.paths import ServicePaths
from reconciler.policy import Memory
from reconciler.stacks import FRONT
from tests.e2e.conftest import SANDBOX_ZONES, free_port, project_root
from tests.emulators import aws as emulator

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SERVICE = "remote"
HEDGEFORM = str(Path(sys.executable).parent / "hedgeform")
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
LEASE_KEY = f"hedgeform-lease/{BUCKET}/{PREFIX}/{SERVICE}"  # engine/backend_store.item_key
RECORD_KEY = f"hedgeform-record/{BUCKET}/{PREFIX}/{SERVICE}"


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
    # The memory moved too (it used to stay behind in reconciler.json, no longer read).
    assert f"the reconciler's record now in DynamoDB table {TABLE}" in out, out
    moved_record = DynamoDBRecords(client(url, "dynamodb"), TABLE, RECORD_KEY).load()
    assert moved_record.memory.target == 2
    assert not (root / "state" / SERVICE / "reconciler.json").exists()
    moved = {s: remote_replicas(url, s) for s in ("local-1", "local-2")}
    assert sum(len(r) for r in moved.values()) >= 2, moved
    out = hedgeform(root, remote, "apply", SERVICE, "--timeout", "120")
    assert "0 to create" in out, out
    assert {s: remote_replicas(url, s) for s in ("local-1", "local-2")} == moved
    hedgeform(root, remote, "destroy", SERVICE)


def ticks(root: Path) -> list[dict[str, Any]]:
    path = root / "state" / SERVICE / "ticks.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def acted(root: Path) -> list[dict[str, Any]]:
    return [r for r in ticks(root) if "decision" in r]


def settled(root: Path) -> bool:
    """The loop's last two ticks changed nothing (so it runs no Terraform that locks)."""
    last = acted(root)[-2:]
    return len(last) == 2 and all("(no changes)" in r["plan"] for r in last)


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> float:
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout_s, f"timed out after {timeout_s} s: {what}"
        time.sleep(0.25)
    return time.monotonic() - start


def test_two_hosts_one_acts_and_the_other_takes_over_after_kill_9_of_the_leader(
    short_tmp: Path, url: str
) -> None:
    """Two loops on two "hosts" (two project roots, each with its own sandbox) share one S3
    backend: the one holding the lease acts, the other stands by and applies nothing; after
    `kill -9` of the leader the standby takes over within the lease period (10 s here) and
    converges, and the state never holds more replicas than the service wants."""
    lease = 10.0
    with (
        project_root(short_tmp / "a", {SERVICE: SPEC}) as host_a,
        project_root(short_tmp / "b", {SERVICE: SPEC}) as host_b,
    ):

        def start(root: Path) -> subprocess.Popen[bytes]:
            env = {**os.environ, **env_for(url, S3_BACKEND)}
            argv = [HEDGEFORM, "run", SERVICE, "--interval", "1", "--lease", str(lease)]
            return subprocess.Popen(
                [*argv, "--root", str(root)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )

        seen: list[int] = []

        def replicas_now() -> int:
            count = sum(len(remote_replicas_or_none(url, s)) for s in ("local-1", "local-2"))
            seen.append(count)
            return count

        leader = start(host_a)
        standby: subprocess.Popen[bytes] | None = None
        try:
            # Killed between ticks, not during an apply: a Terraform killed mid-apply leaves
            # its DynamoDB state lock behind (docs/operations.md, "Several hosts").
            wait_for(lambda: replicas_now() == 2 and settled(host_a), 120, "leader converged")
            standby = start(host_b)
            wait_for(lambda: sum("standby" in r["message"] for r in ticks(host_b)) >= 3, 60,
                     "the second loop standing by")  # fmt: skip
            assert acted(host_b) == []
            shown = hedgeform(host_b, env_for(url, S3_BACKEND), "status", SERVICE)
            assert f"leader: {socket.gethostname()}:{leader.pid}:" in shown, shown
            records = DynamoDBRecords(client(url, "dynamodb"), TABLE, RECORD_KEY)
            seq_before = records.load().memory.launch_seq
            assert seq_before >= 2  # the leader's memory is in the lock table
            os.killpg(leader.pid, signal.SIGKILL)
            leader.wait(10)
            try:
                took = wait_for(lambda: bool(acted(host_b)), lease + 30, "takeover")
            except AssertionError as exc:
                raise AssertionError(
                    f"{exc}; the standby's last records: {ticks(host_b)[-3:]}"
                ) from None
            assert took <= lease + 15, took
            wait_for(
                lambda: (
                    replicas_now() == 2
                    and any(not r["decision"]["launches"] for r in acted(host_b)[1:])
                ),
                120,
                "the new leader converged",
            )
            assert max(seen) <= 2, seen  # never a duplicate replica
            # The new leader continued the old one's memory (it did not start over): its
            # launches are numbered after the old leader's.
            launched = [x["id"] for r in acted(host_b) for x in r["decision"]["launches"]]
            assert launched and all(replica_seq(rid) >= seq_before for rid in launched), (
                seq_before,
                launched,
            )
            assert records.load().memory.launch_seq > seq_before
        finally:
            for proc in (leader, standby):
                if proc is not None and proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(60)
        hedgeform(host_b, env_for(url, S3_BACKEND), "destroy", SERVICE)
        assert remote_replicas(url, "local-1") == remote_replicas(url, "local-2") == set()
        # The killed leader's own sandbox processes are stopped by project_root.


def remote_replicas_or_none(url: str, stack: str) -> set[str]:
    try:
        return remote_replicas(url, stack)
    except Exception:  # no state object yet
        return set()


def test_a_host_that_never_applied_destroys_what_the_remote_state_holds(
    short_tmp: Path, url: str
) -> None:
    """The first host is gone; a person destroys the service from another one, which has no
    file of it. Destroy used to skip every stack without local tfvars, print "nothing left
    running" and exit 0 while the state in S3 still held the replicas. And while a loop on
    another host holds the leader lease, destroy is refused (that loop would re-create)."""
    with (
        project_root(short_tmp / "a", {SERVICE: SPEC}) as host_a,
        project_root(short_tmp / "b", {SERVICE: SPEC}) as host_b,
    ):
        hedgeform(host_a, env_for(url, S3_BACKEND), "apply", SERVICE, "--timeout", "120")
        before = {s: remote_replicas(url, s) for s in ("local-1", "local-2")}
        assert sum(len(r) for r in before.values()) >= 2, before
        env_b = env_for(url, S3_BACKEND)
        shown = hedgeform(host_b, env_b, "status", SERVICE)  # it sees what host a made
        for replica in set().union(*before.values()):
            assert replica in shown, shown
        # (No `plan` from host b here: each root runs its own sandbox cloud, in which host
        # a's replica processes are not running, so it would rightly replace them.)
        dynamodb = client(url, "dynamodb")
        lease_key = {"LockID": {"S": LEASE_KEY}}
        dynamodb.put_item(
            TableName=TABLE,
            Item={
                **lease_key,
                "holder": {"S": "elsewhere:4242:cafe0001"},
                "expires_at": {"N": repr(time.time() + 300)},
            },
        )
        out = hedgeform(host_b, env_b, "destroy", SERVICE, code=1)
        assert "elsewhere:4242:cafe0001" in out and "holds the leader lease" in out, out
        # A manual apply (or a timer's) does not act beside a loop that leads, either.
        out = hedgeform(host_b, env_b, "apply", SERVICE, "--no-wait", code=1)
        assert "holds the leader lease" in out and "nothing was applied" in out, out
        assert "Traceback" not in out
        assert {s: remote_replicas(url, s) for s in ("local-1", "local-2")} == before
        dynamodb.delete_item(TableName=TABLE, Key=lease_key)
        out = hedgeform(host_b, env_b, "destroy", SERVICE)
        for stack in STACKS:
            assert f"destroyed stack {stack}" in out, out
        assert remote_replicas(url, "local-1") == remote_replicas(url, "local-2") == set()
        # only the launch sequence is left of the record: replica ids never repeat
        kept = DynamoDBRecords(dynamodb, TABLE, RECORD_KEY).load()
        assert kept == Record(memory=Memory(launch_seq=kept.memory.launch_seq)), kept
        assert kept.memory.launch_seq >= 2
        assert "Item" not in dynamodb.get_item(TableName=TABLE, Key=lease_key)  # released
