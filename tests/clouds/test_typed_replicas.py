"""GCP and Azure modules run each replica on its own GPU type's machine (issue 15).

A region running several GPU types lists each replica's type (`replica_accelerators`) and
what each type runs on (`accelerator_types`: GCP machine type and attached GPU, Azure VM
size). The type composes with the version: a replica's version gives its image and scripts,
its type its machine and GPUs. No cloud provider can be installed here; `variables.tf` and
`replica_versions.tf` need none, so Terraform 1.0 itself evaluates them (with the module's
own validations) against what our template renders, as tests/clouds/test_replica_versions.py
does for versions.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from reconciler.clouds import cloud_stack_context, instance_for, template_for, type_entry
from reconciler.clouds.catalog import INSTANCE_TYPES
from reconciler.clouds.registry import CLOUDS
from reconciler.policy import Market
from reconciler.rendering import render_tfvars
from reconciler.spec import Accelerator, load_spec
from reconciler.stacks import ManagedReplica, RegionStack
from tests.clouds.hcl import MODULES
from tests.clouds.test_render_contract import SETTINGS, SPEC_PATH, _for_cloud, assert_contract
from tests.clouds.test_replica_versions import GPUS, TERRAFORM, _replica_body, _terraform, _tfvars

# The local each module keys its GPU-type label or tag by, per replica id.
TYPE_MARK = {"gcp": "gpu_type_label", "azure": "gpu_type_tag"}
# The type each typed replica is given: the *other* GPU of its version's (test_replica_versions
# gives v1 GPUS[cloud][0] and v2 GPUS[cloud][1]), so the type, not the version, decides.
SWAPPED = {"r-old": 1, "r-new": 0}
needs_terraform = pytest.mark.skipif(
    not TERRAFORM.is_file(), reason="pinned Terraform not installed (make setup)"
)


def _typed_tfvars(cloud: str) -> dict[str, Any]:
    """test_replica_versions' stack mid-rollout (r-old v1, r-new v2, r-unlisted v7), with
    r-old and r-new given the other version's GPU type; r-unlisted runs no type."""
    tfvars = _tfvars(cloud)
    choices = [instance_for(cloud, [Accelerator(gpu, 1)]) for gpu in GPUS[cloud]]
    tfvars["accelerator_types"] = {c.accelerator: type_entry(cloud, c) for c in choices}
    tfvars["replica_accelerators"] = {rid: choices[i].accelerator for rid, i in SWAPPED.items()}
    return tfvars


