"""Several GPU types in one service on the live path (issue 15): each (zone, type) is a pool
of its own, every replica carries its type into its stack and runs on that type's instance,
and a service of one type renders exactly as before. Terraform and the cloud APIs are faked;
tests/e2e/test_sandbox_mix.py runs the sandbox for real."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from reconciler.backends.clouds import ProviderCloud
from reconciler.backends.sandbox import SandboxCloud, SandboxSettings, sandbox_types, zone_offers
from reconciler.engine.reconcile import Reconciler
from reconciler.errors import CloudConfigError
from reconciler.paths import NAME_RE, ServicePaths
from reconciler.policy import (
    Market,
    Memory,
    Notice,
    NoticeKind,
    Observation,
    Replica,
    ReplicaState,
    Signals,
    hedgeform_mix,
)
from reconciler.policy.changes import replica_id
from reconciler.spec import load_spec, parse_spec
from reconciler.stacks import ManagedReplica, in_pools, pool_name, split_pool
from reconciler.terraform.fake import FakeTerraformRunner
from tests.clouds.test_render_contract import assert_contract
from tests.engine.cloud_fakes import REPO, SENTINEL, FakeApis, settings

MIX_AWS = "llama-mix-aws"


def test_a_pool_names_its_replicas_with_safe_ids() -> None:
    rid = replica_id("us-east-1a/A100-80GB", Market.SPOT, 7)
    assert rid == "us-east-1a-a100-80gb-spot-7"
    assert NAME_RE.fullmatch(rid)
    assert replica_id("local-1a", Market.ON_DEMAND, 3) == "local-1a-od-3"  # as before


@given(
    st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}", fullmatch=True),
    st.from_regex(r"([A-Za-z0-9][A-Za-z0-9_.-]{0,10})?", fullmatch=True),
)
def test_a_pool_name_splits_back_into_zone_and_type(zone: str, accelerator: str) -> None:
    assert split_pool(pool_name(zone, accelerator)) == (zone, accelerator)


def test_the_sandbox_offers_a_pool_per_type_of_a_set_and_plain_zones_otherwise() -> None:
    mix = load_spec(REPO / "services" / "llama-mix.yaml")
    offers = zone_offers(mix)
    assert len(offers) == 6
    assert {o.zone for o in offers if o.accelerator == "A10G"} == {
        "local-1a/A10G",
        "local-1b/A10G",
        "local-2a/A10G",
    }
    by_type = {o.accelerator: o for o in offers}
    # AWS list prices of g6.xlarge and g5.xlarge; spot a third, as the sandbox's own prices
    assert by_type["L4"].on_demand_price == pytest.approx(0.8048)
    assert by_type["A10G"].on_demand_price == pytest.approx(1.006)
    assert by_type["L4"].spot_price == pytest.approx(0.8048 / 3)
    plain = load_spec(REPO / "services" / "llama.yaml")
    assert [o.zone for o in zone_offers(plain)] == ["local-1a", "local-1b", "local-2a"]
    assert all(o.accelerator == "" for o in zone_offers(plain))


def test_a_sandbox_type_aws_does_not_offer_names_the_field() -> None:
    text = (REPO / "services" / "llama-mix.yaml").read_text()
    text = text.replace("{L4: 1, A10G: 1}", "{L4: 1, TPU-v9: 1}").replace("A10G: 8", "TPU-v9: 8")
    data = yaml.safe_load(text)
    spec = parse_spec(data, name="x", source="x.yaml")
    with pytest.raises(CloudConfigError, match=r"^resources\.accelerators: the sandbox prices"):
        sandbox_types(spec)


def test_a_policy_that_places_by_zone_gets_no_pools(tmp_path: Path) -> None:
    spec = load_spec(REPO / "services" / "llama-mix.yaml")
    cloud = SandboxCloud(tmp_path, SandboxSettings(), spec=spec, several_types=False)
    assert not cloud.typed_pools and cloud.pool_types == {}


def test_notices_and_replicas_are_seen_in_their_pools() -> None:
    observation = Observation(
        (Replica("a-l4-spot-0", "local-1a", Market.SPOT, ReplicaState.READY, 0.0),), ()
    )
    managed = [ManagedReplica("a-l4-spot-0", "local-1a", Market.SPOT, accelerator="L4")]
    assert in_pools(observation, managed).replicas[0].zone == "local-1a/L4"
    untyped = [ManagedReplica("a-l4-spot-0", "local-1a", Market.SPOT)]
    assert in_pools(observation, untyped) is observation


def test_the_service_memory_shows_what_each_types_memory_knows() -> None:
    """The engine drains warned replicas and `status` shows verdicts from the service's
    memory: with several types they live in the types' memories, merged up each tick."""
    spec = load_spec(REPO / "services" / "llama-mix.yaml")
    offers = zone_offers(spec)
    replicas = tuple(
        Replica(rid, pool, Market.SPOT, ReplicaState.READY, 0.0)
        for rid, pool in (("a-l4-spot-0", "local-1a/L4"), ("b-l4-spot-1", "local-1b/L4"))
    )
    warning = Notice(NoticeKind.WARNING, "a-l4-spot-0", "local-1a/L4", 100.0)
    decision = hedgeform_mix(
        spec, Observation(replicas, offers), Signals(qps=1.0, qps_at=100.0, notices=(warning,)),
        Memory(), 100.0,
    )  # fmt: skip
    assert "a-l4-spot-0" in {rid for rid, _ in decision.memory.warned}
    assert decision.memory.version == 1 and dict(decision.memory.groups)


