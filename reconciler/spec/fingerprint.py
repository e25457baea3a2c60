"""Digests of a service spec that say when it changed (policy/rollout.py's versions).

`replica_fingerprint` covers what a replica runs: `setup`, `run`, the envs written in the
spec, the names of secret envs, the resources that pick and boot the machine (accelerators,
cpus, memory, disk, image, ports) and what the readiness probe asks of it (path, POST body,
headers). `fingerprint` covers the whole spec: also the `service:` section's replica policy,
load balancing, the probe's timing (initial delay, timeout, failure threshold) and the paths
of the `tls` files (never their content), which the reconciler applies and no replica runs,
so changing them keeps the replicas, as SkyServe's `sky serve update` does. Where replicas may
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
from collections.abc import Mapping
from typing import Any

from reconciler.spec.model import (
    Accelerator,
    Location,
    ReadinessProbe,
    Resources,
    ServiceSpec,
)


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def replica_part(spec: ServiceSpec) -> dict[str, Any]:
    """What a replica runs, as JSON-ready data (no secret value): the part both digests
    cover, and what the record keeps of each version so its replicas can be rendered again."""
    probe = spec.service.readiness_probe
    resources = dataclasses.asdict(spec.resources)
    for where in ("cloud", "region", "zone", "any_of", "use_spot"):
        resources.pop(where, None)
    # Fields added later enter only when set, so an unchanged spec keeps its digests (a new
    # digest would roll every replica of every service out for nothing).
    if not spec.resources.accelerators_any_of:
        resources.pop("accelerators_any_of", None)
    if spec.resources.instance_type is None:
        resources.pop("instance_type", None)
    # The tiers the spec accepts are the ones every replica already gets: no change to run.
    resources.pop("disk_tier", None)
    resources.pop("network_tier", None)
    own = [loc for loc in spec.resources.any_of if loc.accelerators is not None]
    if own:
        resources["accelerators_by_location"] = [
            {
                "place": [loc.cloud, loc.region, loc.zone],
                "accelerators": [dataclasses.asdict(a) for a in loc.accelerators or ()],
                "any_of": loc.accelerators_any_of,
            }
            for loc in own
        ]
    return {
        "setup": spec.setup,
        "run": spec.run,
        "envs": spec.plain_envs,
        "secret_envs": sorted(spec.secret_env_names),
        "resources": resources,
        "ports": spec.service.ports,
        "readiness_probe": {k: _probe_value(probe, k) for k in PROBE_ASKS},
    }


# What the readiness probe asks of a replica; its timing is the reconciler's (module docstring).
PROBE_ASKS = ("path", "post_data", "headers")


def _probe_value(probe: ReadinessProbe, key: str) -> Any:
    value = getattr(probe, key)
    return dict(value) if isinstance(value, Mapping) else value


def spec_for_part(spec: ServiceSpec, part: Mapping[str, Any]) -> ServiceSpec:
    """`spec` as it was when its replica part was `part` (an earlier version's, from the
    record): what those replicas run and what their probe asks, the rest of today's spec
    around it. Secret values are
    not in `part` (only names): today's, or empty, fill them, which no render writes out."""
    res = dict(part.get("resources") or {})
    fields = {f.name for f in dataclasses.fields(Resources)}
    known = {k: v for k, v in res.items() if k in fields and k != "accelerators"}
    if "ports" in known:
        known["ports"] = tuple(known["ports"])
    accelerators = tuple(Accelerator(**a) for a in res.get("accelerators") or ())
    known.setdefault("accelerators_any_of", False)
    known.setdefault("instance_type", None)  # a version from before the field, or without it
    known["any_of"] = _located_accelerators(spec.resources.any_of, res)
    resources = dataclasses.replace(spec.resources, accelerators=accelerators, **known)
    asked = dict(part.get("readiness_probe") or {})
    probe = dataclasses.replace(
        spec.service.readiness_probe, **{k: asked[k] for k in PROBE_ASKS if k in asked}
    )
    secrets = frozenset(str(n) for n in part.get("secret_envs") or ())
    envs = {**dict(part.get("envs") or {}), **{n: spec.envs.get(n, "") for n in secrets}}
    return dataclasses.replace(
        spec,
        setup=part.get("setup"),
        run=part.get("run"),
        envs=envs,
        # Today's spec says which secret names are read from the environment (`null`): a
        # probe header such as `Authorization: Bearer $TOKEN` must still get its value.
        secret_names=secrets - spec.envs_from_environment,
        envs_from_environment=secrets & spec.envs_from_environment,
        resources=resources,
        service=dataclasses.replace(spec.service, readiness_probe=probe),
    )


def _located_accelerators(
    locations: tuple[Location, ...], res: Mapping[str, Any]
) -> tuple[Location, ...]:
    """Today's any_of entries with the accelerators `res` (a version's part) gave each place."""
    by_place = {tuple(item["place"]): item for item in res.get("accelerators_by_location") or ()}
    out = []
    for loc in locations:
        item = by_place.get((loc.cloud, loc.region, loc.zone))
        own = tuple(Accelerator(**a) for a in item["accelerators"]) if item is not None else None
        any_of = bool(item["any_of"]) if item is not None else False
        out.append(dataclasses.replace(loc, accelerators=own, accelerators_any_of=any_of))
    return tuple(out)


def replica_fingerprint(spec: ServiceSpec) -> str:
    """What a replica runs, as a digest (module docstring)."""
    return _digest(replica_part(spec))


def fingerprint(spec: ServiceSpec) -> str:
    """The whole spec, secret values excepted, as a digest (module docstring)."""
    service = dataclasses.asdict(spec.service)
    if not spec.service.replica_policy.target_qps_per_accelerator:  # see replica_part
        service["replica_policy"].pop("target_qps_per_accelerator", None)
    # `tls` (the sandbox endpoint's key and certificate) enters with its paths, only when
    # set: a new pair there is the front stack's change (the certificate's digest, rendered),
    # not a new version of the service, and no digest of the key is ever taken.
    if spec.service.tls is None:
        service.pop("tls", None)
    return _digest({"replica": replica_part(spec), "service": service, "name": spec.name})
