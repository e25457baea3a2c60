"""The readiness probe as each cloud's load balancer health check: the values rendered into
tfvars, the module variables that take them (typed, described, validated), and the modules'
own validations run by Terraform on what we render."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from reconciler.clouds import cloud_stack_context, front_stack_context, template_for
from reconciler.clouds.stack_context import Origin
from reconciler.rendering import render_tfvars
from reconciler.spec import ServiceSpec, load_spec
from tests.clouds.hcl import MODULES, load_hcl, variables
from tests.clouds.test_render_contract import (
    SETTINGS,
    SPEC_PATH,
    STACKS,
    _for_cloud,
    assert_contract,
)

TERRAFORM = MODULES.parents[1] / ".tools" / "bin" / "terraform"
needs_terraform = pytest.mark.skipif(not TERRAFORM.is_file(), reason="pinned Terraform missing")
CHECK_VARIABLES = {
    "aws": (
        "health_check_timeout_seconds",
        "health_check_interval_seconds",
        "health_check_healthy_threshold",
        "health_check_unhealthy_threshold",
    ),
    "gcp": (
        "health_check_timeout_seconds",
        "health_check_interval_seconds",
        "health_check_healthy_threshold",
        "health_check_unhealthy_threshold",
    ),
    # Azure's probe has no timeout and no healthy threshold: interval and number of probes.
    "azure": ("health_check_interval_seconds", "health_check_unhealthy_threshold"),
}


@pytest.fixture
def spec(monkeypatch: pytest.MonkeyPatch) -> ServiceSpec:
    monkeypatch.setenv("HF_TOKEN", "unused")
    return load_spec(SPEC_PATH)


def with_probe(spec: ServiceSpec, **changes: Any) -> ServiceSpec:
    probe = dataclasses.replace(spec.service.readiness_probe, **changes)
    service = dataclasses.replace(spec.service, readiness_probe=probe)
    return dataclasses.replace(spec, service=service)


def render(cloud: str, spec: ServiceSpec) -> dict[str, Any]:
    context = cloud_stack_context(_for_cloud(spec, cloud), STACKS[cloud], [], SETTINGS)
    return render_tfvars(template_for(cloud), context)


@pytest.mark.parametrize("cloud", sorted(CHECK_VARIABLES))
def test_the_probe_is_rendered_as_the_health_check(cloud: str, spec: ServiceSpec) -> None:
    rendered = render(
        cloud, with_probe(spec, timeout_seconds=30, consecutive_failure_threshold_timeout=300)
    )
    assert_contract(cloud, rendered)
    expected = {
        "health_check_timeout_seconds": 30,
        "health_check_interval_seconds": 31,  # longer than the timeout
        "health_check_healthy_threshold": 2,
        "health_check_unhealthy_threshold": 2,  # out of traffic fast; replaced by the policy
    }
    assert {k: rendered[k] for k in CHECK_VARIABLES[cloud]} == {
        k: expected[k] for k in CHECK_VARIABLES[cloud]
    }
    absent = set(expected) - set(CHECK_VARIABLES[cloud])
    assert not absent & set(rendered), "only what the cloud's health check can carry"


def test_the_defaults_follow_skyserves_defaults(spec: ServiceSpec) -> None:
    rendered = render("aws", spec)  # timeout 15, consecutive failures 180 s
    assert (
        rendered["health_check_timeout_seconds"],
        rendered["health_check_interval_seconds"],
        rendered["health_check_unhealthy_threshold"],
    ) == (15, 16, 2)


def test_probe_path_variables_are_substituted_from_the_spec(spec: ServiceSpec) -> None:
    custom = dataclasses.replace(
        with_probe(spec, path="/v1/${KIND}"), envs={**spec.envs, "KIND": "models"}
    )
    assert render("gcp", custom)["readiness_path"] == "/v1/models"
    origins = {"aws-us-east-1": Origin("aws", "us-east-1", "lb.example.com")}
    front = render_tfvars(
        template_for("front"), front_stack_context(custom, "x.example.com", "Z1", origins)
    )
    assert front["health_check_path"] == "/v1/models"


@pytest.mark.parametrize("cloud", sorted(CHECK_VARIABLES))
def test_health_check_variables_are_typed_described_and_validated(cloud: str) -> None:
    declared = variables(cloud)
    for name in CHECK_VARIABLES[cloud]:
        attrs = declared[name]
        assert "number" in str(attrs["type"])
        assert str(attrs["description"]).strip()
        assert attrs.get("validation"), f"{cloud}: {name} has no validation"
        assert "default" in attrs  # callers of the module may leave them out


def _find(node: Any, key: str) -> list[Any]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == key] + [
            x for v in node.values() for x in _find(v, key)
        ]
    if isinstance(node, list):
        return [x for item in node for x in _find(item, key)]
    return []


@pytest.mark.parametrize(
    ("cloud", "rtype", "attributes"),
    [
        (
            "aws",
            "aws_lb_target_group",
            {
                "timeout": "health_check_timeout_seconds",
                "interval": "health_check_interval_seconds",
                "healthy_threshold": "health_check_healthy_threshold",
                "unhealthy_threshold": "health_check_unhealthy_threshold",
            },
        ),
        (
            "gcp",
            "google_compute_health_check",
            {
                "timeout_sec": "health_check_timeout_seconds",
                "check_interval_sec": "health_check_interval_seconds",
                "healthy_threshold": "health_check_healthy_threshold",
                "unhealthy_threshold": "health_check_unhealthy_threshold",
            },
        ),
        (
            "azure",
            "azurerm_lb_probe",
            {
                "interval_in_seconds": "health_check_interval_seconds",
                "number_of_probes": "health_check_unhealthy_threshold",
            },
        ),
    ],
)
def test_the_modules_use_the_variables(cloud: str, rtype: str, attributes: dict[str, str]) -> None:
    resources = [
        body
        for block in load_hcl(MODULES / cloud / "main.tf").get("resource", [])
        for name, body in block.get(rtype, {}).items()
    ]
    assert resources
    for resource in resources:  # on aws also one target group per GPU type (issue 15)
        for attribute, variable in attributes.items():
            assert _find(resource, attribute) == [f"${{var.{variable}}}"], (cloud, attribute)
        if cloud == "aws":
            assert _find(resource, "matcher") == ["200"]  # SkyServe: HTTP 200 exactly


# ---------------------------------------------------------------- Terraform's own validation


def _terraform_validates(cloud: str, tfvars: dict[str, Any], tmp_path: Path) -> str:
    """Plan a root module holding only `cloud`'s variables.tf (no provider needed) with
    `tfvars`: Terraform evaluates every variable validation. Returns the error text, "" if ok."""
    (tmp_path / "variables.tf").write_text((MODULES / cloud / "variables.tf").read_text())
    (tmp_path / "values.tfvars.json").write_text(json.dumps(tfvars))
    env = {**os.environ, "HOME": str(tmp_path), "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}
    env.pop("TF_CLI_CONFIG_FILE", None)
    for args in (
        ["init", "-input=false", "-backend=false"],
        ["plan", "-input=false", "-refresh=false", "-var-file=values.tfvars.json"],
    ):
        run = subprocess.run(
            [str(TERRAFORM), *args], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        if run.returncode != 0:
            return run.stdout + run.stderr
    return ""


@needs_terraform
@pytest.mark.parametrize("cloud", sorted(CHECK_VARIABLES))
@pytest.mark.parametrize(("timeout", "failing"), [(2, 1), (15, 180), (120, 3600)])
def test_what_we_render_passes_the_module_validations(
    cloud: str, timeout: int, failing: int, spec: ServiceSpec, tmp_path: Path
) -> None:
    probe = {"timeout_seconds": timeout, "consecutive_failure_threshold_timeout": failing}
    rendered = render(cloud, with_probe(spec, **probe))
    assert _terraform_validates(cloud, rendered, tmp_path) == ""


@needs_terraform
@pytest.mark.parametrize(
    ("cloud", "variable", "value", "message"),
    [
        ("aws", "health_check_timeout_seconds", 121, "2..120"),
        ("aws", "health_check_interval_seconds", 4, "5..300"),
        ("aws", "health_check_unhealthy_threshold", 11, "2..10"),
        ("gcp", "health_check_interval_seconds", 301, "1..300"),
        ("gcp", "health_check_healthy_threshold", 1.5, "1..10"),
        ("azure", "health_check_interval_seconds", 4, "at least 5"),
    ],
)
def test_the_module_validations_refuse_out_of_range_values(
    cloud: str, variable: str, value: float, message: str, spec: ServiceSpec, tmp_path: Path
) -> None:
    rendered = {**render(cloud, spec), variable: value}
    error = _terraform_validates(cloud, rendered, tmp_path)
    assert "Invalid value for variable" in error and message in error
