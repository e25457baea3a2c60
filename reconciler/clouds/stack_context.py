"""The template context of one real-cloud stack (a region, or the front door).

Secrets never reach a context. A name declared `null` in the spec's envs (its value comes
from the reconciler's environment at run time) and every name from `secrets:` is a secret by
default: it goes to `secret_env_names`, so the module creates only an empty secret container
and the replicas fetch the value at boot. Only the remaining envs, whose values are written
in the spec file itself, are passed as values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.clouds.base import Cloud
from reconciler.clouds.catalog import (
    DEFAULT_IMAGES,
    REAL_CLOUDS,
    InstanceChoice,
    check_zone,
    instance_for_region,
    zones_of,
)
from reconciler.clouds.registry import cloud as cloud_named
from reconciler.clouds.settings import CloudSettings as CloudSettings  # clouds/__init__.py
from reconciler.errors import CloudConfigError
from reconciler.readiness import substitute
from reconciler.spec.model import ServiceSpec
from reconciler.spec.service import load_balancer_health_check
from reconciler.stacks import RegionStack, replica_map

# The cloud modules name resources hf-<service>-...; the tightest limits (ALB and target
# group names, GCP resource names) allow 24 characters of service name.
_SERVICE_MAX = 24


@dataclass(frozen=True)
class Origin:
    """One region stack's load balancer, as the front stack routes to it."""

    cloud: str
    region: str
    address: str  # AWS ALB DNS name, or the IPv4 address of a GCP/Azure load balancer
    weight: int = 100
    url: str = ""  # the module's `lb_url` (https:// when it serves TLS); "" before it existed

    @property
    def https(self) -> bool:
        return self.url.startswith("https://")

    def endpoint(self) -> str:
        """Where clients reach this load balancer: its `lb_url`, else plain HTTP (state
        applied before the output existed)."""
        return self.url or f"http://{self.address}"


def template_for(cloud: str) -> str:
    """The Jinja template rendering a stack of `cloud` (or the front stack)."""
    if cloud not in (*REAL_CLOUDS, "front"):
        raise CloudConfigError(f"no tfvars template for cloud {cloud!r}")
    return f"{cloud}.tfvars.json.j2"


def secret_env_names(spec: ServiceSpec) -> list[str]:
    """Env names whose values are secrets (ServiceSpec.secret_env_names), sorted."""
    return sorted(spec.secret_env_names)


def plain_envs(spec: ServiceSpec) -> dict[str, str]:
    """Env values written in the spec itself and not declared secret: safe in tfvars."""
    return spec.plain_envs


def secret_env_values(spec: ServiceSpec, environ: Mapping[str, str]) -> dict[str, str]:
    """The values the reconciler writes into the secret containers (never into tfvars).

    `null` names come from `environ`; names from `secrets:` with a value in the spec use it.
    """
    values: dict[str, str] = {}
    missing: list[str] = []
    for name in secret_env_names(spec):
        if name in spec.envs_from_environment:
            if name not in environ:
                missing.append(name)
                continue
            values[name] = environ[name]
        else:
            values[name] = spec.envs[name]
    if missing:
        raise CloudConfigError(
            f"set {', '.join(missing)} in the environment: the spec takes "
            f"{'it' if len(missing) == 1 else 'them'} from there"
        )
    return values


def _service_name(spec: ServiceSpec) -> str:
    name = spec.name
    if len(name) > _SERVICE_MAX or not name[:1].isalpha() or name.endswith("-"):
        raise CloudConfigError(
            f"service name {name!r} must start with a letter, not end with '-' and have at most "
            f"{_SERVICE_MAX} characters on real clouds (it prefixes cloud resource names)"
        )
    return name


def _replica_port(spec: ServiceSpec) -> int:
    port = spec.service.ports
    if port is None and spec.resources.ports:
        port = spec.resources.ports[0]
    if port is None:
        raise CloudConfigError("set resources.ports (or service.ports): the load balancer needs it")
    return port


def readiness_path(spec: ServiceSpec) -> str:
    """The probe path with the spec's own (non-secret) envs substituted: what the load
    balancer health checks GET. The loader refuses any other variable in it on real clouds,
    so no secret and nothing from the environment reaches a tfvars file."""
    return substitute(spec.service.readiness_probe.path, plain_envs(spec), {})


def module_balancing(spec: ServiceSpec) -> str:
    """The modules' `load_balancing_policy` for the spec's: `round_robin`, else `least_load`
    (AWS: least outstanding requests; GCP: LEAST_REQUEST), which SkyServe's `least_load` and
    `instance_aware_least_load` are (the latter's per-type weights: typed target groups)."""
    return "round_robin" if spec.service.load_balancing_policy == "round_robin" else "least_load"


def health_check_context(spec: ServiceSpec) -> dict[str, int]:
    """The load balancer health check derived from the readiness probe (timeout, interval,
    thresholds; reconciler.spec.service.load_balancer_health_check gives the rule)."""
    check = load_balancer_health_check(spec.service.readiness_probe)
    return {
        "health_check_timeout_seconds": check.timeout_s,
        "health_check_interval_seconds": check.interval_s,
        "health_check_healthy_threshold": check.healthy_threshold,
        "health_check_unhealthy_threshold": check.unhealthy_threshold,
    }


