"""Static checks of the Terraform modules: formatting, typed and described variables, spot
replicas deleted on eviction, nothing newer than Terraform 1.0, no secret value in state.

No provider can be installed here (no cloud credentials, no registry), so these read the HCL
with python-hcl2 and run only provider-free Terraform commands (fmt, a templatefile output).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.clouds.hcl import CLOUD_MODULES, MODULES, PROJECT_ROOT, load_hcl, parse_type, variables

TERRAFORM = PROJECT_ROOT / ".tools" / "bin" / "terraform"
ALL_MODULES = sorted(p.name for p in MODULES.iterdir() if (p / "main.tf").is_file())
SECRET_LOOKING = re.compile(r"token|secret|password|key", re.IGNORECASE)
# Constructs (and functions) newer than Terraform 1.0: the modules must run on 1.0.
FORBIDDEN = {
    "terraform_data": re.compile(r"\bterraform_data\b"),
    "moved block": re.compile(r"^\s*moved\s*\{", re.MULTILINE),
    "import block": re.compile(r"^\s*import\s*\{", re.MULTILINE),
    "removed block": re.compile(r"^\s*removed\s*\{", re.MULTILINE),
    "check block": re.compile(r"^\s*check\s+\"", re.MULTILINE),
    "optional()": re.compile(r"\boptional\s*\("),
    "nullable (1.1)": re.compile(r"^\s*nullable\s*=", re.MULTILINE),
    "precondition/postcondition (1.2)": re.compile(r"\b(pre|post)condition\s*\{"),
    "replace_triggered_by (1.2)": re.compile(r"\breplace_triggered_by\b"),
    "startswith/endswith/strcontains (1.3+)": re.compile(r"\b(startswith|endswith|strcontains)\("),
}
PROVIDER_FLOORS = {
    "aws": {"aws": ">= 5.0"},
    "gcp": {"google": ">= 4.50"},
    "azure": {"azurerm": ">= 3.0"},
    "front": {"aws": ">= 5.0"},
}


def _tf_files() -> list[Path]:
    return sorted(MODULES.rglob("*.tf"))


def _resources(module: str, rtype: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for block in load_hcl(MODULES / module / "main.tf").get("resource", []):
        for name, body in block.get(rtype, {}).items():
            out[name] = body
    return out


def _find(node: Any, key: str) -> list[Any]:
    """Every value of attribute `key` anywhere under `node` (blocks, dynamic blocks)."""
    found: list[Any] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                found.append(v)
            found += _find(v, key)
    elif isinstance(node, list):
        for item in node:
            found += _find(item, key)
    return found


def _literals(expr: Any) -> set[str]:
    """The quoted string literals of an expression, or the value itself when it is literal."""
    text = str(expr)
    if not text.startswith("${"):
        return {text}
    return set(re.findall(r'"([^"$]*)"', text)) - {"spot", "on_demand"}


@pytest.mark.skipif(not TERRAFORM.is_file(), reason="pinned Terraform not installed (make setup)")
def test_terraform_fmt_check_passes() -> None:
    result = subprocess.run(
        [str(TERRAFORM), "fmt", "-check", "-recursive", "-diff", str(MODULES)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("module", CLOUD_MODULES)
def test_module_has_the_standard_files(module: str) -> None:
    for name in ("main.tf", "variables.tf", "outputs.tf", "versions.tf", "README.md"):
        assert (MODULES / module / name).is_file(), f"{module}/{name}"
    assert (MODULES / module / "examples" / "complete" / "main.tf").is_file()


@pytest.mark.parametrize("module", ALL_MODULES)
def test_every_variable_is_typed_and_described(module: str) -> None:
    for name, attrs in variables(module).items():
        assert attrs.get("type"), f"{module}: variable {name} has no type"
        parse_type(attrs["type"])
        assert str(attrs.get("description", "")).strip(), f"{module}: {name} has no description"


@pytest.mark.parametrize("module", ALL_MODULES)
def test_no_secret_looking_variable_has_a_default(module: str) -> None:
    for name, attrs in variables(module).items():
        if SECRET_LOOKING.search(name):
            assert "default" not in attrs, f"{module}: {name} looks secret and has a default"


@pytest.mark.parametrize("module", CLOUD_MODULES)
def test_names_are_validated(module: str) -> None:
    declared = variables(module)
    for name in ("service", "region", "replicas") if module != "front" else ("service", "origins"):
        assert declared[name].get("validation"), f"{module}: {name} has no validation"


@pytest.mark.parametrize("module", ALL_MODULES)
def test_validation_messages_are_sentences_as_terraform_1_0_requires(module: str) -> None:
    """Terraform 1.0 refuses a module (at init) whose validation error_message does not start
    with a capital letter and end with '.' or '?'."""
    for name, attrs in variables(module).items():
        for rule in attrs.get("validation", []):
            message = str(rule["error_message"])
            assert re.match(r"^[A-Z].*[.?]$", message, re.DOTALL), f"{module}: {name}: {message}"


@pytest.mark.parametrize("module", CLOUD_MODULES)
def test_every_output_is_described(module: str) -> None:
    for block in load_hcl(MODULES / module / "outputs.tf").get("output", []):
        for name, attrs in block.items():
            assert str(attrs.get("description", "")).strip(), f"{module}: output {name}"


def test_aws_spot_instances_terminate_on_interruption() -> None:
    instance = _resources("aws", "aws_instance")["replica"]
    behaviors = _find(instance, "instance_interruption_behavior")
    assert behaviors and all(b == "terminate" for b in behaviors)
    assert _find(instance, "spot_instance_type") == ["one-time"]
    assert _find(instance, "market_type") == ["spot"]
    assert _find(instance, "http_tokens") == ["required"]
    assert _find(instance, "encrypted") == [True]


def test_gcp_spot_instances_are_deleted_on_preemption() -> None:
    instance = _resources("gcp", "google_compute_instance")["replica"]
    (scheduling,) = instance["scheduling"]
    assert _literals(scheduling["instance_termination_action"]) == {"DELETE"}
    assert "SPOT" in _literals(scheduling["provisioning_model"])
    assert scheduling["on_host_maintenance"] == "TERMINATE"
    assert instance["shielded_instance_config"]


def test_azure_spot_vms_are_deleted_on_eviction() -> None:
    vm = _resources("azure", "azurerm_linux_virtual_machine")["replica"]
    assert _literals(vm["eviction_policy"]) == {"Delete"}
    assert "Spot" in _literals(vm["priority"])
    assert "-1" in str(vm["max_bid_price"])


def test_aws_target_group_deregisters_within_30_seconds() -> None:
    groups = _resources("aws", "aws_lb_target_group")
    assert groups
    for body in groups.values():
        assert 0 <= int(body["deregistration_delay"]) <= 30


def test_aws_runs_one_target_group_per_gpu_type_like_the_shared_one() -> None:
    """Several GPU types (issue 15): one group per type, tagged with it, with exactly the
    shared group's settings (health check, deregistration, algorithm, port)."""
    groups = _resources("aws", "aws_lb_target_group")
    typed, shared = dict(groups["typed"]), dict(groups["replicas"])
    assert typed.pop("for_each") == "${var.accelerator_types}"
    assert '"hedgeform:gpu-type" = each.key' in typed.pop("tags")
    shared.pop("tags")
    assert typed == shared
    assert len(typed["name_prefix"]) <= 6  # the provider's name_prefix limit


