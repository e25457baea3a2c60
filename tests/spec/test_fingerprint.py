"""Which spec changes make a new version, and which replace replicas (spec/fingerprint.py)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from reconciler.spec import load_spec
from reconciler.spec.fingerprint import (
    fingerprint,
    replica_fingerprint,
    replica_part,
    spec_for_part,
)
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


PROBED = BASE.replace(
    "  readiness_probe: /health\n",
    "  readiness_probe:\n    path: /health\n    initial_delay_seconds: 1200\n"
    "    timeout_seconds: 15\n",
)


def test_probe_timing_keeps_the_replicas_and_what_the_probe_asks_replaces_them(
    tmp_path: Path,
) -> None:
    """The issue: a change to `service:` alone (autoscaling, probe timing) is a version that
    keeps the replicas. Timing is the reconciler's; the path is what a replica must answer."""
    base = spec_of(PROBED, tmp_path)
    timing = spec_of(
        PROBED.replace("1200", "600").replace("timeout_seconds: 15", "timeout_seconds: 10"),
        tmp_path,
    )
    path = spec_of(PROBED.replace("/health", "/healthz"), tmp_path)
    assert replica_fingerprint(timing) == replica_fingerprint(base)
    assert fingerprint(timing) != fingerprint(base)
    assert replica_fingerprint(path) != replica_fingerprint(base)


def test_an_earlier_versions_spec_asks_its_own_probe_path(tmp_path: Path) -> None:
    """Replicas of an earlier version are probed as they were built: a typo in today's probe
    path must not take the old, healthy replicas out of service."""
    old = spec_of(PROBED, tmp_path)
    today = spec_of(PROBED.replace("/health", "/healthz").replace("1200", "600"), tmp_path)
    rebuilt = spec_for_part(today, replica_part(old))
    assert rebuilt.service.readiness_probe.path == "/health"
    assert rebuilt.service.readiness_probe.initial_delay_seconds == 600  # timing: today's
    assert replica_fingerprint(rebuilt) == replica_fingerprint(old)


def test_an_earlier_versions_spec_keeps_secrets_read_from_the_environment(
    tmp_path: Path,
) -> None:
    """CI caught it: a probe with `Authorization: Bearer ${TOKEN}` (TOKEN: null, read from
    the environment) lost its value when replicas were probed as their version asks, so no
    replica ever became ready."""
    from reconciler.spec.model import ReadinessProbe, ServiceSection

    probe = ReadinessProbe(path="/health", headers={"Authorization": "Bearer ${HF_TOKEN}"})
    spec = ServiceSpec(
        "svc",
        ServiceSection(readiness_probe=probe),
        envs={"HF_TOKEN": "", "API_KEY": "k"},
        envs_from_environment=frozenset({"HF_TOKEN"}),
        secret_names=frozenset({"API_KEY"}),
    )
    rebuilt = spec_for_part(spec, replica_part(spec))
    assert rebuilt.envs_from_environment == spec.envs_from_environment
    assert rebuilt.secret_env_names == spec.secret_env_names


def test_an_instance_type_is_part_of_what_a_replica_runs_a_tier_it_already_gets_is_not(
    tmp_path: Path,
) -> None:
    """`instance_type` picks the machine: a new version's replicas; `disk_tier: medium` and
    `network_tier: standard` are what every replica already gets: no new version."""
    base = spec_of(BASE, tmp_path)
    typed = spec_of(BASE.replace("  accelerators: L4\n", "  instance_type: g6.xlarge\n"), tmp_path)
    tiers = spec_of(
        BASE.replace("  use_spot: true\n", "  use_spot: true\n  disk_tier: medium\n"
                     "  network_tier: standard\n"),
        tmp_path,
    )  # fmt: skip
    assert typed.resources.instance_type == "g6.xlarge"
    assert replica_fingerprint(typed) != replica_fingerprint(base)
    assert (tiers.resources.disk_tier, tiers.resources.network_tier) == ("medium", "standard")
    assert fingerprint(tiers) == fingerprint(base)
    # An earlier version without an instance type is rendered again without one.
    again = spec_for_part(typed, replica_part(base))
    assert again.resources.instance_type is None
    assert again.resources.accelerators == base.resources.accelerators
