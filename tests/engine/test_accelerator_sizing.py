"""A per-accelerator `target_qps_per_replica` on real clouds: the policy sizes replicas with
the target of the accelerator each region stack runs (the catalog's choice), and `plan`
says which accelerator runs where and why. Terraform and the cloud APIs are faked."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.backends.clouds import ProviderCloud
from reconciler.backends.sandbox import SandboxSettings
from reconciler.cli import main
from reconciler.engine.reconcile import Reconciler
from reconciler.paths import ServicePaths
from reconciler.policy import MIXING_POLICIES
from reconciler.spec import load_spec
from reconciler.terraform.fake import FakeTerraformRunner
from tests.engine.cloud_fakes import SENTINEL, SERVICE, FakeApis, make_root, settings

POLICY = """\
  replica_policy:
    min_replicas: 2
    max_replicas: 5
    target_qps_per_replica: {A100: 8, L4: 3}
  load_balancing_policy: instance_aware_least_load
"""


def write_spec(root: Path, resources: str) -> None:
    path = root / "services" / f"{SERVICE}.yaml"
    text = path.read_text()
    start = text.index("  replica_policy:")
    end = text.index("\nresources:")
    text = text[:start] + POLICY + text[end:]
    start = text.index("\nresources:")
    end = text.index("\nenvs:")
    path.write_text(text[:start] + "\nresources:\n" + resources + text[end:])


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HF_TOKEN", SENTINEL)
    return make_root(tmp_path)


def reconciler(root: Path, policy: str = "hedgeform") -> Reconciler:
    paths = ServicePaths.for_service(SERVICE, root=root)
    spec = load_spec(paths.spec_file)
    apis = {"aws": FakeApis({"us-east-1a": 0.30}), "gcp": FakeApis()}
    backend = ProviderCloud(
        paths, spec, settings(), apis=apis, several_types=policy in MIXING_POLICIES
    )
    return Reconciler(
        paths,
        spec,
        SandboxSettings(),
        runner_factory=lambda stack, *_: FakeTerraformRunner(name=stack),
        backend=backend,
        policy=policy,
    )


def test_an_accelerator_set_is_sized_with_the_target_of_the_type_that_runs(root: Path) -> None:
    write_spec(
        root,
        "  any_of:\n    - cloud: aws\n      region: us-east-1\n    - cloud: gcp\n"
        "  use_spot: true\n  accelerators: {A100: 1, L4: 1}\n  ports: 8081\n",
    )
    # A policy that places by zone runs one type per region (the default one mixes: below).
    rec = reconciler(root, policy="spothedge")
    # AWS offers no single A100; on GCP L4 (g2-standard-8) lists below A100 (a2-highgpu-1g).
    assert rec.cloud.accelerators_in_use == frozenset({"L4"})
    assert rec.policy_spec.service.replica_policy.target_qps_per_replica == 3.0
    assert rec.spec.service.replica_policy.target_qps_per_replica is None  # the spec as written
    result = rec.run_pass(apply=False, render_only=True)
    assert not result.failed
    assert any(n.startswith("gcp us-central1 runs L4:1 on g2-standard-8") for n in rec.notes)
    assert rec.notes[-1].startswith("replicas sized at 3 requests/s each")


def test_the_default_policy_runs_each_type_a_region_offers_as_pools(root: Path) -> None:
    """Issue 15: GCP's module runs a type per replica, so the set becomes pools there too."""
    write_spec(
        root,
        "  any_of:\n    - cloud: aws\n      region: us-east-1\n    - cloud: gcp\n"
        "  use_spot: true\n  accelerators: {A100: 1, L4: 1}\n  ports: 8081\n",
    )
    rec = reconciler(root)
    assert rec.cloud.typed_pools
    assert rec.cloud.accelerators_in_use == frozenset({"A100", "L4"})
    assert [c.accelerator for c in rec.cloud.region_types[("gcp", "us-central1")]] == [
        "L4",
        "A100",
    ]
    assert [c.accelerator for c in rec.cloud.region_types[("aws", "us-east-1")]] == ["L4"]
    assert rec.policy_spec.service.replica_policy.target_qps_per_replica is None  # per type
    assert any(n.startswith("gcp us-central1 offers L4 (g2-standard-8") for n in rec.notes)
    assert not rec.run_pass(apply=False, render_only=True).failed


def test_regions_running_different_types_are_sized_at_the_smaller_target(root: Path) -> None:
    write_spec(
        root,
        "  any_of:\n    - cloud: aws\n      region: us-east-1\n      accelerators: L4\n"
        "    - cloud: gcp\n      accelerators: A100\n"
        "  use_spot: true\n  ports: 8081\n",
    )
    rec = reconciler(root)
    assert rec.cloud.accelerators_in_use == frozenset({"A100", "L4"})
    assert rec.policy_spec.service.replica_policy.target_qps_per_replica == 3.0
    assert rec.notes == (
        "replicas sized at 3 requests/s each: the smallest target of the accelerators in use "
        "(A100, L4); targets {A100: 8, L4: 3}",
    )


def test_plan_prints_the_choice_and_the_sizing(root: Path) -> None:
    write_spec(
        root,
        "  any_of:\n    - cloud: aws\n      region: us-east-1\n    - cloud: gcp\n"
        "  use_spot: true\n  accelerators: {A100: 1, L4: 1}\n  ports: 8081\n",
    )
    (root / "services" / f"{SERVICE}.settings.yaml").write_text(
        "aws_images:\n  us-east-1: ami-0123456789abcdef0\ngcp_project: hedgeform-test\n"
    )
    result = CliRunner().invoke(
        main, ["plan", SERVICE, "--root", str(root), "--render-only", "--policy", "spothedge"]
    )
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if line.startswith("note: ")]
    assert [n.split(" (")[0] for n in notes] == [
        "note: aws us-east-1 runs L4:1 on g6.xlarge",
        "note: gcp us-central1 runs L4:1 on g2-standard-8",
        "note: replicas sized at 3 requests/s each: the smallest target of the accelerators in use",
    ]


def test_a_type_no_cloud_offers_is_one_line_naming_the_file_and_field(root: Path) -> None:
    write_spec(
        root,
        "  any_of:\n    - cloud: aws\n      region: us-east-1\n    - cloud: gcp\n"
        "  use_spot: true\n  accelerators: {A100: 1, FOO: 1}\n  ports: 8081\n",
    )
    (root / "services" / f"{SERVICE}.yaml").write_text(
        (root / "services" / f"{SERVICE}.yaml")
        .read_text()
        .replace("{A100: 8, L4: 3}", "{A100: 8, FOO: 3}")
    )
    (root / "services" / f"{SERVICE}.settings.yaml").write_text(
        "aws_images:\n  us-east-1: ami-0123456789abcdef0\ngcp_project: hedgeform-test\n"
    )
    result = CliRunner().invoke(main, ["plan", SERVICE, "--root", str(root), "--render-only"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0] == (
        f"Error: {root}/services/{SERVICE}.yaml: resources.accelerators: no aws instance type "
        "for A100:1, FOO:1 in the catalog; aws offers A100:8, A100-80GB:8, A10G:1, A10G:4, "
        "H100:8, L4:1, L4:4, L4:8, L40S:1, L40S:4, T4:1, T4:4, V100:1, V100:4, V100:8"
    )
