"""GCP and Azure replica states (REST status + probe) against the HTTP fake, the Terraform
state reader for each cloud module, settings loading and zone expansion."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from reconciler.backends.clouds import expand_locations
from reconciler.clouds.apis import running_state
from reconciler.clouds.azure.apis import AzureApis
from reconciler.clouds.gcp.apis import GcpApis
from reconciler.clouds.registry import cloud_replicas
from reconciler.clouds.rest import StaticToken
from reconciler.clouds.settings import load_settings
from reconciler.errors import AdapterError, CloudConfigError, SettingsError
from reconciler.policy import ReplicaState
from reconciler.spec import load_spec
from reconciler.stacks import ManagedReplica
from reconciler.terraform.state import state_outputs
from tests.adapters.conftest import FakeApi, fake_api
from tests.engine.cloud_fakes import REPO

__all__ = ["fake_api"]  # fixture
SPEC = load_spec(REPO / "services" / "llama-cloud.yaml")
SUB = "00000000-0000-0000-0000-000000000000"


def gcp_replica(name: str, market: str = "spot", ip: str = "127.0.0.1") -> ManagedReplica:
    return ManagedReplica(name, "us-central1-a", market, False, "gcp-us-central1", "1", name, ip)


def test_gcp_states_from_instances_get_and_the_probe(fake_api: FakeApi) -> None:
    now = time.time()
    project = "projects/hf-test/zones/us-central1-a/instances"
    fake_api.routes = {
        f"/{project}/ready": [(200, {"status": "RUNNING"})],
        f"/{project}/booting": [(200, {"status": "STAGING"})],
        f"/{project}/stopped": [(200, {"status": "TERMINATED"})],
        "/health": [(200, {"ok": True})],
    }
    apis = GcpApis(SPEC, "hf-test", StaticToken("t"), compute_url=fake_api.url)
    apis.port = int(urlsplit(fake_api.url).port or 0)
    replicas = [gcp_replica(n) for n in ("ready", "booting", "stopped", "gone")]
    replicas.append(gcp_replica("od-gone", market="on_demand"))
    views = apis.states("us-central1", replicas, {}, set(), {}, now)
    assert {rid: state for rid, (state, _) in views.items()} == {
        "ready": ReplicaState.READY,
        "booting": ReplicaState.PROVISIONING,
        "stopped": ReplicaState.PREEMPTED,  # a spot VM stopped without us: reclaimed
        "gone": ReplicaState.PREEMPTED,  # spot VMs are deleted on preemption
        "od-gone": ReplicaState.FAILED,
    }
    assert all(auth == "Bearer t" for _, _, auth in fake_api.requests if "instances" in _)


def test_azure_states_from_the_instance_view(fake_api: FakeApi) -> None:
    vm = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines"
    fake_api.routes = {
        f"{vm}/hf-a/instanceView": [(200, {"statuses": [{"code": "PowerState/running"}]})],
        f"{vm}/hf-b/instanceView": [(200, {"statuses": [{"code": "PowerState/starting"}]})],
        f"{vm}/hf-c/instanceView": [(200, {"statuses": [{"code": "PowerState/deallocated"}]})],
    }
    apis = AzureApis(SPEC, SUB, StaticToken("t"), arm_url=fake_api.url)

    def replica(name: str) -> ManagedReplica:
        rid = f"{vm}/hf-{name}"
        return ManagedReplica(
            name, "eastus-1", "spot", False, "azure-eastus", rid, f"hf-{name}", ""
        )

    now = time.time()
    views = apis.states("eastus", [replica(n) for n in "abcd"], {}, set(), {"a": now - 5}, now)
    assert {rid: state for rid, (state, _) in views.items()} == {
        "a": ReplicaState.STARTING,  # unreachable, within the initial delay
        "b": ReplicaState.PROVISIONING,
        "c": ReplicaState.FAILED,  # deallocated by someone: not an eviction (Delete policy)
        "d": ReplicaState.PREEMPTED,  # evicted spot VMs are deleted
    }
    assert all(q.get("api-version") for p, q, _ in fake_api.requests if p.endswith("View"))


@pytest.mark.parametrize(
    ("ok", "age", "expected"),
    [
        (True, 5, ReplicaState.READY),
        (None, 5, ReplicaState.STARTING),
        (None, 5000, ReplicaState.READY),  # unreachable: trust the LB health check
        (False, 5, ReplicaState.STARTING),
        (False, 5000, ReplicaState.NOT_READY),  # reachable and failing: not ready
    ],
)
def test_running_state_without_lb_health(
    ok: bool | None, age: float, expected: ReplicaState
) -> None:
    assert running_state(ok, 1000.0 - age, 1200.0, 1000.0) is expected


def _state(rtype: str, instances: list[dict[str, object]]) -> dict[str, object]:
    return {
        "version": 4,
        "outputs": {"stack": {"value": {"lb_ip_address": "203.0.113.7"}}},
        "resources": [
            {"module": "module.stack", "mode": "managed", "type": rtype, "name": "replica",
             "instances": instances},
            {"mode": "managed", "type": "google_compute_instance_group", "name": "zone",
             "instances": []},
        ],
    }  # fmt: skip


def test_tfstate_reader_for_gcp_and_azure(tmp_path: Path) -> None:
    gcp = tmp_path / "gcp-us-central1"
    gcp.mkdir()
    gce = {
        "name": "hf-llama-us-central1-a-spot-0",
        "instance_id": "123",
        "zone": "us-central1-a",
        "scheduling": [{"provisioning_model": "SPOT"}],
        "network_interface": [{"network_ip": "10.1.0.5"}],
    }
    instance = {"index_key": "us-central1-a-spot-0", "attributes": gce, "status": "tainted"}
    state = _state("google_compute_instance", [instance])
    (gcp / "terraform.tfstate").write_text(json.dumps(state))
    (r,) = cloud_replicas(gcp, "gcp")
    assert (r.id, r.zone, r.market, r.tainted, r.name, r.instance_id, r.private_ip) == (
        "us-central1-a-spot-0", "us-central1-a", "spot", True,
        "hf-llama-us-central1-a-spot-0", "123", "10.1.0.5",
    )  # fmt: skip
    assert state_outputs(gcp) == {"lb_ip_address": "203.0.113.7"}

    az = tmp_path / "azure-eastus"
    az.mkdir()
    vm = {"id": "/subscriptions/x/vm/hf-a", "name": "hf-a", "priority": "Regular", "zone": "2",
          "location": "eastus", "private_ip_address": "10.2.0.4", "tags": {}}  # fmt: skip
    state = _state(
        "azurerm_linux_virtual_machine", [{"index_key": "eastus-2-od-1", "attributes": vm}]
    )
    (az / "terraform.tfstate").write_text(json.dumps(state))
    (r,) = cloud_replicas(az, "azure")
    assert (r.zone, r.market, r.instance_id, r.private_ip) == (
        "eastus-2", "on_demand", "/subscriptions/x/vm/hf-a", "10.2.0.4",
    )  # fmt: skip
    assert cloud_replicas(tmp_path / "none", "aws") == []


def test_settings_from_the_file_and_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "svc.settings.yaml"
    path.write_text(
        "aws_images:\n  us-east-1: ami-0aaaaaaaaaaaaaaaa\n"
        "gcp_project: from-file\n"
        "dns: {domain_name: llama.example.com, zone_id: Z123}\n"
        "regions: {gcp: [us-east4]}\n"
    )
    env = {"HEDGEFORM_AWS_IMAGES": "us-west-2=ami-0bbbbbbbbbbbbbbbb", "GOOGLE_CLOUD_PROJECT": "env"}
    s = load_settings(path, env)
    assert s.cloud.images == {
        "aws:us-east-1": "ami-0aaaaaaaaaaaaaaaa",
        "aws:us-west-2": "ami-0bbbbbbbbbbbbbbbb",
    }
    assert s.cloud.gcp_project == "env"  # the environment wins
    assert s.has_front and s.zone_id == "Z123"
    assert s.default_regions == {"gcp": ("us-east4",)}
    assert load_settings(path, {"HEDGEFORM_GCP_REGIONS": "us-west1,us-east1"}).default_regions == {
        "gcp": ("us-west1", "us-east1")
    }
    assert load_settings(tmp_path / "missing.yaml", {}).cloud.images == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nope: 1\n", "unknown setting(s) nope"),
        ("aws_images: [1]\n", "`aws_images` must map names to strings"),
        ("dns: x\n", "`dns` must be a mapping"),
        ("[\n", "unreadable settings file"),
    ],
)
def test_bad_settings_files_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "svc.settings.yaml"
    path.write_text(text)
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_settings(path, {})


def test_zone_expansion() -> None:
    default = expand_locations(SPEC, {})
    assert {z for z, (c, _) in default.items() if c == "gcp"} == {
        "us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f",
    }  # fmt: skip
    assert {r for c, r in default.values() if c == "aws"} == {"us-east-1"}
    configured = expand_locations(SPEC, {"gcp": ("us-east4", "us-west1")})
    assert {r for c, r in configured.values() if c == "gcp"} == {"us-east4", "us-west1"}
    with pytest.raises(CloudConfigError, match="unknown gcp region 'mars1'"):
        expand_locations(SPEC, {"gcp": ("mars1",)})


def test_gcp_probes_replicas_in_parallel(
    fake_api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With exact probe timeouts, one unreachable replica may take `timeout_seconds`: the
    others must not wait behind it. Each probe here waits for all three to be in flight at
    once, which sequential probing can never satisfy (the barrier would break)."""
    project = "projects/hf-test/zones/us-central1-a/instances"
    fake_api.routes = {f"/{project}/r{i}": [(200, {"status": "RUNNING"})] for i in range(3)}
    apis = GcpApis(SPEC, "hf-test", StaticToken("t"), compute_url=fake_api.url)
    barrier = threading.Barrier(3, timeout=10)

    def running(replica: ManagedReplica, launched_at: float, now: float) -> ReplicaState:
        barrier.wait()
        return ReplicaState.READY

    monkeypatch.setattr(apis, "_running", running)
    views = apis.states("us-central1", [gcp_replica(f"r{i}") for i in range(3)], {}, set(), {}, 0)
    assert {state for state, _ in views.values()} == {ReplicaState.READY}


