"""The two shipped service files load with the values the sandbox and the docs rely on."""

from __future__ import annotations

from pathlib import Path

from reconciler.spec import Accelerator, Location, load_spec

SERVICES = Path(__file__).resolve().parents[2] / "services"


def test_sandbox_service_loads_with_three_local_zones() -> None:
    spec = load_spec(SERVICES / "llama.yaml")
    assert spec.name == "llama"
    assert spec.resources.locations == (
        Location("local", "local-1", "local-1a"),
        Location("local", "local-1", "local-1b"),
        Location("local", "local-2", "local-2a"),
    )
    assert spec.resources.use_spot is True
    assert spec.resources.accelerators == (Accelerator("L4", 1),)
    assert spec.resources.cpus == "32+"
    assert spec.resources.ports == (8081,)
    policy = spec.service.replica_policy
    assert (policy.min_replicas, policy.max_replicas) == (2, 5)
    assert policy.target_qps_per_replica == 10
    assert policy.num_overprovision == 1
    assert policy.dynamic_ondemand_fallback is True
    assert policy.spot_placer == "dynamic_fallback"
    assert spec.service.readiness_probe.path == "/health"
    assert spec.envs["MODEL_NAME"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert spec.envs_from_environment == frozenset()  # runs on a fresh clone, no env set
    assert spec.run is not None and "sandbox" in spec.run


def test_cloud_service_matches_the_skyserve_example() -> None:
    spec = load_spec(SERVICES / "llama-cloud.yaml")
    assert spec.name == "llama-cloud"
    assert spec.resources.any_of == (Location("aws", "us-east-1"), Location("gcp"))
    assert spec.resources.use_spot is True
    assert spec.resources.accelerators == (Accelerator("L4", 1),)
    policy = spec.service.replica_policy
    assert (policy.min_replicas, policy.max_replicas, policy.num_overprovision) == (2, 5, 1)
    assert policy.spot_placer == "dynamic_fallback"
    assert spec.setup is not None and "pip install vllm" in spec.setup
    assert spec.run is not None and "vllm serve $MODEL_NAME" in spec.run
    assert "--port 8081" in spec.run
    assert spec.envs == {"MODEL_NAME": "meta-llama/Llama-3.1-8B-Instruct", "HF_TOKEN": ""}
    assert "HF_TOKEN" in spec.envs_from_environment
