"""The fields each section of a SkyServe service file may have, and where a misplaced one goes.

Every field of SkyServe's service file (SkyPilot's `sky/utils/schemas.py`: the task, `service`
and `resources` schemas) is in exactly one of three places here, and docs/spec.md has a row
for each with its test:

- honoured: listed in a section's fields below and parsed into the model;
- accepted and ignored: only SkyPilot's own controller reads it and it changes neither what a
  replica runs nor where (`IGNORED`); the spec keeps a note saying so;
- refused: one line saying why and what to use instead (`UNSUPPORTED`).

Any other field is an error with a did-you-mean (a typo must not be silently ignored).
"""

from __future__ import annotations

import difflib
import re
from collections import Counter

# SkyPilot task fields only its own controller reads, with why Hedgeform may ignore them.
IGNORED: dict[tuple[str, str], str] = {
    ("", "name"): "the service is named after its file (services/<SERVICE>.yaml)",
    ("", "event_callback"): (
        "a command SkyPilot's managed-jobs controller runs on job events; no replica runs it"
    ),
    ("", "inputs"): "a data-size hint for SkyPilot's optimizer; placement follows resources",
    ("", "outputs"): "a data-size hint for SkyPilot's optimizer; placement follows resources",
    ("resources", "job_recovery"): (
        "how SkyPilot's managed jobs recover; a lost replica is replaced by the policy"
    ),
    ("resources", "spot_recovery"): (
        "how SkyPilot's managed jobs recover (job_recovery's old name); a lost replica is "
        "replaced by the policy"
    ),
    ("resources", "priority"): "SkyPilot's managed-jobs queue priority; replicas are not queued",
}


def _ignored(path: str) -> tuple[str, ...]:
    return tuple(key for where, key in IGNORED if where == path)


TOP_LEVEL = ("service", "resources", "envs", "secrets", "setup", "run", "num_nodes", *_ignored(""))
SERVICE = (
    "readiness_probe",
    "replicas",
    "replica_policy",
    "load_balancing_policy",
    "ports",
    "tls",
)
TLS = ("keyfile", "certfile")
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
LOCATION = ("cloud", "region", "zone", "infra")
RESOURCES = (
    *LOCATION,
    "any_of",
    "use_spot",
    "accelerators",
    "instance_type",
    "cpus",
    "memory",
    "ports",
    "disk_size",
    "disk_tier",
    "network_tier",
    "image_id",
    *_ignored("resources"),
)
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