def _evaluate(cloud: str, tfvars: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """Apply the module's variables.tf and replica_versions.tf alone; `runs` and the type
    marks as outputs, or the failed run's stderr under "error"."""
    for name in ("variables.tf", "replica_versions.tf"):
        shutil.copy(MODULES / cloud / name, workdir / name)
    (workdir / "out.tf").write_text(
        'output "runs" {\n  value = local.runs\n}\n'
        f'output "marks" {{\n  value = local.{TYPE_MARK[cloud]}\n}}\n'
    )
    (workdir / "terraform.tfvars.json").write_text(json.dumps(tfvars))
    init = _terraform(workdir, "init", "-input=false")
    assert init.returncode == 0, init.stdout + init.stderr
    applied = _terraform(workdir, "apply", "-auto-approve", "-input=false", "-no-color")
    if applied.returncode != 0:
        return {"error": applied.stderr}
    shown = _terraform(workdir, "output", "-json")
    return {name: o["value"] for name, o in json.loads(shown.stdout).items()}


@needs_terraform
@pytest.mark.parametrize("cloud", ["gcp", "azure"])
def test_a_typed_replica_runs_its_types_machine_and_its_versions_scripts(
    cloud: str, tmp_path: Path
) -> None:
    tfvars = _typed_tfvars(cloud)
    assert_contract(cloud, tfvars)
    got = _evaluate(cloud, tfvars, tmp_path)
    assert "error" not in got, got.get("error")
    runs, marks = got["runs"], got["marks"]
    machine = next(f for f, key in CLOUDS[cloud].version_fields if key == "instance_type")
    types = tfvars["accelerator_types"]
    for rid, gpu in tfvars["replica_accelerators"].items():
        assert runs[rid][machine] == types[gpu][machine]
        assert (runs[rid]["accelerator_name"], runs[rid]["accelerator_count"]) == (gpu, 1)
    # the version still gives image and scripts
    assert runs["r-old"]["run_script"] == "serve v1" and runs["r-old"]["disk_size_gb"] == 100
    assert runs["r-new"]["run_script"] == "serve v2" and runs["r-new"]["disk_size_gb"] == 200
    assert runs["r-old"][machine] == tfvars["versions"]["2"][machine]  # v2's GPU, v1's code
    assert runs["r-new"][machine] == tfvars["versions"]["1"][machine]
    # an untyped replica runs its version's entry (here the top-level values), and is unmarked
    assert runs["r-unlisted"][machine] == tfvars["versions"]["2"][machine]
    assert set(marks) == {"r-old", "r-new"}
    if cloud == "gcp":  # the T4 is attached to an N1 machine; the L4 is built into G2
        assert runs["r-old"]["guest_accelerator_type"] == "nvidia-tesla-t4"
        assert runs["r-new"]["guest_accelerator_type"] == ""
        assert marks == {"r-old": "t4", "r-new": "l4"}
    else:
        assert marks == {"r-old": "A100", "r-new": "T4"}


@needs_terraform
@pytest.mark.parametrize("cloud", ["gcp", "azure"])
def test_a_replica_of_another_region_or_gone_is_ignored(cloud: str, tmp_path: Path) -> None:
    """`replica_accelerators` may name replicas this stack does not hold (AWS's rule)."""
    tfvars = _typed_tfvars(cloud)
    tfvars["replica_accelerators"]["r-elsewhere"] = GPUS[cloud][0]
    got = _evaluate(cloud, tfvars, tmp_path)
    assert "error" not in got, got.get("error")
    assert set(got["marks"]) == {"r-old", "r-new"}


@needs_terraform
@pytest.mark.parametrize(
    ("cloud", "where", "bad"),
    [
        ("gcp", "name", "l4"),  # lowercase: its label could not be read back as the type
        ("gcp", "name", "A10G.1"),  # '.' is no label character
        ("gcp", "name", "A" * 64),  # a label value holds at most 63
        ("gcp", "id", "R_OLD"),
        ("gcp", "machine", "G2 standard"),
        ("gcp", "guest", "tesla-t4"),
        ("azure", "name", "T4 GPU"),
        ("azure", "id", "R_OLD"),
        ("azure", "machine", "NC4as_T4_v3"),
    ],
)
def test_the_module_refuses_a_type_it_cannot_run_or_label(
    cloud: str, where: str, bad: str, tmp_path: Path
) -> None:
    tfvars = _typed_tfvars(cloud)
    types, typed = tfvars["accelerator_types"], tfvars["replica_accelerators"]
    gpu = typed["r-old"]
    machine = next(f for f, key in CLOUDS[cloud].version_fields if key == "instance_type")
    if where == "name":
        types[bad] = types.pop(gpu)
        typed["r-old"] = bad
    elif where == "id":
        typed[bad] = typed.pop("r-old")
    elif where == "machine":
        types[gpu][machine] = bad
    else:
        types[gpu]["guest_accelerator_type"] = bad
    got = _evaluate(cloud, tfvars, tmp_path)
    assert "error" in got
    assert "Invalid value for variable" in got["error"], got["error"]
    assert re.search(r"variable \"(replica_accelerators|accelerator_types)\"", got["error"])


@pytest.mark.parametrize("cloud", ["gcp", "azure"])
def test_the_replica_is_marked_with_its_type_as_the_state_reader_reads_it(cloud: str) -> None:
    body = _replica_body(cloud)
    assert re.search(r'"hedgeform-gpu-type"\s*=>\s*\w+\s+if\s+id\s*==\s*each\.key', body)
    assert f"local.{TYPE_MARK[cloud]}" in body


@pytest.mark.parametrize("cloud", ["gcp", "azure"])
def test_every_catalog_type_reads_back_from_its_label_or_tag(cloud: str) -> None:
    """The GCP label is the type lowercased; the catalog's names are upper case, digits and
    '-', so upper-casing the label gives the name back, for every type the catalog offers."""
    read = CLOUDS[cloud].read_replica
    for choice in INSTANCE_TYPES[cloud].values():
        gpu = choice.accelerator
        mark = gpu.lower() if cloud == "gcp" else gpu
        if cloud == "gcp":
            assert re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", mark), gpu
            attrs: dict[str, Any] = {"name": "hf-a", "labels": {"hedgeform-gpu-type": mark}}
        else:
            attrs = {"name": "hf-a", "tags": {"hedgeform-gpu-type": mark}}
        assert read("x-spot-0", attrs).accelerator == gpu


def _context(cloud: str) -> dict[str, Any]:
    """The template context of a single-type stack of llama-cloud (T4 on Azure)."""
    region, zone = {"gcp": ("us-central1", "us-central1-a"), "azure": ("eastus", "eastus-1")}[cloud]
    stack = RegionStack(cloud, region, (ManagedReplica(f"{zone}-spot-0", zone, Market.SPOT),))
    return cloud_stack_context(_for_cloud(load_spec(SPEC_PATH), cloud), stack, [], SETTINGS)


@pytest.mark.parametrize("cloud", ["gcp", "azure"])
def test_the_template_writes_the_type_maps_only_when_a_region_runs_several(cloud: str) -> None:
    """A service of one type renders as before: neither map is written when empty, so its
    tfvars (written with sorted keys) are the same bytes as before issue 15."""
    context = _context(cloud)
    for single in (context, context | {"accelerator_types": {}, "replica_accelerators": {}}):
        rendered = render_tfvars(template_for(cloud), single)
        assert not {"accelerator_types", "replica_accelerators"} & set(rendered)
    typed = _typed_tfvars(cloud)
    maps = {key: typed[key] for key in ("accelerator_types", "replica_accelerators")}
    rendered = render_tfvars(template_for(cloud), context | maps)
    assert {key: rendered[key] for key in maps} == maps
    assert_contract(cloud, rendered)
