"""The `service` section: readiness probe, replica policy, load balancing (SkyServe semantics)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from reconciler.spec import schema
from reconciler.spec.errors import Problems
from reconciler.spec.fields import ACCELERATOR_NAME, Section, describe, join, open_section
from reconciler.spec.model import (
    LOAD_BALANCING_POLICIES,
    SPOT_PLACERS,
    ReadinessProbe,
    ReplicaPolicy,
    ServiceSection,
    TLSFiles,
)

# The probe path ends up in HAProxy config and curl arguments: printable ASCII, no spaces.
_PROBE_PATH = re.compile(r"/[\x21-\x7e]*")
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")
_PATH_RULE = "must start with '/' and contain no spaces or control characters"
# Upper bounds (seconds). A probe that may hang for an hour, a model that may take more than a
# day to load, or a replica left failing for more than a day are mistakes; the bounds also keep
# every time the policy computes far inside the platform's time range.
MAX_PROBE_TIMEOUT_S = 3_600
# A service of more than a thousand GPU replicas is beyond what one reconciler plans per tick
# (one Terraform resource each); the bound also keeps a typo such as 1e30 from hanging `plan`.
MAX_REPLICAS = 1_000
MAX_DELAY_S = 604_800  # autoscaler delays: at most a week
# Requests/s one replica is sized for: the autoscaler counts requests over a 60 s window, so a
# target below 0.001 (one request per 17 minutes) cannot be told from none; no model server
# answers a million requests a second.
MIN_TARGET_QPS = 0.001
MAX_TARGET_QPS = 1_000_000.0
# A per-accelerator target's key: `L4` or `L4:1` (SkyServe matches either to the replica's GPU).
ACCELERATOR_KEY = re.compile(ACCELERATOR_NAME.pattern + r"(?::[1-9][0-9]{0,2})?")
MAX_INITIAL_DELAY_S = 86_400
MAX_FAILURE_THRESHOLD_S = 86_400
# `$NAME` or `${NAME}` in the probe's path, header values and post_data (SkyServe substitutes
# the spec's envs into the service section); reconciler/readiness.py does the substituting.
ENV_REFERENCE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def expand_vars(text: str, values: Mapping[str, str]) -> str:
    """`text` with each `$NAME` / `${NAME}` replaced from `values`; a name not there is left
    as written (SkyServe's rule). One pass: a value holding `$X` is not expanded again."""
    return ENV_REFERENCE.sub(lambda m: values.get(m.group(1) or m.group(2), m.group(0)), text)


def parse_service(value: object, problems: Problems) -> ServiceSection:
    section = open_section(value, "service", problems, schema.SERVICE)
    if section is None:
        return ServiceSection()
    probe = _readiness_probe(section, problems)
    policy = _replica_policy(section, problems)
    port = section.integer("ports", minimum=1, maximum=65535)
    balancing = section.choice("load_balancing_policy", LOAD_BALANCING_POLICIES)
    _check_instance_aware(section, policy, balancing)
    return ServiceSection(
        readiness_probe=probe,
        replica_policy=policy,
        load_balancing_policy=balancing,
        ports=port,
        tls=_tls(section, problems),
    )


def _tls(section: Section, problems: Problems) -> TLSFiles | None:
    """SkyServe's `tls: {keyfile: PATH, certfile: PATH}`, both required, as written: the
    loader (spec/tls.py) expands and checks the files, which this pure parser cannot read."""
    if not section.has("tls"):
        return None
    tls = open_section(section.get("tls"), section.at("tls"), problems, schema.TLS)
    if tls is None:
        return None
    paths = {}
    for key in schema.TLS:
        value = tls.string(key)
        if value is None and tls.valid(key):
            tls.bad(key, "required: the path of a PEM file on this machine")
        elif value is not None and not value.strip():
            tls.bad(key, "must be a path, got an empty string")
        elif value is not None:
            paths[key] = value
    if len(paths) < len(schema.TLS):
        return None
    return TLSFiles(keyfile=paths["keyfile"], certfile=paths["certfile"])


INSTANCE_AWARE = "instance_aware_least_load"


def _check_instance_aware(section: Section, policy: ReplicaPolicy, balancing: str | None) -> None:
    """SkyServe's pairing rule (sky/serve/service_spec.py): a per-accelerator
    `target_qps_per_replica` needs `load_balancing_policy: instance_aware_least_load`, and
    that policy needs the per-accelerator map."""
    per_accelerator = bool(policy.target_qps_per_accelerator)
    if per_accelerator and balancing != INSTANCE_AWARE and section.valid("load_balancing_policy"):
        section.bad(
            "load_balancing_policy",
            f"must be {INSTANCE_AWARE} when replica_policy.target_qps_per_replica maps "
            f"accelerators to targets (got {balancing or 'none'})",
        )
    replica_policy = section.get("replica_policy")
    target = (
        replica_policy.get("target_qps_per_replica")
        if isinstance(replica_policy, Mapping)
        else None
    )
    if balancing == INSTANCE_AWARE and not per_accelerator and not isinstance(target, Mapping):
        section.bad(
            "load_balancing_policy",
            f"{INSTANCE_AWARE} needs replica_policy.target_qps_per_replica as a map of "
            "accelerator to requests/s (e.g. {A100: 5, L4: 2})",
        )


def _per_accelerator_targets(section: Section, problems: Problems) -> dict[str, float]:
    """`target_qps_per_replica: {A100: 5, L4: 2}` -> {"A100": 5.0, "L4": 2.0}; names as
    `resources.accelerators` writes them (`NAME` or `NAME:COUNT`)."""
    key = "target_qps_per_replica"
    value = section.get(key)
    if not isinstance(value, Mapping):
        return {}
    if not value:
        section.bad(key, "an empty map; give requests/s per accelerator, e.g. {A100: 5, L4: 2}")
        return {}
    entries = Section({}, section.at(key), problems)
    targets: dict[str, float] = {}
    seen: set[str] = set()
    for name, qps in value.items():
        if not isinstance(name, str) or not ACCELERATOR_KEY.fullmatch(name):
            section.bad(
                key, f"keys must be accelerator names like L4 or A100:1, got {describe(name)}"
            )
            continue
        base = name.partition(":")[0].upper()
        if base in seen:
            entries.bad(name, f"{base!r} has a target more than once")
            continue
        seen.add(base)
        if qps is None:
            entries.bad(name, "no value; give requests/s, a number from 0.001 to 1e+06")
            continue
        entries.data = {name: qps}
        number = entries.positive_number(name, MIN_TARGET_QPS, MAX_TARGET_QPS)
        if number is not None:
            targets[name] = number
    if entries.invalid:
        section.invalid.add(key)
    return targets


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
    initial = section.integer("initial_delay_seconds", minimum=0, maximum=MAX_INITIAL_DELAY_S)
    timeout = section.integer("timeout_seconds", minimum=1, maximum=MAX_PROBE_TIMEOUT_S)
    failing = section.integer(
        "consecutive_failure_threshold_timeout", minimum=1, maximum=MAX_FAILURE_THRESHOLD_S
    )
    return ReadinessProbe(
        path=probe_path or default.path,
        post_data=_post_data(section),
        headers=_headers(section, problems),
        initial_delay_seconds=_or(initial, default.initial_delay_seconds),
        timeout_seconds=_or(timeout, default.timeout_seconds),
        consecutive_failure_threshold_timeout=_or(
            failing, default.consecutive_failure_threshold_timeout
        ),
    )


def _path_ok(value: str, path: str, problems: Problems) -> bool:
    if _PROBE_PATH.fullmatch(value):
        return True
    problems.add(path, f"{_PATH_RULE}, got {describe(value)}")
    return False


def _post_data(section: Section) -> Mapping[str, object] | str | None:
    """A mapping, or a string of JSON text: SkyServe `json.loads` a string and sends the parsed
    value as the JSON body, so a string that is not JSON is refused here, as SkyServe does."""
    value = section.get("post_data")
    if value is None:
        return None
    if isinstance(value, str):
        try:
            json.loads(value)
        except json.JSONDecodeError as error:
            hint = "; put variables inside JSON strings" if "$" in value else ""
            section.bad(
                "post_data",
                f"a string must be JSON (SkyServe sends it parsed, as the JSON body): "
                f"{error.msg} at character {error.pos}{hint}",
            )
            return None
        return value
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            section.bad(
                "post_data",
                "must hold only JSON values (strings, numbers, true/false, null, lists and "
                "mappings with string keys); dates, sets and NaN cannot be sent",
            )
            return None
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
        elif not str(raw).isascii():
            # HTTP clients send header values as ISO-8859-1; non-ASCII is not portable.
            problems.add(where, "header values must be ASCII (HTTP sends them as bytes)")
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
        count = service.integer("replicas", minimum=1, maximum=MAX_REPLICAS)
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
        min_replicas=_or(
            section.integer("min_replicas", minimum=0, maximum=MAX_REPLICAS), d.min_replicas
        ),
        max_replicas=section.integer("max_replicas", minimum=0, maximum=MAX_REPLICAS),
        target_qps_per_replica=(
            None
            if isinstance(section.get("target_qps_per_replica"), Mapping)
            else section.positive_number("target_qps_per_replica", MIN_TARGET_QPS, MAX_TARGET_QPS)
        ),
        target_qps_per_accelerator=_per_accelerator_targets(section, problems),
        upscale_delay_seconds=_or(
            section.integer("upscale_delay_seconds", minimum=0, maximum=MAX_DELAY_S),
            d.upscale_delay_seconds,
        ),
        downscale_delay_seconds=_or(
            section.integer("downscale_delay_seconds", minimum=0, maximum=MAX_DELAY_S),
            d.downscale_delay_seconds,
        ),
        num_overprovision=_or(
            section.integer("num_overprovision", minimum=0, maximum=MAX_REPLICAS),
            d.num_overprovision,
        ),
        base_ondemand_fallback_replicas=_or(
            section.integer("base_ondemand_fallback_replicas", minimum=0, maximum=MAX_REPLICAS),
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
        and not policy.target_qps_per_accelerator
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


# -- what a cloud load balancer's health check can carry of the probe ----------------------
#
# On aws, gcp and azure the load balancer's own health check decides which replicas get
# traffic (and, on AWS, is the readiness the reconciler reads), so the probe must fit it:
# - AWS target group health check: path, timeout 2-120 s, interval 5-300 s (longer than the
#   timeout), healthy/unhealthy thresholds 2-10, matcher; no headers, no POST body.
# - GCP HTTP health check: request path, timeout (at most the check interval, 1-300 s),
#   thresholds; no custom headers, no POST.
# - Azure Standard LB HTTP probe: request path, interval (>= 5 s), number of probes; no
#   timeout setting, no headers, no POST.
# Its values are derived by `load_balancer_health_check` and rendered into each module.
#
# Why here and not in clouds/<cloud>/: the spec sits below the clouds in the layers
# (docs/architecture.md) and cannot import them, and a probe a cloud cannot carry must be
# refused when the spec is loaded, with its field, before anything is planned. So the limits
# are one per-cloud table here, the one exception to "everything one cloud means lives in its
# folder", and each mirrors the validation of its module's health check variables
# (terraform/modules/<cloud>/variables.tf, which Terraform enforces again at plan time):
# - aws: health_check_timeout_seconds 2..120 (the target group's range);
# - gcp: health_check_timeout_seconds 1..300 and at most the interval (1..300 too), so with
#   interval = timeout + 1 a timeout of at most 299;
# - azure: no timeout variable at all (the LB probe has none); interval >= 5, probes 1..100.
# Headers and POST bodies are refused for all three (none of the health checks sends them).
# Adding a cloud: add its row, from its module's variables.

LB_INTERVAL_FLOOR_S = 10  # SkyServe probes each replica every 10 s (_ENDPOINT_PROBE_INTERVAL)
LB_HEALTHY_THRESHOLD = 2  # AWS's minimum: the nearest to SkyServe's "ready on the first 200"
LB_UNHEALTHY_THRESHOLD = 2  # AWS's minimum (range 2-10; GCP 1-10, Azure 1-100)


@dataclass(frozen=True)
class LoadBalancerHealthCheck:
    """A cloud load balancer's health check for the spec's probe: seconds and counts."""

    timeout_s: int
    interval_s: int
    healthy_threshold: int
    unhealthy_threshold: int


@dataclass(frozen=True)
class _LbLimits:
    carries: str  # what the health check can carry, for messages
    timeouts: tuple[int, int] | None  # allowed timeout_seconds; None: no timeout setting
    timeout_rule: str = ""


_LB_LIMITS = {
    "aws": _LbLimits("path, timeout, interval and thresholds", (2, 120), "waits 2-120 s"),
    "gcp": _LbLimits(
        "path, timeout, interval and thresholds",
        (1, 299),
        "waits 1-299 s (its check interval, at most 300 s, is one second longer)",
    ),
    "azure": _LbLimits("path, interval and a probe count", None),
}


def load_balancer_health_check(probe: ReadinessProbe) -> LoadBalancerHealthCheck:
    """The probe as a cloud load balancer health check (same rule on every cloud):

    - timeout = `timeout_seconds` (Azure has no timeout setting and ignores it);
    - interval = max(10, timeout + 1): SkyServe's 10 s probe cadence, or just longer than the
      timeout, which AWS requires (GCP requires interval >= timeout);
    - unhealthy threshold = 2 (the AWS minimum): like SkyServe, which stops routing to a
      replica at its first failed probe, the balancer takes a failing replica out of traffic
      after two checks; *replacing* it is the policy's job, after
      `consecutive_failure_threshold_timeout` (policy/lifecycle.py);
    - healthy threshold = 2 (the AWS minimum; SkyServe counts the first 200).
    """
    timeout = probe.timeout_seconds
    return LoadBalancerHealthCheck(
        timeout_s=timeout,
        interval_s=max(LB_INTERVAL_FLOOR_S, timeout + 1),
        healthy_threshold=LB_HEALTHY_THRESHOLD,
        unhealthy_threshold=LB_UNHEALTHY_THRESHOLD,
    )


def check_probe_for_clouds(
    probe: ReadinessProbe,
    clouds: Iterable[str | None],
    plain_envs: Mapping[str, str],
    problems: Problems,
) -> None:
    """Refuse, one line per field and cloud, a probe that a location's cloud load balancer
    health check cannot carry (see the table above); the sandbox carries everything.

    The health check path is written into Terraform variables, so on those clouds it may only
    use variables whose value is written in the spec's `envs` (`plain_envs`: not secrets, not
    values taken from the environment).
    """
    where = "service.readiness_probe"
    sandbox = "or serve on the local sandbox"
    for cloud in sorted({c for c in clouds if c in _LB_LIMITS}):
        limits = _LB_LIMITS[cloud]
        check = f"the {cloud} load balancer health check"
        if probe.headers:
            problems.add(
                f"{where}.headers",
                f"{check} cannot send headers (it can carry {limits.carries}); "
                f"use a GET probe without headers on {cloud}, {sandbox}",
            )
        if probe.post_data is not None:
            problems.add(
                f"{where}.post_data",
                f"{check} cannot send a POST body (it can carry {limits.carries}); "
                f"use a GET probe on {cloud}, {sandbox}",
            )
        if limits.timeouts is not None:
            low, high = limits.timeouts
            if not low <= probe.timeout_seconds <= high:
                problems.add(
                    f"{where}.timeout_seconds",
                    f"{check} {limits.timeout_rule}, got {probe.timeout_seconds}; "
                    f"use a timeout in that range on {cloud}, {sandbox}",
                )
        unresolved = [
            m.group(0)
            for m in ENV_REFERENCE.finditer(probe.path)
            if (m.group(1) or m.group(2)) not in plain_envs
        ]
        if unresolved:
            problems.add(
                f"{where}.path",
                f"{check} path is written to Terraform variables, so {unresolved[0]} must be "
                f"an env with its value in the spec (not a secret, null or unset); "
                f"write the path out on {cloud}, {sandbox}",
            )