def mix_reconciler(root: Path, policy: str = "hedgeform") -> Reconciler:
    paths = ServicePaths.for_service(MIX_AWS, root=root)
    spec = load_spec(paths.spec_file)
    backend = ProviderCloud(
        paths, spec, settings(dns=False), apis={"aws": FakeApis()},
        several_types=policy == "hedgeform",
    )  # fmt: skip
    return Reconciler(
        paths,
        spec,
        SandboxSettings(),
        runner_factory=lambda stack, *_: FakeTerraformRunner(name=stack),
        backend=backend,
        policy=policy,
    )


def test_aws_runs_each_replica_on_its_own_types_instance(mix_root: Path) -> None:
    rec = mix_reconciler(mix_root)
    assert rec.cloud.typed_pools
    # the policy sizes each type itself: the per-accelerator map is not collapsed
    assert rec.policy_spec.service.replica_policy.target_qps_per_replica is None
    note = next(n for n in rec.notes if n.startswith("aws us-east-1 offers "))
    assert "L4 (g6.xlarge, $0.8" in note and "A10G (g5.xlarge, $1.01/h on demand)" in note
    result = rec.run_pass(apply=False, render_only=True)
    assert not result.failed
    path = mix_root / "state" / MIX_AWS / "aws-us-east-1" / "terraform.tfvars.json"
    rendered = json.loads(path.read_text())
    assert_contract("aws", rendered)
    assert rendered["accelerator_types"] == {
        "L4": {"instance_type": "g6.xlarge", "accelerator_name": "L4", "accelerator_count": 1},
        "A10G": {"instance_type": "g5.xlarge", "accelerator_name": "A10G", "accelerator_count": 1},
    }
    typed = rendered["replica_accelerators"]
    assert set(typed) == set(rendered["replicas"]) and rendered["replicas"]
    for rid, gpu in typed.items():
        assert f"-{gpu.lower()}-" in rid
        assert rendered["replicas"][rid]["zone"] in ("us-east-1a", "us-east-1b", "us-east-1c")


def test_a_zone_placing_policy_runs_one_type_as_before(mix_root: Path) -> None:
    rec = mix_reconciler(mix_root, policy="spothedge")
    assert not rec.cloud.typed_pools
    rec.run_pass(apply=False, render_only=True)
    path = mix_root / "state" / MIX_AWS / "aws-us-east-1" / "terraform.tfvars.json"
    rendered = json.loads(path.read_text())
    assert "replica_accelerators" not in rendered and "accelerator_types" not in rendered
    assert rendered["instance_type"] in ("g5.xlarge", "g6.xlarge")


