"""Contract: what the templates render for each cloud is exactly what the modules declare.

Every rendered key is a declared variable, every required variable is rendered, and each value
has the declared type; no secret value ever appears in a tfvars file.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
import yaml

from reconciler.clouds import (
    CloudSettings,
    Origin,
    check_zone,
    cloud_stack_context,
    front_stack_context,
    instance_for,
    secret_env_values,
    template_for,
    zones_of,
)
from reconciler.errors import CloudConfigError
from reconciler.policy import Market
from reconciler.rendering import render_tfvars
from reconciler.spec import Accelerator, ServiceSpec, load_spec, parse_spec
from reconciler.stacks import ManagedReplica, RegionStack
from tests.clouds.hcl import PROJECT_ROOT, parse_type, type_errors, variables

SPEC_PATH = PROJECT_ROOT / "services" / "llama-cloud.yaml"
SENTINEL = "hf_SENTINEL_do_not_render_0123456789"
SETTINGS = CloudSettings(
    images={"aws:us-east-1": "ami-0123456789abcdef0"},
    gcp_project="hedgeform-test",
    azure_admin_ssh_public_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITestKeyOnly hedgeform",
)
STACKS = {
    "aws": RegionStack(
        "aws",
        "us-east-1",
        (
            ManagedReplica("us-east-1a-spot-0", "us-east-1a", Market.SPOT),
            ManagedReplica("us-east-1b-od-1", "us-east-1b", Market.ON_DEMAND),
        ),
    ),
    "gcp": RegionStack(
        "gcp",
        "us-central1",
        (
            ManagedReplica("us-central1-a-spot-0", "us-central1-a", Market.SPOT),
            ManagedReplica("us-central1-f-od-1", "us-central1-f", Market.ON_DEMAND),
        ),
    ),
    "azure": RegionStack(
        "azure",
        "eastus",
        (
            ManagedReplica("eastus-1-spot-0", "eastus-1", Market.SPOT),
            ManagedReplica("eastus-2-od-1", "eastus-2", Market.ON_DEMAND),
        ),
    ),
}


@pytest.fixture
def spec(monkeypatch: pytest.MonkeyPatch) -> ServiceSpec:
    monkeypatch.setenv("HF_TOKEN", SENTINEL)
    return load_spec(SPEC_PATH)


def _for_cloud(spec: ServiceSpec, cloud: str) -> ServiceSpec:
    """llama-cloud asks for L4, which Azure does not offer: use T4 there."""
    if cloud != "azure":
        return spec
    resources = dataclasses.replace(spec.resources, accelerators=(Accelerator("T4", 1),))
    return dataclasses.replace(spec, resources=resources)


def _render(cloud: str, spec: ServiceSpec, members: list[str]) -> dict[str, Any]:
    context = cloud_stack_context(_for_cloud(spec, cloud), STACKS[cloud], members, SETTINGS)
    return render_tfvars(template_for(cloud), context)


def assert_contract(module: str, rendered: dict[str, Any]) -> None:
    declared = variables(module)
    assert set(rendered) <= set(declared), f"undeclared: {set(rendered) - set(declared)}"
    required = {name for name, attrs in declared.items() if "default" not in attrs}
    assert required <= set(rendered), f"missing required: {required - set(rendered)}"
    errors = [
        e
        for name, value in rendered.items()
        for e in type_errors(value, parse_type(declared[name]["type"]), name)
    ]
    assert not errors, errors


@pytest.mark.parametrize("cloud", sorted(STACKS))
def test_rendered_region_stack_matches_the_module(cloud: str, spec: ServiceSpec) -> None:
    first = STACKS[cloud].replicas[0].id
    rendered = _render(cloud, spec, [first, "other-region-replica"])
    assert_contract(cloud, rendered)
    assert rendered["lb_members"] == [first]  # only this stack's ready replicas
    assert rendered["replicas"][first]["market"] == "spot"
    assert rendered["replica_port"] == 8081
    assert rendered["readiness_path"] == "/health"
    assert rendered["secret_env_names"] == ["HF_TOKEN"]
    assert rendered["envs"] == {"MODEL_NAME": "meta-llama/Llama-3.1-8B-Instruct"}
    assert "vllm serve $MODEL_NAME" in rendered["run_script"]


@pytest.mark.parametrize("cloud", sorted(STACKS))
def test_no_secret_value_is_rendered(cloud: str, spec: ServiceSpec) -> None:
    rendered = _render(cloud, spec, [])
    text = json.dumps(rendered)
    assert SENTINEL not in text
    assert "HF_TOKEN" not in rendered["envs"]


def test_secrets_written_in_the_spec_stay_out_of_tfvars() -> None:
    data = yaml.safe_load(SPEC_PATH.read_text())
    data["secrets"] = {"API_KEY": SENTINEL}
    spec = parse_spec(data, name="llama-cloud", source="test")
    rendered = _render("aws", spec, [])
    assert SENTINEL not in json.dumps(rendered)
    assert rendered["secret_env_names"] == ["API_KEY", "HF_TOKEN"]
    values = secret_env_values(spec, {"HF_TOKEN": "from-env"})
    assert values == {"API_KEY": SENTINEL, "HF_TOKEN": "from-env"}


def test_secret_values_need_the_environment(spec: ServiceSpec) -> None:
    with pytest.raises(CloudConfigError, match="set HF_TOKEN in the environment"):
        secret_env_values(spec, {})


def test_rendering_survives_hostile_scripts_and_envs(spec: ServiceSpec) -> None:
    nasty = "echo \"}}{{ x }}\" '$(id)'\n</script>\\ \u2603"
    hostile = dataclasses.replace(spec, run=nasty, envs={**spec.envs, "MODEL_NAME": nasty})
    rendered = _render("gcp", hostile, [])
    assert rendered["run_script"] == nasty
    assert rendered["envs"]["MODEL_NAME"] == nasty
    assert_contract("gcp", rendered)


def test_gcp_n1_types_attach_a_guest_accelerator(spec: ServiceSpec) -> None:
    resources = dataclasses.replace(spec.resources, accelerators=(Accelerator("T4", 1),))
    rendered = _render("gcp", dataclasses.replace(spec, resources=resources), [])
    assert rendered["machine_type"] == "n1-standard-8"
    assert rendered["guest_accelerator_type"] == "nvidia-tesla-t4"
    assert _render("gcp", spec, [])["guest_accelerator_type"] == ""  # g2: L4 built in


def test_contract_checker_catches_drift(spec: ServiceSpec) -> None:
    rendered = _render("azure", _for_cloud(spec, "azure"), [])
    for broken in (
        {k: v for k, v in rendered.items() if k != "admin_ssh_public_key"},
        {**rendered, "undeclared": 1},
        {**rendered, "replica_port": "8081"},
        {**rendered, "replicas": {"x": {"zone": "eastus-1"}}},
    ):
        with pytest.raises(AssertionError):
            assert_contract("azure", broken)


def test_rendered_front_stack_matches_the_module(spec: ServiceSpec) -> None:
    origins = {
        "aws-us-east-1": Origin("aws", "us-east-1", "hf-llama-1.us-east-1.elb.amazonaws.com"),
        "gcp-us-central1": Origin("gcp", "us-central1", "203.0.113.10", 50),
    }
    context = front_stack_context(spec, "llama.example.com", "Z0123456789ABC", origins)
    rendered = render_tfvars(template_for("front"), context)
    assert_contract("front", rendered)
    assert rendered["origins"]["gcp-us-central1"]["weight"] == 50


def test_example_stacks_use_only_declared_variables() -> None:
    """The README examples stay in step with the modules (module arguments are variables)."""
    from tests.clouds.hcl import MODULES, load_hcl

    for module in ("aws", "gcp", "azure", "front", "local"):
        example = load_hcl(MODULES / module / "examples" / "complete" / "main.tf")
        declared = set(variables(module))
        for block in example["module"]:
            for body in block.values():
                args = set(body) - {"source"}
                assert args <= declared, f"{module} example: {args - declared}"


@pytest.mark.parametrize("module", ["aws", "gcp", "azure", "local"])
def test_example_replicas_have_every_field_the_module_declares(module: str) -> None:
    """Terraform 1.0 objects have no optional attributes: an example replica without one
    (the `version` issue 13 added) fails at plan time for whoever copies it."""
    from tests.clouds.hcl import MODULES, load_hcl

    declared = parse_type(variables(module)["replicas"]["type"])
    fields = set(declared[1][1])  # ("map", ("object", {name: type}))
    example = load_hcl(MODULES / module / "examples" / "complete" / "main.tf")
    bodies = [body for block in example["module"] for body in block.values()]
    replicas = [r for body in bodies for r in (body.get("replicas") or {}).values()]
    assert replicas, f"{module} example has no replicas"
    for replica in replicas:
        assert set(replica) == fields, f"{module} example replica: {set(replica) ^ fields}"


# ---------------------------------------------------------------- catalog errors


def test_unknown_region_is_one_line() -> None:
    with pytest.raises(CloudConfigError, match=r"unknown aws region 'us-east-9'; known: ") as exc:
        zones_of("aws", "us-east-9")
    assert "\n" not in str(exc.value)


def test_zone_of_another_region_is_rejected(spec: ServiceSpec) -> None:
    with pytest.raises(CloudConfigError, match="'us-west-2a' is not a known zone of aws us-east-1"):
        check_zone("aws", "us-east-1", "us-west-2a")
    stack = RegionStack(
        "aws", "us-east-1", (ManagedReplica("x-spot-0", "us-east-1z", Market.SPOT),)
    )
    with pytest.raises(CloudConfigError, match="us-east-1z"):
        cloud_stack_context(spec, stack, [], SETTINGS)


def test_unknown_region_in_a_stack(spec: ServiceSpec) -> None:
    stack = RegionStack("gcp", "mars-north1", ())
    with pytest.raises(CloudConfigError, match="unknown gcp region 'mars-north1'"):
        cloud_stack_context(spec, stack, [], SETTINGS)


def test_l4_is_not_offered_on_azure(spec: ServiceSpec) -> None:
    with pytest.raises(CloudConfigError, match="no azure instance type for L4:1") as exc:
        cloud_stack_context(spec, STACKS["azure"], [], SETTINGS)
    assert "\n" not in str(exc.value)


def test_accelerator_count_must_exist() -> None:
    with pytest.raises(CloudConfigError, match="no aws instance type for A100:1"):
        instance_for("aws", [Accelerator("A100", 1)])
    assert instance_for("aws", [Accelerator("A100", 8)]).instance_type == "p4d.24xlarge"


@pytest.mark.parametrize(
    ("cloud", "accelerator", "expected"),
    [
        ("aws", "L4", "g6.xlarge"),
        ("aws", "A10G", "g5.xlarge"),
        ("aws", "V100", "p3.2xlarge"),
        ("gcp", "L4", "g2-standard-8"),
        ("gcp", "A100", "a2-highgpu-1g"),
        ("gcp", "V100", "n1-standard-8"),
        ("gcp", "T4", "n1-standard-8"),
        ("azure", "A100", "Standard_NC24ads_A100_v4"),
        ("azure", "T4", "Standard_NC4as_T4_v3"),
        ("azure", "V100", "Standard_NC6s_v3"),
    ],
)
def test_catalog_maps_accelerators(cloud: str, accelerator: str, expected: str) -> None:
    assert instance_for(cloud, [Accelerator(accelerator.lower(), 1)]).instance_type == expected


def test_first_offered_accelerator_wins() -> None:
    choice = instance_for("azure", [Accelerator("L4", 1), Accelerator("T4", 1)])
    assert (choice.instance_type, choice.accelerator) == ("Standard_NC4as_T4_v3", "T4")


def test_aws_needs_a_pinned_image(spec: ServiceSpec) -> None:
    with pytest.raises(CloudConfigError, match="no image for aws us-east-1"):
        cloud_stack_context(spec, STACKS["aws"], [], CloudSettings(gcp_project="p"))


def test_project_and_ssh_key_are_required(spec: ServiceSpec) -> None:
    with pytest.raises(CloudConfigError, match="GCP project"):
        cloud_stack_context(spec, STACKS["gcp"], [], CloudSettings())
    t4 = _for_cloud(spec, "azure")
    with pytest.raises(CloudConfigError, match="SSH public key"):
        cloud_stack_context(t4, STACKS["azure"], [], CloudSettings())


def test_long_service_names_are_rejected_for_real_clouds(spec: ServiceSpec) -> None:
    long = dataclasses.replace(spec, name="a-very-long-service-name-indeed")
    with pytest.raises(CloudConfigError, match="at most 24 characters"):
        cloud_stack_context(long, STACKS["aws"], [], SETTINGS)


def test_templates_exist_for_every_cloud() -> None:
    for cloud in ("aws", "gcp", "azure", "front"):
        assert (PROJECT_ROOT / "templates" / template_for(cloud)).is_file()
    with pytest.raises(CloudConfigError):
        template_for("local")


@pytest.mark.parametrize("cloud", sorted(STACKS))
def test_a_secret_named_like_a_plain_env_stays_out_of_tfvars(cloud: str) -> None:
    """Whatever a secret is named (MODEL_NAME here, which the sandbox used to read as a
    plain env), its value is rendered for no cloud."""
    data = yaml.safe_load(SPEC_PATH.read_text())
    data["envs"].pop("MODEL_NAME")
    data["secrets"] = {"MODEL_NAME": SENTINEL}
    spec = parse_spec(data, name="llama-cloud", source="test")
    rendered = _render(cloud, spec, [])
    assert SENTINEL not in json.dumps(rendered)
    assert "MODEL_NAME" in rendered["secret_env_names"]
