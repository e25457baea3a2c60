"""SkyPilot's many spellings normalise to one form: accelerators, ports, cpus, envs, probes."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.spec import Accelerator, ReadinessProbe, ServiceSpec, parse_spec


def parse(doc: dict[str, Any]) -> ServiceSpec:
    return parse_spec(doc, name="svc", source="svc.yaml")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("L4", (Accelerator("L4", 1),)),
        ("L4:2", (Accelerator("L4", 2),)),
        ({"L4": 1}, (Accelerator("L4", 1),)),
        ({"A100-80GB": 8}, (Accelerator("A100-80GB", 8),)),
        ({"L4": None, "A10G": None}, (Accelerator("L4", 1), Accelerator("A10G", 1))),
        (["L4:1", {"A10G": 2}], (Accelerator("L4", 1), Accelerator("A10G", 2))),
        ({"L4", "A10G"}, (Accelerator("A10G", 1), Accelerator("L4", 1))),
    ],
)
def test_accelerator_forms(base: dict[str, Any], value: object, expected: object) -> None:
    base["resources"]["accelerators"] = value
    assert parse(base).resources.accelerators == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (8081, (8081,)),
        ("8081", (8081,)),
        ([8082, 8081, 8081], (8081, 8082)),
        ("8080-8082", (8080, 8081, 8082)),
        ([8080, "9000-9001"], (8080, 9000, 9001)),
    ],
)
def test_port_forms(base: dict[str, Any], value: object, expected: object) -> None:
    base["resources"]["ports"] = value
    base["service"]["ports"] = 8080 if len(expected) > 1 else None  # type: ignore[arg-type]
    assert parse(base).resources.ports == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(32, "32"), ("32+", "32+"), ("8", "8"), (0.5, "0.5"), ("4.0+", "4+"), (" 16 ", "16")],
)
def test_cpus_and_memory_forms(base: dict[str, Any], value: object, expected: str) -> None:
    base["resources"]["cpus"] = value
    base["resources"]["memory"] = value
    resources = parse(base).resources
    assert (resources.cpus, resources.memory) == (expected, expected)


def test_readiness_probe_string_form(base: dict[str, Any]) -> None:
    base["service"]["readiness_probe"] = "/v1/models"
    assert parse(base).service.readiness_probe == ReadinessProbe(path="/v1/models")


def test_readiness_probe_mapping_form(base: dict[str, Any]) -> None:
    base["resources"] = {"cloud": "local", "use_spot": True, "ports": 8081}  # carries headers
    base["service"]["readiness_probe"] = {
        "path": "/v1/chat/completions",
        "post_data": {"model": "m", "messages": []},
        "headers": {"Authorization": "Bearer x", "X-Retries": 3},
        "initial_delay_seconds": 60,
        "timeout_seconds": 5,
        "consecutive_failure_threshold_timeout": 90,
    }
    probe = parse(base).service.readiness_probe
    assert probe.path == "/v1/chat/completions"
    assert probe.post_data == {"model": "m", "messages": []}
    assert probe.headers == {"Authorization": "Bearer x", "X-Retries": "3"}
    assert (probe.initial_delay_seconds, probe.timeout_seconds) == (60, 5)
    assert probe.consecutive_failure_threshold_timeout == 90


def test_replicas_shorthand(base: dict[str, Any]) -> None:
    base["service"] = {"readiness_probe": "/", "replicas": 3}
    policy = parse(base).service.replica_policy
    assert (policy.min_replicas, policy.max_replicas, policy.upper) == (3, 3, 3)


def test_no_replica_settings_means_one(base: dict[str, Any]) -> None:
    base["service"] = {"readiness_probe": "/"}
    assert parse(base).service.replica_policy.upper == 1


def test_envs_are_stringified(base: dict[str, Any]) -> None:
    base["envs"] = {"A": 1, "B": 2.5, "C": True, "D": False, "E": "x", "F": None}
    spec = parse(base)
    assert spec.envs == {"A": "1", "B": "2.5", "C": "true", "D": "false", "E": "x", "F": ""}
    assert spec.envs_from_environment == frozenset({"F"})


def test_secrets_join_envs_and_are_marked(base: dict[str, Any]) -> None:
    base["envs"] = {"MODEL": "m"}
    base["secrets"] = {"HF_TOKEN": None, "API_KEY": "k"}
    spec = parse(base)
    assert spec.envs == {"MODEL": "m", "HF_TOKEN": "", "API_KEY": "k"}
    assert spec.secret_names == frozenset({"HF_TOKEN", "API_KEY"})
    assert spec.envs_from_environment == frozenset({"HF_TOKEN"})


def test_controller_only_skypilot_fields_are_accepted_with_a_note(base: dict[str, Any]) -> None:
    """Fields only SkyPilot's controller reads are accepted, each with a note; fields that
    change what a replica runs (workdir, file_mounts, ...) are refused (test_skyserve_fields)."""
    base.update(name="other", num_nodes=1, event_callback="echo hi")
    spec = parse(base)
    assert spec.name == "svc"
    assert [note.split(":")[0] for note in spec.notes] == ["name", "event_callback"]
    assert all(": accepted and ignored: " in note for note in spec.notes)


def test_cloud_names_are_lowercased(base: dict[str, Any]) -> None:
    base["resources"]["cloud"] = "GCP"
    assert parse(base).resources.locations[0].cloud == "gcp"


def test_null_sections_use_defaults(base: dict[str, Any]) -> None:
    base["service"]["replica_policy"]["upscale_delay_seconds"] = None
    base["envs"] = None
    spec = parse(base)
    assert spec.service.replica_policy.upscale_delay_seconds == 300
    assert spec.envs == {}