def test_observe_reads_each_replicas_type_back_from_state() -> None:
    from reconciler.clouds.aws.state import read_replica

    tags = {"hedgeform:market": "spot", "hedgeform:version": "1", "hedgeform:gpu-type": "A10G"}
    address = read_replica(
        "us-east-1a-a10g-spot-0", {"tags": tags, "availability_zone": "us-east-1a"}
    )
    assert address.accelerator == "A10G"
    del tags["hedgeform:gpu-type"]
    assert read_replica("x", {"tags": tags, "availability_zone": "us-east-1a"}).accelerator == ""


def test_plan_says_when_the_sidecars_mix_settings_are_unused(mix_root: Path) -> None:
    (mix_root / "services" / f"{MIX_AWS}.hedgeform.yaml").write_text("mix: {caps: {L4: 2}}\n")
    used = mix_reconciler(mix_root)
    assert not any("mix settings are unused" in n for n in used.notes)
    unused = mix_reconciler(mix_root, policy="spothedge")
    # (before: "policy spothedge runs several GPU types as pools", the opposite)
    assert (
        f"{MIX_AWS}.hedgeform.yaml: its mix settings are unused: policy spothedge does not run "
        "several GPU types as pools (docs/mix.md)"
    ) in unused.notes


def _mix_spec(tmp_path: Path, resources: str) -> Path:
    text = (REPO / "services" / "llama-mix.yaml").read_text()
    start, end = text.index("\nresources:"), text.index("  use_spot: true")
    path = tmp_path / "pz.yaml"
    path.write_text(text[:start] + "\nresources:\n" + resources + text[end:])
    return path


def test_a_set_in_one_region_types_every_zone_of_the_sandbox(tmp_path: Path) -> None:
    """A user-eye check: a set in local-1 and one type in local-2 made a type named "" and a
    record the next pass could not read. Every zone is typed now."""
    spec = load_spec(
        _mix_spec(
            tmp_path,
            "  any_of:\n"
            "    - {cloud: local, region: local-1, zone: local-1a}\n"
            "    - {cloud: local, region: local-1, zone: local-1b}\n"
            "    - {cloud: local, region: local-2, zone: local-2a, accelerators: A10G}\n",
        )
    )
    offers = zone_offers(spec)
    assert {o.zone for o in offers} == {
        "local-1a/L4", "local-1a/A10G", "local-1b/L4", "local-1b/A10G", "local-2a/A10G"
    }  # fmt: skip
    decision = hedgeform_mix(spec, Observation((), offers), Signals(), Memory(), 0.0)
    assert all(name for name, _ in decision.memory.groups)
    assert Memory.from_json(decision.memory.to_json()) == decision.memory  # readable again


def test_zones_of_one_sandbox_region_asking_for_different_types_are_refused(
    tmp_path: Path,
) -> None:
    text = (
        "service:\n  readiness_probe: /health\n  replica_policy: {min_replicas: 1}\n"
        "resources:\n  any_of:\n"
        "    - {cloud: local, region: local-1, zone: local-1a, accelerators: L4}\n"
        "    - {cloud: local, region: local-1, zone: local-1b, accelerators: A10G}\n"
        "run: echo\n"
    )
    path = tmp_path / "pz4.yaml"
    path.write_text(text)
    with pytest.raises(CloudConfigError, match="the entries for local local-1 ask for different"):
        sandbox_types(load_spec(path))


def test_max_replicas_caps_the_replicas_of_all_types() -> None:
    """A user-eye check: at 60 requests/s llama-mix (max 6) ran 8 replicas, 12 with A10G's
    spot gone. SkyServe's max_replicas caps the count."""
    spec = load_spec(REPO / "services" / "llama-mix.yaml")
    offers = zone_offers(spec)
    memory = Memory()
    for tick in range(0, 4000, 60):  # past the upscale delay, at 60 requests/s
        decision = hedgeform_mix(
            spec, Observation((), offers), Signals(qps=60.0, qps_at=float(tick)), memory,
            float(tick),
        )  # fmt: skip
        memory = decision.memory
        counts = {t: m.target or 0 for t, m in memory.groups}
        assert sum(counts.values()) <= 6, (tick, counts)
    # the rate is held to what 6 of the largest serve (45 requests/s in units of 5)
    assert sum(counts.values()) == 6 and 5 * counts["L4"] + 8 * counts["A10G"] >= 45
    no_a10g_spot = tuple(
        replace(o, spot_price=None) if o.accelerator == "A10G" else o for o in offers
    )
    decision = hedgeform_mix(
        spec, Observation((), no_a10g_spot), Signals(qps=60.0, qps_at=4000.0), memory, 4000.0
    )
    assert sum(m.target or 0 for _, m in decision.memory.groups) <= 6


