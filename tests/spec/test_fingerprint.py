"""Which spec changes make a new version, and which replace replicas (spec/fingerprint.py)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from reconciler.spec import load_spec
from reconciler.spec.fingerprint import fingerprint, replica_fingerprint
from reconciler.spec.model import ServiceSpec

BASE = """\
service:
  readiness_probe: /health
  replicas: 2
resources:
  ports: 8080
  accelerators: L4
  use_spot: true
  any_of:
    - {cloud: aws, region: us-east-1, zone: us-east-1a}
envs:
  MODEL_NAME: llama-3
  HF_TOKEN: null
run: python -m vllm.entrypoints.openai.api_server --model $MODEL_NAME
"""


def spec_of(text: str, tmp_path: Path) -> ServiceSpec:
    path = tmp_path / "svc.yaml"
    path.write_text(text)
    return load_spec(path)


def test_what_replicas_run_changes_both_digests_the_service_section_only_one(
    tmp_path: Path,
) -> None:
    base = spec_of(BASE, tmp_path)
    model = spec_of(BASE.replace("llama-3", "llama-4"), tmp_path)
    size = spec_of(BASE.replace("replicas: 2", "replicas: 3"), tmp_path)
    zones = spec_of(BASE.replace("us-east-1a", "us-east-1b"), tmp_path)
    probe = spec_of(BASE.replace("/health", "/ready"), tmp_path)
    assert replica_fingerprint(model) != replica_fingerprint(base)
    assert fingerprint(model) != fingerprint(base)
    assert replica_fingerprint(probe) != replica_fingerprint(base)
    assert replica_fingerprint(size) == replica_fingerprint(base)  # service section only
    assert fingerprint(size) != fingerprint(base)
    assert (fingerprint(zones), replica_fingerprint(zones)) == (
        fingerprint(base),
        replica_fingerprint(base),
    )
    assert fingerprint(spec_of(BASE, tmp_path)) == fingerprint(base)  # stable


def test_a_secret_value_is_never_part_of_a_digest(tmp_path: Path) -> None:
    base = spec_of(BASE, tmp_path)
    rotated = replace(base, envs={**base.envs, "HF_TOKEN": "hf_new_secret"})
    assert fingerprint(rotated) == fingerprint(base)
    assert replica_fingerprint(rotated) == replica_fingerprint(base)