@pytest.mark.parametrize("listener", ["http", "https"])
def test_aws_listener_forwards_by_weight_to_each_types_group(listener: str) -> None:
    """With several types the listener's forward names every type's group with its weight and
    no single target_group_arn; with one type it forwards to the shared group as before."""
    (action,) = _resources("aws", "aws_lb_listener")[listener]["default_action"]
    assert "local.typed_lb ? null" in action["target_group_arn"] or (
        "local.tls || local.typed_lb ? null" in action["target_group_arn"]
    )
    (forward,) = [d["forward"] for d in action["dynamic"] if "forward" in d]
    assert "local.typed_lb" in forward["for_each"]
    (content,) = forward["content"]
    (groups,) = [d["target_group"] for d in content["dynamic"]]
    assert groups["for_each"] == "${local.forward_groups}"
    assert groups["content"] == [
        {"arn": "${target_group.value.arn}", "weight": "${target_group.value.weight}"}
    ]
    main = (MODULES / "aws" / "main.tf").read_text()
    assert "lookup(var.accelerator_weights, acc, 0)" in main
    assert "weight = var.untyped_weight" in main


def test_aws_weights_are_validated_to_the_albs_range() -> None:
    declared = variables("aws")
    for name in ("accelerator_weights", "untyped_weight", "accelerator_types"):
        assert declared[name].get("validation"), name
    text = json.dumps(declared["accelerator_weights"]["validation"])
    assert "999" in text and ">= 0" in text


@pytest.mark.parametrize(
    ("module", "rtype", "key"),
    [
        ("aws", "aws_lb_target_group_attachment", "member"),
        ("gcp", "google_compute_instance_group", "zone"),
        ("azure", "azurerm_network_interface_backend_address_pool_association", "member"),
    ],
)
def test_lb_membership_follows_lb_members(module: str, rtype: str, key: str) -> None:
    body = _resources(module, rtype)[key]
    assert "members" in json.dumps(body), f"{module}: {rtype}.{key} ignores lb_members"


@pytest.mark.parametrize("module", ALL_MODULES)
def test_versions_allow_terraform_1_0(module: str) -> None:
    (terraform,) = load_hcl(MODULES / module / "versions.tf")["terraform"]
    assert terraform["required_version"] == ">= 1.0"
    providers = {
        name: spec["version"]
        for block in terraform.get("required_providers", [])
        for name, spec in block.items()
    }
    if module in PROVIDER_FLOORS:
        assert providers == PROVIDER_FLOORS[module]
    for version in providers.values():
        assert version.startswith(">="), f"{module}: pin only a floor, got {version}"