def test_leaving_the_mix_forgets_the_pools() -> None:
    """A user-eye check: after a set became one type, `status` kept reporting retry delays
    of a pool that no longer existed."""
    from reconciler.policy.memory import Backoff

    spec = load_spec(REPO / "services" / "llama-mix.yaml")
    offers = zone_offers(spec)
    refused = Backoff("capacity", 1, 0.0, 100.0)
    group = replace(Memory(), zone_backoff={"local-1a/L4": refused}, target=2)
    memory = replace(Memory(), groups=(("L4", group), ("A10G", Memory())))
    mixed = hedgeform_mix(spec, Observation((), offers), Signals(), memory, 50.0)
    assert "local-1a/L4" in mixed.memory.zone_backoff  # shown by `status` while mixing
    plain = load_spec(REPO / "services" / "llama.yaml")
    single = hedgeform_mix(
        plain, Observation((), zone_offers(plain)), Signals(), mixed.memory, 60.0
    )
    assert single.memory.groups == ()
    assert not any("/" in z for z in single.memory.zone_backoff)


# ---------------------------------------------------------------- GCP and Azure (issue 15)

AZURE_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITestKeyOnly hedgeform"
CLOUD_ZONES = {
    "aws": ("us-east-1", ("us-east-1a", "us-east-1b")),
    "gcp": ("us-central1", ("us-central1-a", "us-central1-b")),
    "azure": ("eastus", ("eastus-1", "eastus-2")),
}


def _cloud_mix_reconciler(root: Path, clouds: tuple[str, ...], gpus: tuple[str, str]) -> Reconciler:
    """A mixed service (an any-of set of two GPU types, per-type targets) over two zones of
    one region of each of `clouds`, rendered with faked Terraform and cloud APIs."""
    name = "mix-" + "-".join(clouds)
    text = (REPO / "services" / f"{MIX_AWS}.yaml").read_text()
    start, end = text.index("\nresources:"), text.index("  use_spot: true")
    locations = "".join(
        f"    - {{cloud: {cloud}, region: {CLOUD_ZONES[cloud][0]}, zone: {zone}}}\n"
        for cloud in clouds
        for zone in CLOUD_ZONES[cloud][1]
    )
    text = text[:start] + "\nresources:\n  any_of:\n" + locations + text[end:]
    text = text.replace("{L4: 1, A10G: 1}", f"{{{gpus[0]}: 1, {gpus[1]}: 1}}")
    text = text.replace("      L4: 5\n      A10G: 8", f"      {gpus[0]}: 5\n      {gpus[1]}: 8")
    (root / "services").mkdir(parents=True, exist_ok=True)
    (root / "services" / f"{name}.yaml").write_text(text)
    if not (root / "terraform").exists():
        (root / "terraform").symlink_to(REPO / "terraform")
    paths = ServicePaths.for_service(name, root=root)
    spec = load_spec(paths.spec_file)
    base = settings(dns=False)
    provider_settings = replace(
        base,
        cloud=replace(base.cloud, azure_admin_ssh_public_key=AZURE_KEY),
        azure_subscription_id="00000000-0000-0000-0000-000000000000",
    )
    backend = ProviderCloud(
        paths, spec, provider_settings, apis={cloud: FakeApis() for cloud in clouds}
    )
    return Reconciler(
        paths,
        spec,
        SandboxSettings(),
        runner_factory=lambda stack, *_: FakeTerraformRunner(name=stack),
        backend=backend,
        policy="hedgeform",
    )