@pytest.mark.parametrize(
    ("label", "version"), [("4", 4), (None, 1), ("", 1), ("0", 1), ("v2", 1), ("1" * 12, 1)]
)
def test_gcp_and_azure_replicas_carry_their_version_from_the_label_or_tag(
    label: str | None, version: int
) -> None:
    """Instances launched before versions existed have none: version 1, what every replica
    was then; a value no module writes reads as 1 too, never a crash (issue 13)."""
    from reconciler.clouds.azure.state import read_replica as azure_replica
    from reconciler.clouds.gcp.state import read_replica as gcp_replica

    labels = {} if label is None else {"hedgeform-version": label}
    gce = {"name": "hf-a", "zone": "us-central1-a", "labels": labels}
    vm = {"name": "hf-a", "location": "eastus", "zone": "1", "tags": labels}
    assert gcp_replica("us-central1-a-spot-0", gce).version == version
    assert azure_replica("eastus-1-spot-0", vm).version == version


@pytest.mark.parametrize("gpu", ["L4", "A100-80GB", "H100"])
def test_gcp_and_azure_replicas_carry_their_gpu_type_from_the_label_or_tag(
    tmp_path: Path, gpu: str
) -> None:
    """A replica of a region running several GPU types carries its type (issue 15): GCP in
    the `hedgeform-gpu-type` label (lowercase, as GCP labels must be), Azure in the tag of
    that name; read back through the Terraform state reader as the catalog names it."""
    gcp = tmp_path / "gcp-us-central1"
    gcp.mkdir()
    rid = f"us-central1-a-{gpu.lower()}-spot-0"
    gce = {
        "name": f"hf-llama-{rid}",
        "instance_id": "123",
        "zone": "us-central1-a",
        "scheduling": [{"provisioning_model": "SPOT"}],
        "network_interface": [{"network_ip": "10.1.0.5"}],
        "labels": {"hedgeform-version": "2", "hedgeform-gpu-type": gpu.lower()},
    }
    state = _state("google_compute_instance", [{"index_key": rid, "attributes": gce}])
    (gcp / "terraform.tfstate").write_text(json.dumps(state))
    (r,) = cloud_replicas(gcp, "gcp")
    assert (r.accelerator, r.version) == (gpu, 2)

    az = tmp_path / "azure-eastus"
    az.mkdir()
    vm = {"id": "/subscriptions/x/vm/hf-a", "name": "hf-a", "priority": "Spot", "zone": "1",
          "location": "eastus", "tags": {"hedgeform-gpu-type": gpu}}  # fmt: skip
    rid = f"eastus-1-{gpu.lower()}-spot-0"
    state = _state("azurerm_linux_virtual_machine", [{"index_key": rid, "attributes": vm}])
    (az / "terraform.tfstate").write_text(json.dumps(state))
    (r,) = cloud_replicas(az, "azure")
    assert r.accelerator == gpu