_IMAGE_INSTEAD = "bake it into resources.image_id, or fetch it in setup"
# SkyServe fields Hedgeform refuses on purpose: why, and what to do instead (one line each).
UNSUPPORTED: dict[tuple[str, str], str] = {
    # -- the task ----------------------------------------------------------------------------
    ("", "workdir"): (
        "not supported: nothing copies a local directory or clones a repository onto the "
        f"replicas; {_IMAGE_INSTEAD} (e.g. git clone <url> in setup)"
    ),
    ("", "file_mounts"): (
        "not supported: nothing copies files or mounts buckets on the replicas; "
        f"{_IMAGE_INSTEAD} (e.g. aws s3 cp / gcloud storage cp in setup)"
    ),
    ("", "volumes"): (
        "not supported: SkyPilot volumes are not created or attached; each replica has its "
        "root disk only (resources.disk_size)"
    ),
    ("", "volume_mounts"): (
        "not supported: SkyPilot volumes are not created or attached; each replica has its "
        "root disk only (resources.disk_size)"
    ),
    ("", "config"): (
        "not supported: SkyPilot's per-task config overrides ~/.sky/config.yaml, which "
        "Hedgeform does not read; cloud settings go in services/<SERVICE>.settings.yaml "
        "(docs/clouds.md)"
    ),
    ("", "managed_secrets"): (
        "not supported: SkyPilot's managed secret store is not read; declare each secret as "
        "`secrets: {NAME: null}` and set NAME in the environment of hedgeform"
    ),
    ("", "pool"): (
        "not supported: a pool of workers for SkyPilot's managed jobs, not a service; "
        "Hedgeform serves `service:` files only"
    ),
    ("", "api_server_access"): (
        "not supported: there is no SkyPilot API server for replicas to reach; remove it"
    ),
    ("", "file_mounts_mapping"): (
        "not supported: written by SkyPilot's client for its controller, not by hand; remove it"
    ),
    ("", "_metadata"): (
        "not supported: written by SkyPilot's client for its controller, not by hand; remove it"
    ),
    # -- service -----------------------------------------------------------------------------
    ("service", "load_balancer"): (
        "not supported: the load balancers' idle timeouts are fixed (AWS ALB 300 s, Azure "
        "30 min, the sandbox's HAProxy 60 s); remove it"
    ),
    ("service", "pool"): (
        "not supported: SkyServe pools run workers for managed jobs, not a service; "
        "use replicas or replica_policy"
    ),
    ("service", "workers"): (
        "not supported: SkyServe pools run workers for managed jobs, not a service; "
        "use replicas or replica_policy"
    ),
    ("service.readiness_probe", "endpoint_probe_interval_seconds"): (
        "not supported: Hedgeform sets the cadence (each reconcile pass probes; cloud load "
        "balancers check every max(10, timeout_seconds + 1) s); remove it"
    ),
    # -- resources ---------------------------------------------------------------------------
    ("resources", "ordered"): (
        "not supported: SpotHedge spreads replicas over all locations rather than trying them "
        "in order; list them in resources.any_of"
    ),
    ("resources", "accelerator_args"): (
        "not supported: TPU settings; Hedgeform runs GPU and CPU instances only"
    ),
    ("resources", "labels"): (
        "not supported: labels per service file are not applied; put them as tags in "
        "services/<SERVICE>.settings.yaml (tags: {team: ml}; docs/clouds.md)"
    ),
    ("resources", "autostop"): (
        "not supported: replicas never stop when idle; the replica policy sizes the service "
        "(min_replicas: 0 with max_replicas scales to zero)"
    ),
    ("resources", "max_hourly_cost"): (
        "not supported: instance types come from the catalog by accelerator and list price; "
        "name the accelerators or resources.instance_type instead"
    ),
    ("resources", "local_disk"): (
        "not supported: local NVMe disks are not attached; use resources.disk_size"
    ),
    ("resources", "ephemeral_storage"): (
        "not supported: SkyPilot's deprecated name for disk_size; use resources.disk_size"
    ),
    ("resources", "volumes"): (
        "not supported: SkyPilot volumes are not created or attached; each replica has its "
        "root disk only (resources.disk_size)"
    ),
    ("resources", "priority_class"): (
        "not supported: a Kubernetes priority class; Hedgeform runs on aws, gcp, azure and "
        "the local sandbox; remove it"
    ),
}
# SkyPilot's internal resources fields (`_docker_login_config`, `_is_image_managed`, ...).
_INTERNAL = "not supported: internal to SkyPilot, written by its client, not by hand; remove it"
_ANY_OF_ENTRY = re.compile(r"resources\.any_of\[\d+\]")


def unknown_field_message(key: str, path: str, allowed: tuple[str, ...]) -> str:
    """Why `key` is rejected at `path`: a refusal saying what to use instead, else a
    did-you-mean or the list of allowed fields."""
    if (path, key) in UNSUPPORTED:
        return UNSUPPORTED[(path, key)]
    if key.startswith("_") and path.startswith("resources"):
        return _INTERNAL
    if _ANY_OF_ENTRY.fullmatch(path) and key in RESOURCES and key not in allowed:
        return (
            "not supported in an any_of entry: every location runs the same replica; "
            f"write it once at resources.{key}"
        )
    if _ANY_OF_ENTRY.fullmatch(path) and ("resources", key) in UNSUPPORTED:
        return UNSUPPORTED[("resources", key)]
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