@pytest.mark.parametrize("path", _tf_files(), ids=lambda p: str(p.relative_to(MODULES)))
def test_no_construct_newer_than_terraform_1_0(path: Path) -> None:
    text = "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())
    for what, pattern in FORBIDDEN.items():
        assert not pattern.search(text), f"{path.name} uses {what}"
    data = load_hcl(path)
    assert not {"moved", "import", "removed", "check"} & set(data)


@pytest.mark.parametrize(
    "rtype",
    [
        "aws_secretsmanager_secret_version",
        "google_secret_manager_secret_version",
        "azurerm_key_vault_secret",
    ],
)
def test_no_secret_value_goes_through_terraform(rtype: str) -> None:
    """Secret containers only: a version/value resource would put the value in state."""
    for path in _tf_files():
        for kind in ("resource", "data"):
            for block in load_hcl(path).get(kind, []):
                assert rtype not in block, f"{path}: {rtype} would put a secret in state"


# ---------------------------------------------------------------- boot scripts

SCRIPTS = {"aws": "cloud-init.sh.tftpl", "gcp": "startup.sh.tftpl", "azure": "cloud-init.sh.tftpl"}
NASTY = 'it\'s "quoted" $HOME `id` \\ ; rm -rf / #\nsecond line'


def _script_vars(module: str) -> dict[str, Any]:
    base: dict[str, Any] = {
        "service": "llama",
        "region": "us-east-1",
        "replica_id": "us-east-1a-spot-0",
        "setup_b64": "",
        "run_b64": "",
        "envs_b64": {},
    }
    secrets: dict[str, dict[str, Any]] = {
        "aws": {"secret_arns": {"HF_TOKEN": "arn:aws:secretsmanager:us-east-1:1:secret:x"}},
        "gcp": {"secret_ids": {"HF_TOKEN": "hf-llama-us-central1-HF_TOKEN"}, "project": "p-1234"},
        "azure": {
            "secret_names": {"HF_TOKEN": "HF-TOKEN"},
            "vault_uri": "https://hfllama.vault.azure.net/",
            "client_id": "00000000-0000-0000-0000-000000000000",
        },
    }
    return base | secrets[module]


@pytest.mark.skipif(not TERRAFORM.is_file(), reason="pinned Terraform not installed (make setup)")
@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")
@pytest.mark.parametrize("module", sorted(SCRIPTS))
def test_boot_script_renders_with_terraform_and_parses(module: str, tmp_path: Path) -> None:
    """Render the template with Terraform 1.0's own templatefile() (no provider needed), then
    check the script with `bash -n` and that an env value full of shell syntax round-trips."""
    template = MODULES / module / SCRIPTS[module]
    variables_json = json.dumps(_script_vars(module))
    (tmp_path / "main.tf").write_text(
        f"""
locals {{
  vars = jsondecode({json.dumps(variables_json)})
  envs = {{ NASTY = {json.dumps(NASTY)}, MODEL_NAME = "m" }}
}}
output "script" {{
  value = templatefile({json.dumps(str(template))}, merge(local.vars, {{
    setup_b64 = base64encode("pip install vllm")
    run_b64   = base64encode("vllm serve $MODEL_NAME")
    envs_b64  = {{ for k, v in local.envs : k => base64encode(v) }}
  }}))
}}
"""
    )
    env = {**os.environ, "HOME": str(tmp_path), "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}
    env.pop("TF_CLI_CONFIG_FILE", None)
    for args in (["init", "-input=false"], ["apply", "-auto-approve", "-input=false"]):
        run = subprocess.run(
            [str(TERRAFORM), *args], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert run.returncode == 0, run.stdout + run.stderr
    out = subprocess.run(
        [str(TERRAFORM), "output", "-raw", "script"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.startswith("#!/bin/bash\n")
    script = tmp_path / "boot.sh"
    script.write_text(out)
    syntax = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    assert "HF_TOKEN" in out and NASTY not in out  # values travel base64-encoded
    # Run just the env-file part of the script and source the result.
    env_part = out[out.index("put_env() {") : out.index("fetch_secret() {")]
    env_file = tmp_path / "env.sh"
    probe = f'env_file={env_file}\n: >"$env_file"\n{env_part}\n. "$env_file"\nprintf %s "$NASTY"'
    result = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout == NASTY.rstrip("\n")


def test_adapter_lookups_use_the_names_the_modules_give() -> None:
    """The adapters find the ALB, URL map and notice queue by name: same patterns as HCL."""
    from reconciler.clouds.aws import naming as aws_naming
    from reconciler.clouds.gcp import naming as gcp_naming

    aws_main = (MODULES / "aws" / "main.tf").read_text()
    gcp_main = (MODULES / "gcp" / "main.tf").read_text()
    assert 'name    = "hf-${var.service}"' in aws_main and aws_naming.aws_lb_name("x") == "hf-x"
    assert '"hedgeform-${var.service}-notices"' in aws_main
    assert aws_naming.notices_queue_name("x") == "hedgeform-x-notices"
    assert 'name    = "hf-${var.service}-${var.region}"' in gcp_main
    assert gcp_naming.gcp_url_map_name("x", "us-east1") == "hf-x-us-east1"