def test_gcp_and_azure_replicas_of_one_type_carry_none() -> None:
    from reconciler.clouds.azure.state import read_replica as azure_replica
    from reconciler.clouds.gcp.state import read_replica as gcp_replica

    gce = {"name": "hf-a", "zone": "us-central1-a", "labels": {"hedgeform-version": "1"}}
    vm = {"name": "hf-a", "location": "eastus", "zone": "1", "tags": {}}
    assert gcp_replica("us-central1-a-spot-0", gce).accelerator == ""
    assert azure_replica("eastus-1-spot-0", vm).accelerator == ""
    assert gcp_replica("us-central1-a-spot-0", {"name": "hf-a", "labels": None}).accelerator == ""


def test_azure_tagged_instances_are_listed_by_tag_and_page(fake_api: FakeApi) -> None:
    """`hedgeform drift`'s unknown instances on Azure: Resource Manager's resource list of
    the subscription with the service's tag filter, VMs of the region only, every page
    followed on the same host; a nextLink to another host is refused."""
    path = f"/subscriptions/{SUB}/resources"
    vm = "Microsoft.Compute/virtualMachines"

    def page(_: str, query: dict[str, str]) -> tuple[int, dict[str, object]]:
        assert query["$filter"] == (f"tagName eq 'hedgeform-service' and tagValue eq '{SPEC.name}'")
        if query.get("page") == "2":
            return 200, {"value": [{"id": "/x/stray", "name": "stray", "type": vm,
                                    "location": "eastus"}]}  # fmt: skip
        return 200, {
            "value": [
                {"id": "/x/hf-b", "name": "hf-b", "type": vm, "location": "EastUS",
                 "zones": ["2"], "tags": {"hedgeform-replica": "eastus-2-spot-1"}},
                {"id": "/x/nic", "name": "hf-b-nic", "type": "Microsoft.Network/networkInterfaces",
                 "location": "eastus"},
                {"id": "/x/w", "name": "hf-w", "type": vm, "location": "westeurope"},
            ],
            "nextLink": f"{fake_api.url}{path}?page=2&$filter={query['$filter']}",
        }  # fmt: skip

    fake_api.routes = {path: page}
    apis = AzureApis(SPEC, SUB, StaticToken("t"), arm_url=fake_api.url)
    found = apis.tagged_instances("eastus", ["eastus-1"])
    assert [(i.id, i.name, i.zone, i.state, i.replica) for i in found] == [
        ("/x/stray", "stray", "", "", ""),
        ("/x/hf-b", "hf-b", "eastus-2", "", "eastus-2-spot-1"),
    ]
    assert fake_api.paths() == [path, path]
    fake_api.routes = {path: [(200, {"value": [], "nextLink": "https://elsewhere.example/x"})]}
    with pytest.raises(AdapterError, match="nextLink off"):
        apis.tagged_instances("eastus", [])


