"""The leader lease and the record beside a GCS or azurerm state (engine/lease.ObjectLease,
engine/state_store.ObjectRecords) over clouds/objects.py, against an HTTP fake of both
object APIs: one holder at a time even when many race, takeover only after expiry, hand-over
on release; the record's round trip, stale writers, corrupt objects; access errors in one
line without the token."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from reconciler.clouds.objects import (
    AzureBlobs,
    ConditionalObjects,
    GcsObjects,
)
from reconciler.clouds.rest import StaticToken
from reconciler.engine import backend_store
from reconciler.engine.lease import LeaseKeeper, ObjectLease, lease_for
from reconciler.engine.state_store import ObjectRecords, Record
from reconciler.errors import StateError, WrittenMeanwhile
from reconciler.policy import Memory, ZoneStatus
from reconciler.terraform.backend import parse_state_backend
from tests.emulators.object_stores import ObjectStoreFake, serve

TOKEN = "ya29.secret-token-value"
REPO = Path(__file__).resolve().parents[2]
HEDGEFORM = str(Path(sys.executable).parent / "hedgeform")
NAME = "fleet/llama/hedgeform-lease.json"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake() -> Iterator[tuple[ObjectStoreFake, str]]:
    store = ObjectStoreFake()
    server, url = serve(store)
    try:
        yield store, url
    finally:
        server.shutdown()


Make = Callable[[], ConditionalObjects]


@pytest.fixture(params=["gcs", "azurerm"])
def make(request: pytest.FixtureRequest, fake: tuple[ObjectStoreFake, str]) -> Make:
    _, url = fake
    if request.param == "gcs":
        return lambda: GcsObjects("hf-state", StaticToken(TOKEN), base_url=url)
    return lambda: AzureBlobs("hfstate", "tfstate", StaticToken(TOKEN), base_url=url)


def test_one_holder_at_a_time_and_takeover_only_after_expiry(make: Make) -> None:
    clock = Clock()
    a = ObjectLease(make(), NAME, me="host-a", duration_s=60, clock=clock)
    b = ObjectLease(make(), NAME, me="host-b", duration_s=60, clock=clock)
    assert a.take() and not b.take()
    clock.now += 50
    assert a.take()  # renewed: good for another 60 s
    clock.now += 59
    assert not b.take()
    holder = b.holder()
    assert holder is not None and holder.holder == "host-a"
    clock.now += 2  # host-a stopped renewing 61 s ago
    assert b.take() and not a.take()
    assert a.holder() == b.holder()


def test_of_many_loops_racing_for_a_free_lease_exactly_one_wins(make: Make) -> None:
    """The read-then-write of take() is safe only through the precondition: without it every
    racer that read "free" would write and believe it holds the lease."""
    for _ in range(3):
        clock = Clock()
        leases = [ObjectLease(make(), NAME, me=f"host-{i}", clock=clock) for i in range(8)]
        for lease in leases:
            lease.release()
        leases[0].objects.delete(NAME)
        start = threading.Barrier(len(leases))
        won: list[str] = []

        threads = [threading.Thread(target=_race, args=(lease, start, won)) for lease in leases]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(won) == 1
        holder = leases[0].holder()
        assert holder is not None and holder.holder == won[0]


def _race(lease: ObjectLease, start: threading.Barrier, won: list[str]) -> None:
    start.wait()
    if lease.take():
        won.append(lease.me)


def test_release_hands_over_at_once_and_never_frees_another_holders_lease(make: Make) -> None:
    clock = Clock()
    a = ObjectLease(make(), NAME, me="host-a", clock=clock)
    b = ObjectLease(make(), NAME, me="host-b", clock=clock)
    other = ObjectLease(make(), "fleet/mistral/hedgeform-lease.json", me="host-b", clock=clock)
    assert a.take() and other.take()  # one lease per service
    b.release()  # not b's: nothing happens
    assert not b.take()
    a.release()
    assert b.take()


def test_an_unreadable_lease_object_counts_as_expired(
    make: Make, fake: tuple[ObjectStoreFake, str]
) -> None:
    objects = make()
    objects.put(NAME, b"{not json", if_token=None)
    lease = ObjectLease(objects, NAME, me="host-a", clock=Clock())
    assert lease.holder() is None
    assert lease.take()
    holder = lease.holder()
    assert holder is not None and holder.holder == "host-a"


def test_the_keeper_renews_an_object_lease_and_notices_a_loss(make: Make) -> None:
    clock = Clock()
    a = ObjectLease(make(), NAME, me="host-a", duration_s=30, clock=clock)
    b = ObjectLease(make(), NAME, me="host-b", duration_s=30, clock=clock)
    keeper = LeaseKeeper(a, every_s=0.01)
    assert keeper.take()
    clock.now += 25
    for _ in range(300):
        holder = a.holder()
        if holder is not None and holder.expires_at >= clock.now + 29:
            break
        keeper._stop.wait(0.01)
    else:
        pytest.fail("the keeper did not renew")
    # Another host forces it (as after a long pause of this one): the keeper sees the loss.
    forced = json.dumps({"holder": "host-b", "expires_at": clock.now + 30}).encode()
    for _ in range(100):
        current = b.objects.get(NAME)
        try:
            b.objects.put(NAME, forced, if_token=current.token if current else None)
            break
        except WrittenMeanwhile:  # a renewal came between: try again
            continue
    for _ in range(300):
        if not keeper.held:
            break
        keeper._stop.wait(0.01)
    assert not keeper.held
    keeper.stop()
    holder = b.holder()
    assert holder is not None and holder.holder == "host-b"  # stop() freed nothing of b's


def test_the_record_round_trips_and_refuses_a_stale_writer(make: Make) -> None:
    name = "fleet/llama/hedgeform-record.json"
    first = ObjectRecords(make(), name)
    assert first.load() == Record()
    memory = Memory(target=3, launch_seq=7, zone_status={"us-east-1a": ZoneStatus.PREEMPTED})
    first.save(Record(memory=memory, last_tick=12.5))
    first.save(Record(memory=memory, last_tick=12.75))  # its own writes follow each other
    second = ObjectRecords(make(), name)  # another host, starting fresh
    loaded = second.load()
    assert loaded.memory == memory and loaded.last_tick == 12.75
    second.save(replace(loaded, last_tick=13.0))
    with pytest.raises(StateError, match="another loop wrote the record"):
        first.save(Record(memory=memory, last_tick=99.0))  # read before the other wrote
    assert ObjectRecords(make(), name).load().last_tick == 13.0
    fresh = ObjectRecords(make(), name)
    fresh.save(Record(last_tick=1.0))  # saves over what is there: it loads first
    assert ObjectRecords(make(), name).load().last_tick == 1.0
    second.clear()
    assert ObjectRecords(make(), name).load() == Record()


def test_a_corrupt_record_object_is_refused_with_where_it_is_and_how_to_recover(
    make: Make, fake: tuple[ObjectStoreFake, str]
) -> None:
    name = "fleet/llama/hedgeform-record.json"
    objects = make()
    objects.put(name, b'{"version": 1, "memory": ', if_token=None)
    with pytest.raises(StateError) as caught:
        ObjectRecords(objects, name).load()
    message = str(caught.value)
    assert message.startswith(objects.where(name) + ": cannot read the reconciler's record")
    assert objects.remove_command(name) in message and "\n" not in message
    stored = objects.get(name)  # never silently reset
    assert stored is not None and stored.data == b'{"version": 1, "memory": '


def test_refused_access_is_one_line_naming_the_object_never_the_token(
    make: Make, fake: tuple[ObjectStoreFake, str]
) -> None:
    store, _ = fake
    store.deny = True
    lease = ObjectLease(make(), NAME, me="host-a", clock=Clock())
    with pytest.raises(StateError) as caught:
        lease.take()
    message = str(caught.value)
    assert "HTTP 403" in message and "hedgeform-lease.json" in message
    assert TOKEN not in message and "\n" not in message
    assert all(headers.get("Authorization") == f"Bearer {TOKEN}" for _, _, headers in store.seen)


def test_an_unreachable_store_is_one_line() -> None:
    objects = GcsObjects("hf-state", StaticToken(TOKEN), base_url="http://127.0.0.1:9")
    objects.http.session.mount("http://", __import__("requests").adapters.HTTPAdapter())
    with pytest.raises(StateError, match=r"^gs://hf-state/x\.json: cannot reach Cloud Storage"):
        objects.get("x.json")


@pytest.mark.parametrize(
    ("url", "lease_name", "record_name"),
    [
        ("gcs://hf-state/fleet", "fleet/llama/hedgeform-lease.json", "hedgeform-record.json"),
        ("azurerm://hfstate/tfstate", "llama/hedgeform-lease.json", "hedgeform-record.json"),
    ],
)
def test_a_gcs_or_azurerm_backend_gets_an_object_lease_beside_the_stacks(
    url: str,
    lease_name: str,
    record_name: str,
    fake: tuple[ObjectStoreFake, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend = parse_state_backend(url, "HEDGEFORM_STATE_BACKEND")
    objects = GcsObjects("hf-state", StaticToken(TOKEN), base_url=fake[1])
    monkeypatch.setattr("reconciler.engine.lease.object_store", lambda _: objects)
    lease = lease_for(backend, "llama", duration_s=20)
    assert isinstance(lease, ObjectLease)
    assert lease.name == lease_name and lease.duration_s == 20
    assert backend_store.object_name(backend, "llama", "record").endswith("llama/" + record_name)
    # Never inside a stack's folder, where Terraform keeps that stack's state.
    assert backend.state_key("llama", "lease").startswith(lease_name.rsplit("/", 1)[0] + "/")
    assert backend_store.object_name(backend, "llama", "lease") != backend.state_key(
        "llama", "hedgeform-lease.json"
    )


def test_no_azure_credentials_is_one_line_not_the_sdks_dozen(tmp_path: Path) -> None:
    """DefaultAzureCredential logged every credential it tried (13 lines on stderr) before
    the one line that says what to do."""
    (tmp_path / "services").mkdir()
    shutil.copy(REPO / "services" / "llama.yaml", tmp_path / "services" / "llama.yaml")
    (tmp_path / "terraform").symlink_to(REPO / "terraform")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "HEDGEFORM_STATE_BACKEND": "azurerm://hfacct/tfstate/p",
        "AZURE_CONFIG_DIR": str(tmp_path / "az"),
    }
    done = subprocess.run(
        [HEDGEFORM, "status", "llama", "--root", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "Azure credentials not found or not usable" in lines[0]