def _rendered(root: Path, rec: Reconciler, stack: str) -> dict[str, object]:
    path = root / "state" / rec.spec.name / stack / "terraform.tfvars.json"
    rendered: dict[str, object] = json.loads(path.read_text())
    return rendered


@pytest.mark.parametrize(
    ("cloud", "gpus", "entries"),
    [
        (
            "gcp",
            ("L4", "T4"),
            {  # the L4 is built into G2; the T4 is attached to an N1 machine
                "L4": {"machine_type": "g2-standard-8", "guest_accelerator_type": "",
                       "accelerator_name": "L4", "accelerator_count": 1},
                "T4": {"machine_type": "n1-standard-8",
                       "guest_accelerator_type": "nvidia-tesla-t4",
                       "accelerator_name": "T4", "accelerator_count": 1},
            },
        ),
        (
            "azure",
            ("T4", "A10"),
            {
                "T4": {"vm_size": "Standard_NC4as_T4_v3", "accelerator_name": "T4",
                       "accelerator_count": 1},
                "A10": {"vm_size": "Standard_NV36ads_A10_v5", "accelerator_name": "A10",
                        "accelerator_count": 1},
            },
        ),
    ],
)  # fmt: skip
def test_gcp_and_azure_run_each_replica_on_its_own_types_machine(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cloud: str,
    gpus: tuple[str, str],
    entries: dict[str, dict[str, object]],
) -> None:
    monkeypatch.setenv("HF_TOKEN", SENTINEL)
    rec = _cloud_mix_reconciler(tmp_path, (cloud,), gpus)
    assert rec.cloud.typed_pools
    region = CLOUD_ZONES[cloud][0]
    assert any(n.startswith(f"{cloud} {region} offers ") for n in rec.notes)
    result = rec.run_pass(apply=False, render_only=True)
    assert not result.failed
    rendered = _rendered(tmp_path, rec, f"{cloud}-{region}")
    assert_contract(cloud, rendered)
    assert rendered["accelerator_types"] == entries
    typed = rendered["replica_accelerators"]
    assert isinstance(typed, dict) and typed
    replicas = rendered["replicas"]
    assert isinstance(replicas, dict) and set(typed) == set(replicas)
    for rid, gpu in typed.items():
        assert f"-{gpu.lower()}-" in rid and gpu in entries


def test_a_service_with_gcp_and_aws_regions_gets_pools_everywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Until GCP's module ran a type per replica, a GCP region made every region of the
    service run one type, and `plan` said so."""
    monkeypatch.setenv("HF_TOKEN", SENTINEL)
    rec = _cloud_mix_reconciler(tmp_path, ("aws", "gcp"), ("L4", "T4"))
    assert rec.cloud.typed_pools
    assert not any("one type" in n for n in rec.notes), rec.notes
    assert {(c, r) for (c, r), types in rec.cloud.region_types.items() if len(types) == 2} == {
        ("aws", "us-east-1"),
        ("gcp", "us-central1"),
    }
    pools = {o.zone for o in rec.cloud.zone_offers(live=False)}
    assert {"us-central1-a/L4", "us-central1-a/T4", "us-east-1a/T4"} <= pools
    rec.run_pass(apply=False, render_only=True)
    gcp = _rendered(tmp_path, rec, "gcp-us-central1")
    aws = _rendered(tmp_path, rec, "aws-us-east-1")
    assert_contract("gcp", gcp)
    assert_contract("aws", aws)
    assert set(gcp["accelerator_types"]) == set(aws["accelerator_types"]) == {"L4", "T4"}  # type: ignore[arg-type]
    assert aws["accelerator_types"]["T4"]["instance_type"] == "g4dn.xlarge"  # type: ignore[index]


def test_types_on_one_machine_are_one_pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Azure runs A100 and A100-80GB on one VM size: two pools of one spot market would let
    the policy hedge a type against itself. GCP's T4 and V100 share an N1 machine type but
    not the attached GPU: two pools."""
    monkeypatch.setenv("HF_TOKEN", SENTINEL)
    azure = _cloud_mix_reconciler(tmp_path / "az", ("azure",), ("A100", "A100-80GB"))
    # one pool, the type that serves more requests/s on it (8 against 5)
    assert [c.accelerator for c in azure.cloud.region_types[("azure", "eastus")]] == ["A100-80GB"]
    assert not azure.cloud.typed_pools
    gcp = _cloud_mix_reconciler(tmp_path / "gcp", ("gcp",), ("T4", "V100"))
    choices = gcp.cloud.region_types[("gcp", "us-central1")]
    assert {(c.instance_type, c.guest_accelerator_type) for c in choices} == {
        ("n1-standard-8", "nvidia-tesla-t4"),
        ("n1-standard-8", "nvidia-tesla-v100"),
    }


