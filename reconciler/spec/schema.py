"""The fields each section of a SkyServe service file may have, and where a misplaced one goes.

Unknown fields are errors (a typo must not be silently ignored), so every accepted field,
including SkyPilot task fields we ignore, is listed here.
"""

from __future__ import annotations

import difflib
from collections import Counter

TOP_LEVEL = (
    "service",
    "resources",
    "envs",
    "setup",
    "run",
    # SkyPilot task fields accepted for compatibility and ignored:
    "name",
    "workdir",
    "num_nodes",
    "file_mounts",
    "config",
    "secrets",
    "event_callback",
)
SERVICE = ("readiness_probe", "replicas", "replica_policy", "load_balancing_policy", "ports")
READINESS_PROBE = (
    "path",
    "post_data",
    "headers",
    "initial_delay_seconds",
    "timeout_seconds",
    "consecutive_failure_threshold_timeout",
)
REPLICA_POLICY = (
    "min_replicas",
    "max_replicas",
    "target_qps_per_replica",
    "upscale_delay_seconds",
    "downscale_delay_seconds",
    "num_overprovision",
    "base_ondemand_fallback_replicas",
    "dynamic_ondemand_fallback",
    "spot_placer",
)
RESOURCES = (
    "cloud",
    "region",
    "zone",
    "any_of",
    "use_spot",
    "accelerators",
    "cpus",
    "memory",
    "ports",
    "disk_size",
    "image_id",
)
LOCATION = ("cloud", "region", "zone")
ANY_OF_ENTRY = (*LOCATION, "accelerators")

_SECTIONS = {
    "": TOP_LEVEL,
    "service": SERVICE,
    "service.readiness_probe": READINESS_PROBE,
    "service.replica_policy": REPLICA_POLICY,
    "resources": RESOURCES,
}
_COUNTS = Counter(key for keys in _SECTIONS.values() for key in keys)
# A field that exists in exactly one section: where to point someone who put it elsewhere.
_HOME = {key: path for path, keys in _SECTIONS.items() for key in keys if _COUNTS[key] == 1}


# SkyServe fields Hedgeform refuses on purpose, with what to do instead.
UNSUPPORTED = {
    ("service", "tls"): (
        "not supported: SkyServe's keyfile/certfile would put a private key in Terraform's "
        "state; TLS ends at the cloud load balancer: name an ACM certificate per region in "
        "services/<SERVICE>.settings.yaml (aws_certificate_arns; docs/clouds.md)"
    ),
}


def unknown_field_message(key: str, path: str, allowed: tuple[str, ...]) -> str:
    """Why `key` is rejected at `path`, with a did-you-mean or the list of allowed fields."""
    if (path, key) in UNSUPPORTED:
        return UNSUPPORTED[(path, key)]
    lowered = key.lower()
    if lowered in allowed:
        return f"unknown field; did you mean '{lowered}'?"
    close = difflib.get_close_matches(key, allowed, n=1)
    if close:
        return f"unknown field; did you mean '{close[0]}'?"
    home = _HOME.get(key)
    if home is not None and home != path:
        where = f"'{home}.{key}'" if home else f"'{key}' at the top level"
        return f"unknown field here; did you mean {where}?"
    return "unknown field; allowed: " + ", ".join(allowed)
