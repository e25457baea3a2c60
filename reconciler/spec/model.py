"""The service spec as frozen data: the SkyServe YAML schema, already validated.

Everything downstream (policy, rendering, backtest) reads these types, never raw YAML, so a
value that reaches them is known to be well-formed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reconciler.spec.sidecar import MixSettings

CLOUDS = ("aws", "gcp", "azure", "local")
SPOT_PLACERS = ("dynamic_fallback",)
# SkyServe's names. `instance_aware_least_load` weighs each replica by its accelerator's
# `target_qps_per_replica` (a per-accelerator map, which it requires and which requires it).
LOAD_BALANCING_POLICIES = ("round_robin", "least_load", "instance_aware_least_load")


@dataclass(frozen=True)
class ReadinessProbe:
    """HTTP 200 on `path` means ready; POST with `post_data` when given (SkyServe semantics,
    sent by reconciler/readiness.py).

    `initial_delay_seconds`: how long a replica that never passed may keep failing before it
    counts as failed. `timeout_seconds`: per probe. `consecutive_failure_threshold_timeout`:
    seconds a replica may fail probes in a row before it is replaced (SkyServe's default 180).
    """

    path: str = "/"
    post_data: Mapping[str, object] | str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    initial_delay_seconds: int = 1200
    timeout_seconds: int = 15
    # SkyServe: a replica that was ready and then fails its probes this long is replaced.
    consecutive_failure_threshold_timeout: int = 180


@dataclass(frozen=True)
class ReplicaPolicy:
    """How many replicas, and how spot and on-demand mix (SkyServe semantics)."""

    min_replicas: int = 1
    max_replicas: int | None = None
    # requests/s one replica is sized for: one number, or (SkyServe's instance-aware form) one
    # per accelerator name in `target_qps_per_accelerator`, never both.
    target_qps_per_replica: float | None = None
    target_qps_per_accelerator: Mapping[str, float] = field(default_factory=dict)
    upscale_delay_seconds: int = 300
    downscale_delay_seconds: int = 1200
    num_overprovision: int = 0
    base_ondemand_fallback_replicas: int = 0
    dynamic_ondemand_fallback: bool = False
    spot_placer: str | None = None

    @property
    def upper(self) -> int:
        """The effective maximum: SkyServe treats a missing max as min (fixed size)."""
        return self.max_replicas if self.max_replicas is not None else self.min_replicas

    def target_for(self, accelerator: str) -> float | None:
        """Requests/s one replica on `accelerator` is sized for (None: no target given).

        The per-accelerator map is matched as SkyServe's instance-aware autoscaler matches it
        (sky/serve/autoscalers.py `_get_target_qps_for_gpu_type`): the name itself, then a key
        `NAME:COUNT` by its name, else the map's smallest value.
        """
        if self.target_qps_per_replica is not None or not self.target_qps_per_accelerator:
            return self.target_qps_per_replica
        targets = self.target_qps_per_accelerator
        wanted = accelerator.upper()
        exact = {key.upper(): qps for key, qps in targets.items()}
        by_name = {key.partition(":")[0].upper(): qps for key, qps in targets.items()}
        found = exact.get(wanted, by_name.get(wanted))
        return found if found is not None else min(targets.values())

    def sized_for(self, accelerators: Iterable[str]) -> ReplicaPolicy:
        """This policy with one `target_qps_per_replica` for replicas on `accelerators` (the
        names the region stacks run): the smallest of their targets, so the count suffices
        even if every replica is the slowest type in use (never fewer than SkyServe's
        instance-aware sizing asks for). Unchanged without a per-accelerator map."""
        names = list(accelerators)
        if not self.target_qps_per_accelerator or self.target_qps_per_replica is not None:
            return self
        targets = [self.target_for(n) for n in names] or list(
            self.target_qps_per_accelerator.values()
        )
        return replace(self, target_qps_per_replica=min(t for t in targets if t is not None))


@dataclass(frozen=True)
class TLSFiles:
    """SkyServe's `service.tls`: the endpoint's private key and certificate, PEM files on the
    machine running Hedgeform, as absolute paths (`~` expanded). Only the paths are held: the
    key's content is read when the load balancer is configured, and reaches nothing else
    (spec/tls.py, docs/security.md)."""

    keyfile: str
    certfile: str


@dataclass(frozen=True)
class ServiceSection:
    readiness_probe: ReadinessProbe = field(default_factory=ReadinessProbe)
    replica_policy: ReplicaPolicy = field(default_factory=ReplicaPolicy)
    load_balancing_policy: str | None = None
    ports: int | None = None
    # The endpoint serves HTTPS with these files (the sandbox only; spec/tls.py).
    tls: TLSFiles | None = None


@dataclass(frozen=True)
class Accelerator:
    name: str
    count: int = 1


@dataclass(frozen=True)
class Location:
    """One entry of `resources.any_of` (or the top-level cloud/region/zone).

    `accelerators`: the entry's own (SkyPilot lets an any_of entry carry them); None means
    the top-level `resources.accelerators`. `accelerators_any_of` as in Resources.
    """

    cloud: str | None = None
    region: str | None = None
    zone: str | None = None
    accelerators: tuple[Accelerator, ...] | None = None
    accelerators_any_of: bool = False


@dataclass(frozen=True)
class Resources:
    cloud: str | None = None
    region: str | None = None
    zone: str | None = None
    any_of: tuple[Location, ...] = ()
    use_spot: bool = False
    accelerators: tuple[Accelerator, ...] = ()
    # SkyPilot's forms: a list is an ordered preference (the first one a cloud offers); a set
    # or a mapping of several names is "any of" (the one a cloud offers cheapest).
    accelerators_any_of: bool = False
    cpus: str | None = None
    memory: str | None = None
    ports: tuple[int, ...] = ()
    disk_size: int | None = None
    image_id: str | None = None
    # SkyPilot's `instance_type`: the cloud's machine, mapped to its accelerators by the
    # catalog at plan time (clouds/catalog.py); the spec allows it with one real cloud only.
    instance_type: str | None = None
    # SkyPilot's tiers, only those the modules provision (spec/resources.py `DISK_TIERS`):
    # recorded for reading, rendered by nothing, since they are what every replica gets.
    disk_tier: str | None = None
    network_tier: str | None = None

    @property
    def locations(self) -> tuple[Location, ...]:
        """Where replicas may run: `any_of` entries, else the single top-level location."""
        if self.any_of:
            return self.any_of
        return (Location(self.cloud, self.region, self.zone),)

    def accelerators_at(self, location: Location) -> tuple[tuple[Accelerator, ...], bool]:
        """(accelerators, any_of) asked for at `location`: its own, else the top level's."""
        if location.accelerators is not None:
            return location.accelerators, location.accelerators_any_of
        return self.accelerators, self.accelerators_any_of

    @property
    def accelerator_names(self) -> tuple[str, ...]:
        """Every accelerator name the spec names (top level and any_of entries), in order."""
        names = [a.name for a in self.accelerators]
        for location in self.any_of:
            names.extend(a.name for a in location.accelerators or ())
        return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    service: ServiceSection = field(default_factory=ServiceSection)
    resources: Resources = field(default_factory=Resources)
    envs: Mapping[str, str] = field(default_factory=dict)
    setup: str | None = None
    run: str | None = None
    # Names declared `null` in envs/secrets: their value comes from the reconciler's
    # environment at apply time (SkyPilot's `--env NAME`); `envs` holds "" for them.
    envs_from_environment: frozenset[str] = frozenset()
    # Names that came from `secrets:` (also present in `envs`): never log or print their values.
    secret_names: frozenset[str] = frozenset()
    # The sidecar's `mix:` (services/<name>.hedgeform.yaml, spec/sidecar.py): how the policy
    # weighs several GPU types; None without a sidecar. Not in the digests: the policy applies
    # it and no replica runs it.
    mix: MixSettings | None = None
    # The sidecar's `changes:` (spec/sidecar.py `parse_changes`): `auto`, or `review` (the
    # loop holds a changed service file until a reviewed plan is applied). Not in the digests.
    changes: str = "auto"
    # One line per SkyServe field accepted and ignored (spec/schema.py `IGNORED`), for the
    # commands to print as notes at plan time.
    notes: tuple[str, ...] = ()

    def replica_rps(self, accelerator: str) -> float | None:
        """Requests/s one replica of `accelerator` serves: its capacity in the sidecar's
        profile (spec/sidecar.py), else its `target_qps_per_replica` (`target_for`); None
        without either."""
        served = self.mix.serves(accelerator) if self.mix is not None else None
        return served or self.service.replica_policy.target_for(accelerator)

    @property
    def secret_env_names(self) -> frozenset[str]:
        """Env names whose values are secrets: from `secrets:`, or `null` (from the
        environment). Their values never reach tfvars, argv, logs or responses."""
        return self.secret_names | self.envs_from_environment

    @property
    def plain_envs(self) -> dict[str, str]:
        """Env values written in the spec itself and not secret (safe in tfvars), by name."""
        return {k: v for k, v in sorted(self.envs.items()) if k not in self.secret_env_names}