def test_an_aws_region_runs_at_most_four_types_and_plan_names_the_rest(
    mix_root: Path,
) -> None:
    """An ALB forward takes five target groups: one per type and the shared one. A set of
    five types runs the four best ranked, and a note names the one left out (before: the
    module's validation refused the plan in Terraform's words)."""
    spec_file = mix_root / "services" / f"{MIX_AWS}.yaml"
    text = spec_file.read_text().replace(
        "{L4: 1, A10G: 1}", "{L4: 1, A10G: 1, T4: 1, L40S: 1, V100: 1}"
    )
    spec_file.write_text(text)
    rec = mix_reconciler(mix_root)
    kept = [c.accelerator for c in rec.cloud.region_types[("aws", "us-east-1")]]
    assert len(kept) == 4 and set(kept) < {"L4", "A10G", "T4", "L40S", "V100"}
    (left,) = {"L4", "A10G", "T4", "L40S", "V100"} - set(kept)
    assert f"aws us-east-1: at most 4 GPU types per region; not running {left}" in rec.notes
    result = rec.run_pass(apply=False, render_only=True)
    assert not result.failed
    rendered = _rendered(mix_root, rec, "aws-us-east-1")
    assert len(rendered["accelerator_types"]) == 4  # type: ignore[arg-type]


def test_a_type_the_zone_catalog_omits_is_priced_at_its_listed_spot_not_on_demand(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The per-zone catalog lists spot for few instance types; for the others every zone's
    spot was priced at on-demand, so the mix never chose them (a user-eye check: T4 lost to
    L4 on AWS). The list prices carry each type's lowest spot price in its source rows."""
    monkeypatch.setenv("HF_TOKEN", SENTINEL)
    rec = _cloud_mix_reconciler(tmp_path, ("aws",), ("T4", "L4"))  # T4 serves 5, L4 8
    offers = {o.zone: o for o in rec.cloud.zone_offers(live=False)}
    t4 = [o for zone, o in offers.items() if zone.endswith("/T4")]
    assert t4 and all(o.spot_price == pytest.approx(0.1845) for o in t4)
    assert all(o.on_demand_price == pytest.approx(0.526) for o in t4)
    rec.run_pass(apply=False, render_only=True)
    rendered = _rendered(tmp_path, rec, "aws-us-east-1")
    # $0.1845/h for 5 req/s beats the catalog's L4 spot ($0.33-0.38/h) for 8
    assert set(rendered["replica_accelerators"].values()) == {"T4"}  # type: ignore[union-attr]


def test_types_of_a_set_a_region_cannot_run_are_named_in_its_note(mix_root: Path) -> None:
    """Before: A10 (an Azure type) and H100:1 (AWS has H100 only by eight) were left out of
    an AWS mix without a word (only the types over the four a region runs were named)."""
    spec_file = mix_root / "services" / f"{MIX_AWS}.yaml"
    text = spec_file.read_text().replace("{L4: 1, A10G: 1}", "{L4: 1, A10G: 1, A10: 1, H100: 1}")
    spec_file.write_text(text)
    rec = mix_reconciler(mix_root)
    note = next(n for n in rec.notes if n.startswith("aws us-east-1 offers "))
    assert note.endswith(
        "; not running A10, H100 (the catalog has no instance of its own for it here)"
    ), note
    assert "L4 (g6.xlarge" in note and "A10G (g5.xlarge" in note