def test_gcp_tagged_instances_are_listed_by_label_per_zone_and_page(fake_api: FakeApi) -> None:
    """`hedgeform drift`'s unknown instances on GCP: `instances.list` of each zone with the
    service's label filter, every page followed."""
    base = "/projects/hf-test/zones"

    def page(path: str, query: dict[str, str]) -> tuple[int, dict[str, object]]:
        assert query["filter"] == f"labels.hedgeform-service={SPEC.name}"
        if query.get("pageToken") == "p2":
            return 200, {"items": [{"id": "3", "name": "stray", "status": "RUNNING"}]}
        items = [
            {"id": "1", "name": "hf-b", "status": "RUNNING", "labels": {"hedgeform-replica": "b"}},
            {"id": "2", "name": "hf-a", "status": "TERMINATED"},
        ]
        return 200, {"items": items, "nextPageToken": "p2"}

    fake_api.routes = {
        f"{base}/us-central1-a/instances": page,
        f"{base}/us-central1-b/instances": [(200, {})],
    }
    apis = GcpApis(SPEC, "hf-test", StaticToken("t"), compute_url=fake_api.url)
    found = apis.tagged_instances("us-central1", ["us-central1-b", "us-central1-a"])
    assert [(i.id, i.name, i.zone, i.state, i.replica) for i in found] == [
        ("2", "hf-a", "us-central1-a", "TERMINATED", ""),
        ("1", "hf-b", "us-central1-a", "RUNNING", "b"),
        ("3", "stray", "us-central1-a", "RUNNING", ""),
    ]
    assert [p for p in fake_api.paths() if p.endswith("/instances")] == [
        f"{base}/us-central1-a/instances",
        f"{base}/us-central1-a/instances",
        f"{base}/us-central1-b/instances",
    ]
