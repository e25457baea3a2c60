"""Each cloud module launches a replica from its own version's entry of `versions` (issue 13).

The rule lives in each module's `replica_versions.tf` (locals `current` and `runs`). No cloud
provider can be installed here, but that file and `variables.tf` need none: Terraform 1.0
itself evaluates them, with the module's own variable validations, against the tfvars our
template renders, and the replica resource is checked to read what it runs only from `runs`
(so a rollout adds instances beside the old ones and never changes one in place).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from reconciler.clouds import cloud_stack_context, template_for, version_entry
from reconciler.clouds.registry import CLOUDS
from reconciler.policy import Market
from reconciler.rendering import render_tfvars
from reconciler.spec import Accelerator, ServiceSpec, load_spec
from reconciler.stacks import ManagedReplica, RegionStack
from tests.clouds.hcl import MODULES, PROJECT_ROOT, variables
from tests.clouds.test_render_contract import SETTINGS, SPEC_PATH, assert_contract

TERRAFORM = PROJECT_ROOT / ".tools" / "bin" / "terraform"
REGIONS = {"aws": "us-east-1", "gcp": "us-central1", "azure": "eastus"}
ZONES = {"aws": "us-east-1a", "gcp": "us-central1-a", "azure": "eastus-1"}
# v1 and v2 run on different GPUs, so even the machine differs (GCP v2 attaches a T4).
GPUS = {"aws": ("L4", "T4"), "gcp": ("L4", "T4"), "azure": ("T4", "A100")}
# What the replica resource may read directly from var.*: nothing a version changes.
PER_VERSION = {
    "aws": ("instance_type", "accelerator_name", "accelerator_count", "image_id",
            "disk_size_gb", "setup_script", "run_script", "envs"),
    "gcp": ("machine_type", "guest_accelerator_type", "accelerator_name", "accelerator_count",
            "image_id", "disk_size_gb", "setup_script", "run_script", "envs"),
    "azure": ("vm_size", "accelerator_name", "accelerator_count", "image_id", "disk_size_gb",
              "setup_script", "run_script", "envs"),
}  # fmt: skip


def _spec(gpu: str, run: str, model: str, disk: int) -> ServiceSpec:
    spec = load_spec(SPEC_PATH)
    resources = dataclasses.replace(
        spec.resources, accelerators=(Accelerator(gpu, 1),), disk_size=disk
    )
    return dataclasses.replace(
        spec, resources=resources, run=run, envs={**spec.envs, "MODEL_NAME": model}
    )


def _tfvars(cloud: str) -> dict[str, Any]:
    """A region stack mid-rollout: one replica of v1, one of v2, one of a version the render
    does not list (7: it runs the top-level values, the current version's)."""
    region, zone = REGIONS[cloud], ZONES[cloud]
    v1 = _spec(GPUS[cloud][0], "serve v1", "model-one", 100)
    v2 = _spec(GPUS[cloud][1], "serve v2", "model-two", 200)
    stack = RegionStack(
        cloud,
        region,
        (
            ManagedReplica("r-old", zone, Market.SPOT, version=1),
            ManagedReplica("r-new", zone, Market.ON_DEMAND, version=2),
            ManagedReplica("r-unlisted", zone, Market.SPOT, version=7),
        ),
    )
    context = cloud_stack_context(v2, stack, ["r-old"], SETTINGS)
    context["versions"] = {
        str(n): version_entry(spec, cloud, region, SETTINGS) for n, spec in ((1, v1), (2, v2))
    }
    return render_tfvars(template_for(cloud), context)


def _terraform(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(workdir), "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}
    env.pop("TF_CLI_CONFIG_FILE", None)  # no provider to install: no mirror needed
    return subprocess.run(
        [str(TERRAFORM), *args], cwd=workdir, env=env, capture_output=True, text=True
    )


def _evaluate(
    cloud: str, tfvars: dict[str, Any], workdir: Path
) -> subprocess.CompletedProcess[str]:
    """Apply the module's variables.tf and replica_versions.tf alone, outputting `runs`."""
    for name in ("variables.tf", "replica_versions.tf"):
        shutil.copy(MODULES / cloud / name, workdir / name)
    (workdir / "out.tf").write_text('output "runs" {\n  value = local.runs\n}\n')
    (workdir / "terraform.tfvars.json").write_text(json.dumps(tfvars))
    init = _terraform(workdir, "init", "-input=false")
    assert init.returncode == 0, init.stdout + init.stderr
    return _terraform(workdir, "apply", "-auto-approve", "-input=false", "-no-color")


@pytest.mark.skipif(not TERRAFORM.is_file(), reason="pinned Terraform not installed (make setup)")
@pytest.mark.parametrize("cloud", sorted(REGIONS))
def test_each_replica_runs_its_own_versions_entry(cloud: str, tmp_path: Path) -> None:
    tfvars = _tfvars(cloud)
    assert_contract(cloud, tfvars)
    applied = _evaluate(cloud, tfvars, tmp_path)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    runs = json.loads(_terraform(tmp_path, "output", "-json", "runs").stdout)
    instance = dict(CLOUDS[cloud].version_fields)
    field = next(f for f, key in instance.items() if key == "instance_type")
    assert runs["r-old"]["run_script"] == "serve v1"
    assert runs["r-old"]["envs"]["MODEL_NAME"] == "model-one"
    assert runs["r-old"]["disk_size_gb"] == 100
    assert runs["r-new"]["run_script"] == "serve v2"
    assert runs["r-new"]["envs"]["MODEL_NAME"] == "model-two"
    assert runs["r-old"][field] != runs["r-new"][field]  # another GPU: another machine
    assert runs["r-old"][field] == tfvars["versions"]["1"][field]
    # A version the render does not list runs the top-level values (the current version's).
    assert runs["r-unlisted"]["run_script"] == tfvars["run_script"] == "serve v2"
    assert runs["r-unlisted"][field] == runs["r-new"][field]
    if cloud == "gcp":  # the T4 of v2 is attached to an N1 machine; v1's L4 is built in
        assert runs["r-new"]["guest_accelerator_type"] == "nvidia-tesla-t4"
        assert runs["r-old"]["guest_accelerator_type"] == ""


@pytest.mark.skipif(not TERRAFORM.is_file(), reason="pinned Terraform not installed (make setup)")
@pytest.mark.parametrize("cloud", sorted(REGIONS))
@pytest.mark.parametrize(
    ("where", "bad"),
    [("replica", "0"), ("replica", "v2"), ("versions", "01"), ("versions", "x")],
)
def test_the_module_refuses_a_version_that_is_not_a_number(
    cloud: str, where: str, bad: str, tmp_path: Path
) -> None:
    """The version becomes a tag or label value: the module takes only 1-999999999."""
    tfvars = _tfvars(cloud)
    if where == "replica":
        tfvars["replicas"]["r-old"]["version"] = bad
    else:
        tfvars["versions"][bad] = tfvars["versions"].pop("1")
    applied = _evaluate(cloud, tfvars, tmp_path)
    assert applied.returncode != 0
    assert re.search(r"[Vv]ersion.*numbers? from 1", applied.stderr)


def _replica_body(cloud: str) -> str:
    """The source text of the module's replica resource block."""
    text = (MODULES / cloud / "main.tf").read_text()
    start = text.index(f'resource "{CLOUDS[cloud].replica_type}" "replica"')
    end = text.index("\n}\n", start)
    return text[start:end]


@pytest.mark.parametrize("cloud", sorted(REGIONS))
def test_the_replica_resource_reads_what_it_runs_only_from_its_version(cloud: str) -> None:
    """A top-level variable read directly by the replica resource would change every
    replica of the region when the current version changes: on GCP an in-place metadata
    edit running VMs never act on, on AWS and Azure a destroy-first replacement."""
    body = _replica_body(cloud)
    direct = sorted({n for n in PER_VERSION[cloud] if re.search(rf"\bvar\.{n}\b", body)})
    assert not direct, f"{cloud}: the replica resource reads {direct} directly"
    assert "local.runs[each.key]" in body
    assert "versions" in variables(cloud)
    fields = [f for f, _ in CLOUDS[cloud].version_fields]
    assert sorted(fields) == sorted(PER_VERSION[cloud])  # the backend renders what it reads


@pytest.mark.parametrize(
    ("cloud", "key"), [("aws", "hedgeform:version"), ("gcp", "hedgeform-version"),
                       ("azure", "hedgeform-version")]
)  # fmt: skip
def test_the_replica_is_tagged_with_its_version_as_the_state_reader_reads_it(
    cloud: str, key: str
) -> None:
    assert re.search(rf'"?{re.escape(key)}"?\s*=\s*each\.value\.version', _replica_body(cloud))
