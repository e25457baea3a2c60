"""Digests of a service spec that say when it changed (policy/rollout.py's versions).

`replica_fingerprint` covers what a replica runs: `setup`, `run`, the envs written in the
spec, the names of secret envs, the resources that pick and boot the machine (accelerators,
cpus, memory, disk, image, ports) and the readiness probe. `fingerprint` covers the whole
spec: also the `service:` section's replica policy and load balancing. Where replicas may
run (`any_of`, zones) and `use_spot` are in neither: moving zones retires replicas zone by
zone (engine), and the market is the policy's to choose.

Secret values are never hashed: they reach replicas through the clouds' secret stores at
boot, not through Terraform, so rotating one makes no new version (and no digest of a secret
lands in the record). Digests are SHA-256 of canonical JSON, hex.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from reconciler.spec.model import ServiceSpec


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def replica_part(spec: ServiceSpec) -> dict[str, Any]:
    """What a replica runs, as JSON-ready data (no secret value): the part both digests
    cover, and what the record keeps of each version so its replicas can be rendered again."""
    resources = dataclasses.asdict(spec.resources)
    for where in ("cloud", "region", "zone", "any_of", "use_spot"):
        resources.pop(where, None)
    return {
        "setup": spec.setup,
        "run": spec.run,
        "envs": spec.plain_envs,
        "secret_envs": sorted(spec.secret_env_names),
        "resources": resources,
        "ports": spec.service.ports,
        "readiness_probe": dataclasses.asdict(spec.service.readiness_probe),
    }


def replica_fingerprint(spec: ServiceSpec) -> str:
    """What a replica runs, as a digest (module docstring)."""
    return _digest(replica_part(spec))


def fingerprint(spec: ServiceSpec) -> str:
    """The whole spec, secret values excepted, as a digest (module docstring)."""
    service = dataclasses.asdict(spec.service)
    return _digest({"replica": replica_part(spec), "service": service, "name": spec.name})
