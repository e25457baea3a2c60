"""The `service` section: readiness probe, replica policy, load balancing (SkyServe semantics)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TypeVar

from reconciler.spec import schema
from reconciler.spec.errors import Problems
from reconciler.spec.fields import Section, describe, join, open_section
from reconciler.spec.model import (
    LOAD_BALANCING_POLICIES,
    SPOT_PLACERS,
    ReadinessProbe,
    ReplicaPolicy,
    ServiceSection,
)

# The probe path ends up in HAProxy config and curl arguments: printable ASCII, no spaces.
_PROBE_PATH = re.compile(r"/[\x21-\x7e]*")
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")
_PATH_RULE = "must start with '/' and contain no spaces or control characters"


def parse_service(value: object, problems: Problems) -> ServiceSection:
    section = open_section(value, "service", problems, schema.SERVICE)
    if section is None:
        return ServiceSection()
    probe = _readiness_probe(section, problems)
    policy = _replica_policy(section, problems)
    port = section.integer("ports", minimum=1)
    if port is not None and port > 65535:
        section.bad("ports", f"must be a port 1-65535, got {port}")
        port = None
    return ServiceSection(
        readiness_probe=probe,
        replica_policy=policy,
        load_balancing_policy=section.choice("load_balancing_policy", LOAD_BALANCING_POLICIES),
        ports=port,
    )


def _readiness_probe(service: Section, problems: Problems) -> ReadinessProbe:
    value = service.get("readiness_probe")
    path = service.at("readiness_probe")
    if isinstance(value, str):  # shorthand: just the path
        return ReadinessProbe(path=value) if _path_ok(value, path, problems) else ReadinessProbe()
    section = open_section(value, path, problems, schema.READINESS_PROBE)
    if section is None:
        return ReadinessProbe()
    default = ReadinessProbe()
    probe_path = section.string("path")
    if probe_path is not None and not _path_ok(probe_path, section.at("path"), problems):
        probe_path = None
    initial = section.integer("initial_delay_seconds", minimum=0)
    timeout = section.integer("timeout_seconds", minimum=1)
    return ReadinessProbe(
        path=probe_path or default.path,
        post_data=_post_data(section),
        headers=_headers(section, problems),
        initial_delay_seconds=default.initial_delay_seconds if initial is None else initial,
        timeout_seconds=default.timeout_seconds if timeout is None else timeout,
    )


def _path_ok(value: str, path: str, problems: Problems) -> bool:
    if _PROBE_PATH.fullmatch(value):
        return True
    problems.add(path, f"{_PATH_RULE}, got {describe(value)}")
    return False


def _post_data(section: Section) -> Mapping[str, object] | str | None:
    value = section.get("post_data")
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {str(k): v for k, v in value.items()}
    section.bad(
        "post_data", f"must be a string or a mapping with string keys, got {describe(value)}"
    )
    return None


def _headers(section: Section, problems: Problems) -> dict[str, str]:
    value = section.get("headers")
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        section.bad("headers", f"must be a mapping of header name to value, got {describe(value)}")
        return {}
    headers: dict[str, str] = {}
    for name, raw in value.items():
        where = join(section.at("headers"), str(name))
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            problems.add(where, "header names must be HTTP tokens (letters, digits, '-', ...)")
        elif not isinstance(raw, str | int | float) or isinstance(raw, bool):
            problems.add(where, f"header values must be strings, got {describe(raw)}")
        elif any(ch in str(raw) for ch in "\r\n\0"):
            problems.add(where, "header values must not contain line breaks or NUL")
        else:
            headers[name] = str(raw)
    return headers


def _replica_policy(service: Section, problems: Problems) -> ReplicaPolicy:
    if service.has("replicas"):
        if service.has("replica_policy"):
            service.bad(
                "replicas",
                "cannot be combined with service.replica_policy; "
                "use replica_policy.min_replicas/max_replicas instead",
            )
        count = service.integer("replicas", minimum=1)
        return ReplicaPolicy() if count is None else ReplicaPolicy(count, count)
    section = open_section(
        service.get("replica_policy"),
        service.at("replica_policy"),
        problems,
        schema.REPLICA_POLICY,
    )
    if section is None:
        return ReplicaPolicy()
    d = ReplicaPolicy()
    policy = ReplicaPolicy(
        min_replicas=_or(section.integer("min_replicas", minimum=0), d.min_replicas),
        max_replicas=section.integer("max_replicas", minimum=0),
        target_qps_per_replica=section.positive_number("target_qps_per_replica"),
        upscale_delay_seconds=_or(
            section.integer("upscale_delay_seconds", minimum=0), d.upscale_delay_seconds
        ),
        downscale_delay_seconds=_or(
            section.integer("downscale_delay_seconds", minimum=0), d.downscale_delay_seconds
        ),
        num_overprovision=_or(section.integer("num_overprovision", minimum=0), d.num_overprovision),
        base_ondemand_fallback_replicas=_or(
            section.integer("base_ondemand_fallback_replicas", minimum=0),
            d.base_ondemand_fallback_replicas,
        ),
        dynamic_ondemand_fallback=_or(
            section.boolean("dynamic_ondemand_fallback"), d.dynamic_ondemand_fallback
        ),
        spot_placer=section.choice("spot_placer", SPOT_PLACERS),
    )
    _check_counts(section, policy)
    return policy


T = TypeVar("T")


def _or(value: T | None, fallback: T) -> T:
    return fallback if value is None else value


def _check_counts(section: Section, policy: ReplicaPolicy) -> None:
    """Cross-field rules, skipped when a field involved was itself invalid."""
    if not section.valid("min_replicas", "max_replicas"):
        return
    low, high = policy.min_replicas, policy.max_replicas
    if high is not None and low > high:
        section.bad("min_replicas", f"must be <= max_replicas ({low} > {high})")
    if (
        high is not None
        and high > low
        and policy.target_qps_per_replica is None
        and section.valid("target_qps_per_replica")
    ):
        section.bad(
            "target_qps_per_replica",
            f"required when max_replicas > min_replicas "
            f"({high} > {low}): autoscaling needs a target load per replica",
        )
    if low == 0 and not high:
        section.bad("min_replicas", "0 needs max_replicas >= 1 (else the service never runs)")
    base = policy.base_ondemand_fallback_replicas
    if base > low and section.valid("base_ondemand_fallback_replicas"):
        section.bad("base_ondemand_fallback_replicas", f"must be <= min_replicas ({base} > {low})")