def _image(kind: Cloud, region: str, spec: ServiceSpec, settings: CloudSettings) -> str:
    """The spec's image_id if it is written for this cloud (`Cloud.image_fits`; SkyPilot specs
    name one per cloud), else the settings' image for "cloud:region" or the cloud, else the
    catalog's default; CloudConfigError when there is none (AWS: AMIs are regional)."""
    cloud = kind.name
    spec_image = spec.resources.image_id
    if spec_image and kind.image_fits(spec_image):
        return spec_image
    for key in (f"{cloud}:{region}", cloud):
        if key in settings.images:
            return settings.images[key]
    if cloud in DEFAULT_IMAGES:
        return DEFAULT_IMAGES[cloud]
    raise CloudConfigError(
        f"no image for {cloud} {region}: set resources.image_id (ami-...) or "
        f"CloudSettings.images['{cloud}:{region}']"
    )


def cloud_stack_context(
    spec: ServiceSpec,
    stack: RegionStack,
    lb_members: Sequence[str],
    settings: CloudSettings,
) -> dict[str, Any]:
    """The context of `templates/<cloud>.tfvars.json.j2` for one region stack.

    `lb_members` may name ready replicas of every stack; only this stack's are kept, so the
    target group holds exactly this region's ready replicas. The cloud adds its own entries
    (`Cloud.stack_context`: the GCP project, the Azure VMs' SSH key). CloudConfigError, one
    line, for an unknown cloud, region or zone, a missing image, port, `run` or setting.
    """
    cloud = stack.cloud
    zones_of(cloud, stack.region)
    for replica in stack.replicas:
        check_zone(cloud, stack.region, replica.zone)
    choice = instance_for_region(
        spec.resources,
        cloud,
        stack.region,
        settings.instance_types,
        policy=spec.service.replica_policy,
    )
    ids = {r.id for r in stack.replicas}
    context: dict[str, Any] = {
        "service": _service_name(spec),
        "region": stack.region,
        "replicas": replica_map(stack.replicas),
        "lb_members": sorted(set(lb_members) & ids),
        "instance_type": choice.instance_type,
        "accelerator_name": choice.accelerator,
        "accelerator_count": choice.count,
        "guest_accelerator_type": choice.guest_accelerator_type,
        "image_id": _image(cloud_named(cloud), stack.region, spec, settings),
        "disk_size_gb": spec.resources.disk_size or settings.default_disk_size_gb,
        "replica_port": _replica_port(spec),
        "readiness_path": readiness_path(spec),
        **health_check_context(spec),
        "setup_script": spec.setup or "",
        "run_script": spec.run or "",
        "envs": plain_envs(spec),
        "secret_env_names": secret_env_names(spec),
        "load_balancing_policy": module_balancing(spec),
        "tags": {"hedgeform": "true", **settings.tags},
    }
    if not context["run_script"].strip():
        raise CloudConfigError("the spec has no `run` command: a replica would serve nothing")
    kind = cloud_named(cloud)
    if kind.carries_versions:  # each replica's version; `versions` filled by the backend
        context["replicas"] = {
            r.id: {**context["replicas"][r.id], "version": str(r.version)} for r in stack.replicas
        }
        context["versions"] = {}
    context.update(kind.stack_context(settings, stack.region))
    return context


def version_entry(
    spec: ServiceSpec, cloud: str, region: str, settings: CloudSettings
) -> dict[str, Any]:
    """What the replicas of `spec`'s version run in one region of `cloud`: an entry of its
    module's `versions` map (`Cloud.version_fields`: instance type, image, disk, scripts,
    plain envs; secret names only). Errors as cloud_stack_context."""
    own = cloud_stack_context(spec, RegionStack(cloud, region, ()), [], settings)
    return {field: own[key] for field, key in cloud_named(cloud).version_fields}


def type_entry(cloud: str, choice: InstanceChoice) -> dict[str, Any]:
    """What the replicas of one GPU type run in a region of `cloud` running several (issue
    15): an entry of its module's `accelerator_types`, the machine part of a `versions` entry
    (`Cloud.version_fields` whose keys an instance choice gives: the AWS instance type, GCP
    machine type and attached GPU, Azure VM size, and the accelerator name and count). A
    replica's type gives its machine; its version, its image and scripts."""
    values = {
        "instance_type": choice.instance_type,
        "guest_accelerator_type": choice.guest_accelerator_type,
        "accelerator_name": choice.accelerator,
        "accelerator_count": choice.count,
    }
    return {field: values[key] for field, key in cloud_named(cloud).version_fields if key in values}


def front_stack_context(
    spec: ServiceSpec, domain_name: str, zone_id: str, origins: Mapping[str, Origin]
) -> dict[str, Any]:
    """The context of `templates/front.tfvars.json.j2`: one DNS name over every region stack."""
    for origin in origins.values():
        zones_of(origin.cloud, origin.region)
    return {
        "service": spec.name,
        "domain_name": domain_name,
        "zone_id": zone_id,
        "origins": {
            key: {"cloud": o.cloud, "region": o.region, "address": o.address, "weight": o.weight}
            for key, o in sorted(origins.items())
        },
        "health_check_path": readiness_path(spec),
    }
