"""The local sandbox cloud seen from the reconciler: start it, observe it, read its signals.

The sandbox plays the cloud's part (reconciler/sandbox): replica records stand for VMs, the
spot market's notice feed for EventBridge/zone operations, HAProxy's statistics for the load
balancer's request metrics. This module turns them into the policy's Observation and Signals;
`SandboxCloud` is the `local` CloudBackend (backends/base.py).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler import readiness
from reconciler.backends.base import (
    Layout,
    Look,
    Observed,
    OutsideTerraform,
    RenderedStack,
    ReplicaTraffic,
    Since,
    StackDef,
    classify_apply_output,
)
from reconciler.clouds.catalog import accelerators_for_region, instance_for, list_price, list_prices
from reconciler.cost import PriceRef
from reconciler.drift_report import AttributeChange, DriftedResource, UnknownInstance
from reconciler.errors import CloudConfigError, SandboxError, TfStateError, TraceError
from reconciler.paths import NAME_RE, ServicePaths
from reconciler.policy import (
    FailureKind,
    Market,
    Notice,
    NoticeKind,
    Observation,
    Replica,
    ReplicaState,
    ZoneOffer,
)
from reconciler.sandbox import market_daemon, processes, replicas
from reconciler.sandbox.haproxy import CHECK_PATH, HAProxyLB, HealthCheck, ServerStats
from reconciler.sandbox.market import (
    DEFAULT_TRACE_DIR,
    NoticeFeed,
    SpotMarket,
    market_path,
    notices_path,
)
from reconciler.spec.fingerprint import spec_for_part
from reconciler.spec.model import ServiceSpec
from reconciler.spec.tls import cert_digest, tls_problem
from reconciler.stacks import (
    FRONT,
    ManagedReplica,
    pool_name,
    region_stacks,
    replica_accelerators,
    zone_regions,
)
from reconciler.terraform.state import STATE_FILE, state_resources
from reconciler.traces import load_trace_set

SPOT_PRICE = 1.0  # the sandbox's price list: on-demand costs three times spot, as in backtests
ON_DEMAND_PRICE = 3.0
RATE_WINDOW_S = 60.0
MAX_COLD_START_S = 3_600.0  # what `hedgeform sandbox replica launch` accepts
# A plain env of the spec the sandbox reads as its replicas' cold start (docs/sandbox.md):
# a version with a slow, or never-ready (above initial_delay_seconds), model to try updates.
SANDBOX_COLD_START_ENV = "SANDBOX_COLD_START_SECONDS"


@dataclass(frozen=True)
class SandboxSettings:
    """How the sandbox cloud behaves; environment variables let `make` pass them through."""

    speed: float = 1.0  # trace seconds per wall second
    offset_hours: float = 0.0
    warning_seconds: float = 30.0
    cold_start_s: float = 3.0
    latency_ms: float = 20.0
    lb_port: int = 30001

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: float) -> SandboxSettings:
        """Settings from HEDGEFORM_* variables (then `overrides`); a value that is not a
        number in its range is refused in one line naming the variable (SandboxError)."""
        env = os.environ if env is None else env
        base = cls()
        values: dict[str, float] = {}
        for field_name, (variable, low, high) in ENV_SETTINGS.items():
            default = float(getattr(base, field_name))
            values[field_name] = _setting(env, variable, default, low, high)
        for key, value in overrides.items():
            if value is not None:
                low, high = ENV_SETTINGS[key][1:]
                if not (math.isfinite(value) and low <= value <= high):
                    raise SandboxError(f"{key} must be from {low:g} to {high:g}, got {value}")
                values[key] = float(value)
        return cls(
            speed=values["speed"],
            offset_hours=values["offset_hours"],
            warning_seconds=values["warning_seconds"],
            cold_start_s=values["cold_start_s"],
            latency_ms=values["latency_ms"],
            lb_port=int(values["lb_port"]),
        )


# field -> (environment variable, lowest, highest): every sandbox setting has a range.
ENV_SETTINGS: dict[str, tuple[str, float, float]] = {
    "speed": ("HEDGEFORM_SANDBOX_SPEED", 0.001, 100_000.0),  # trace seconds per wall second
    "offset_hours": ("HEDGEFORM_SANDBOX_OFFSET_HOURS", 0.0, 100_000.0),
    "warning_seconds": ("HEDGEFORM_SANDBOX_WARNING", 0.0, 3_600.0),
    "cold_start_s": ("HEDGEFORM_SANDBOX_COLD_START", 0.0, MAX_COLD_START_S),
    "latency_ms": ("HEDGEFORM_SANDBOX_LATENCY_MS", 0.0, 60_000.0),
    "lb_port": ("HEDGEFORM_LB_PORT", 1.0, 65_535.0),
}


_NUMBER_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_PORT_TEXT = re.compile(r"[0-9]{1,5}")  # not \d: it takes any Unicode digit


def _setting(
    env: Mapping[str, str], variable: str, default: float, low: float, high: float
) -> float:
    raw = env.get(variable)
    if raw is None or raw == "":
        return default
    # A plain decimal number (float() would also take "1_0", " 1e3 " and "infinity"); the
    # port as digits only ("3.1e4" is no way to write a port).
    plain = _PORT_TEXT if variable == "HEDGEFORM_LB_PORT" else _NUMBER_TEXT
    value = float(raw) if plain.fullmatch(raw) else math.nan
    if not (math.isfinite(value) and low <= value <= high):
        shown = raw if len(raw) <= 20 else raw[:20] + "..."
        raise SandboxError(f"{variable} must be a number from {low:g} to {high:g}, got {shown!r}")
    return value


def copied_state_message(original: str) -> str:
    """One line for a project copied with its state while the original runs."""
    return (
        f"this state was copied from {original}, whose sandbox is running, and its Terraform "
        f"state describes that sandbox: use the copy without its state/ directory"
    )


def started_elsewhere(state_dir: Path) -> str | None:
    """The other sandbox directory this one's HAProxy or market daemon (named by their pid
    files) was started for, or None: a project moved while its sandbox ran."""
    here = str(Path(state_dir).resolve())
    for pid_file in (Path(state_dir) / "haproxy" / "haproxy.pid", Path(state_dir) / "market.pid"):
        try:
            argv = processes.cmdline(int(pid_file.read_text().split()[0])) or []
        except (OSError, ValueError, IndexError):
            continue
        if not argv:  # gone (a killed HAProxy leaves its pid file)
            continue
        daemon = (  # still the program the pid file was written for, not a recycled pid
            Path(argv[0]).name == "haproxy"
            if pid_file.name == "haproxy.pid"
            else market_daemon.MODULE in argv
        )
        other = processes.sandbox_of(argv) if daemon else None
        if other is not None and other != here:
            return other
    return None


def uses_sandbox(spec: ServiceSpec) -> bool:
    """The spec places replicas on the local sandbox (`cloud: local`)."""
    return any(loc.cloud == "local" for loc in spec.resources.locations)


def public_model_name(spec: ServiceSpec | None) -> str:
    """The model name the sandbox replicas report (`GET /v1/models`): the spec's MODEL_NAME
    when it is a plain env written in the spec, else "sandbox-model". A MODEL_NAME from
    `secrets:` or declared `null` is a secret: it must reach no tfvars, argv or response."""
    return (spec.plain_envs.get("MODEL_NAME") if spec else None) or "sandbox-model"


def lb_check(spec: ServiceSpec, layout: Layout) -> HealthCheck:
    """HAProxy's check for `layout`: the probe of the versions whose replicas it keeps, when
    they all ask the same thing (`haproxy_check`); while a rollout changes what the probe
    asks, a TCP connect check, so neither the old replicas nor the new ones are checked as
    the other version asks (the reconciler probes each replica as its own version asks, and
    the policy's membership gates traffic). A typo in a new probe path then fails only the
    new replicas, and the rollback keeps the old ones serving."""
    current = haproxy_check(spec)
    in_use = {r.version for r in layout.kept} & set(layout.versions)
    checks = {haproxy_check(spec_for_part(spec, layout.versions[v])) for v in in_use}
    if not checks or checks == {current}:
        return current
    if len(checks) == 1:
        return next(iter(checks))
    return HealthCheck(None, current.timeout_s)


def haproxy_check(spec: ServiceSpec) -> HealthCheck:
    """HAProxy's own check of each replica, as close to the readiness probe as its config can
    hold without a secret: GET the probe's path (variables substituted from the spec's plain
    envs) within `timeout_seconds`. A POST or header probe, or a path that would need a secret,
    the environment or quoting, gets a TCP connect check instead: the reconciler's probe (the
    policy's membership) still decides which replicas receive traffic. Never stricter than the
    probe, so HAProxy does not drop a replica the probe calls READY."""
    probe = spec.service.readiness_probe
    timeout = probe.timeout_seconds
    if probe.post_data is not None or probe.headers:
        return HealthCheck(None, timeout)
    path = readiness.substitute(probe.path, spec.plain_envs, {})
    return HealthCheck(path if CHECK_PATH.fullmatch(path) else None, timeout)


PoolTypes = Mapping[str, tuple[tuple[str, float], ...]]
"""zone -> ((GPU type, on-demand $/h), ...): each zone's typed pools, when the service runs
several GPU types (issue 15; `sandbox_types`)."""


def sandbox_types(spec: ServiceSpec) -> dict[str, tuple[tuple[str, float], ...]]:
    """The GPU types each sandbox zone offers as pools of their own, when some location's
    accelerators are an "any of" set of several (SkyPilot's set or mapping form): each type
    of a set, or the one type a zone asks for (a list: its first), priced at the on-demand
    list price of the AWS instance the catalog runs it on (the sandbox has no price list of
    its own; clouds/list_prices.json, its date and source), spot at a third of it as the
    sandbox's single-type prices. Empty when no location asks for several: replicas then
    carry no type. CloudConfigError (one line, naming the field) for a type AWS's catalog
    has no instance for, or zones of one region asking for different accelerators (as on
    the clouds: clouds/catalog.py `accelerators_for_region`)."""
    resources = spec.resources
    for region in sorted({loc.region for loc in resources.locations if loc.region}):
        accelerators_for_region(resources, "local", region)
    if not any(
        any_of and len(accelerators) > 1
        for accelerators, any_of in map(resources.accelerators_at, resources.locations)
    ):
        return {}
    out: dict[str, tuple[tuple[str, float], ...]] = {}
    for index, loc in enumerate(resources.locations):
        accelerators, any_of = resources.accelerators_at(loc)
        if not loc.zone or not accelerators:
            continue
        if not any_of:
            accelerators = accelerators[:1]
        where = (
            f"resources.any_of[{index}].accelerators"
            if spec.resources.any_of and loc.accelerators is not None
            else "resources.accelerators"
        )
        types: dict[str, float] = {}
        for acc in accelerators:
            try:
                choice = instance_for("aws", [acc])
            except CloudConfigError as exc:
                raise CloudConfigError(
                    f"{where}: the sandbox prices GPU types at AWS list prices: {exc}"
                ) from None
            price = list_price("aws", choice.price_key)
            types.setdefault(choice.accelerator, ON_DEMAND_PRICE if price is None else price)
        out[loc.zone] = tuple(types.items())
    return out


def pools_notes(types: PoolTypes) -> tuple[str, ...]:
    """One line for `plan` per set of sandbox zones offering the same GPU types as pools."""
    zones_of: dict[tuple[tuple[str, float], ...], list[str]] = {}
    for zone, offered in sorted(types.items()):
        zones_of.setdefault(offered, []).append(zone)
    return tuple(
        f"sandbox zone{'s' if len(zones) > 1 else ''} {', '.join(zones)} offer"
        f"{'' if len(zones) > 1 else 's'} "
        + ", ".join(f"{name} (${price:.2f}/h on demand)" for name, price in offered)
        + " as pools of their own, priced at AWS list prices (spot a third); the policy "
        "chooses how many of each every tick, by price per request/s (docs/mix.md)"
        for offered, zones in zones_of.items()
    )


def typed_price_ref() -> PriceRef:
    """Where a sandbox pool of a GPU type takes its nominal price: the AWS list price of the
    type (`sandbox_types`), spot a third; dated as that list is."""
    prices = list_prices("aws")
    return PriceRef(
        f"sandbox nominal prices: the AWS list price of the pool's GPU type ({prices.source}), "
        "spot a third",
        prices.as_of,
        nominal=True,
    )


def prices_line(offers: Iterable[ZoneOffer]) -> str:
    """What the sandbox's prices are, as `hedgeform status` and `hedgeform cost` say it: its
    own list (`SPOT_PRICE`, `ON_DEMAND_PRICE`) for a pool of no GPU type; each GPU type's pools
    (`sandbox_types`) at the on-demand list price of the type's AWS instance, spot a third,
    with that list's source and date and each type's two figures per hour (those `plan`
    shows). Nominal either way, never shown as dollars: nothing bills."""
    typed: dict[str, tuple[float | None, float]] = {}
    untyped = False
    for o in offers:
        if o.cloud != "local":
            continue
        if o.accelerator:
            typed.setdefault(o.accelerator, (o.spot_price, o.on_demand_price))
        else:
            untyped = True
    own = f"its own list: spot {SPOT_PRICE:g}, on-demand {ON_DEMAND_PRICE:g} per hour"
    if not typed:
        return f"sandbox: nominal prices ({own} for one GPU type), not dollars"
    listed = list_prices("aws")
    figures = "; ".join(
        f"{name} {'-' if spot is None else f'{spot:.2f}'} spot, {on_demand:.2f} on demand"
        for name, (spot, on_demand) in typed.items()
    )
    others = f"; a pool of no GPU type at {own}" if untyped else ""
    return (
        "sandbox: nominal prices: each GPU type at the on-demand list price of its AWS "
        f"instance, spot a third ({listed.source}, {listed.as_of}): {figures} per hour: AWS's "
        f"USD figures, nominal here (nothing bills){others}"
    )


def zone_offers(spec: ServiceSpec, types: PoolTypes | None = None) -> tuple[ZoneOffer, ...]:
    """The places the policy may launch in: each zone of the spec, or, when the service runs
    several GPU types (`types`, from `sandbox_types`), one pool per type a zone offers
    (stacks.pool_name)."""
    types = sandbox_types(spec) if types is None else types
    spot = spec.resources.use_spot
    offers: list[ZoneOffer] = []
    for loc in spec.resources.locations:
        if not loc.zone:
            continue
        region, cloud = loc.region or loc.zone, loc.cloud or "local"
        if loc.zone not in types:
            offers.append(
                ZoneOffer(loc.zone, region, cloud, SPOT_PRICE if spot else None, ON_DEMAND_PRICE)
            )
            continue
        for name, on_demand in types[loc.zone]:
            offers.append(
                ZoneOffer(
                    pool_name(loc.zone, name),
                    region,
                    cloud,
                    on_demand * SPOT_PRICE / ON_DEMAND_PRICE if spot else None,
                    on_demand,
                    accelerator=name,
                )
            )
    return tuple(offers)


def managed_replicas(stack_dir: Path) -> list[ManagedReplica]:
    """The replicas a sandbox region stack's state holds (`null_resource.replica["<id>"]` of
    terraform/modules/local, zone and market in its triggers). TfStateError for a state this
    module did not write."""
    path = stack_dir / STATE_FILE
    out: list[ManagedReplica] = []
    for res in state_resources(path):
        if res.get("type") != "null_resource" or res.get("name") != "replica":
            continue
        for inst in res.get("instances", []):
            triggers = inst.get("attributes", {}).get("triggers") or {}
            replica_id = str(inst.get("index_key") or triggers.get("replica_id"))
            try:
                market = Market(str(triggers.get("market", "")))
            except ValueError:
                raise TfStateError(f"{path}: replica {replica_id} has no valid market") from None
            out.append(
                ManagedReplica(
                    id=replica_id,
                    zone=str(triggers.get("zone", "")),
                    market=market,
                    tainted=inst.get("status") == "tainted",
                    stack=stack_dir.name,
                    accelerator=str(triggers.get("accelerator", "")),
                )
            )
    return out


class SandboxCloud:
    """The `local` backend: one stack per sandbox region plus the HAProxy front stack, all of
    terraform/modules/local. `paths`, `spec` and `hedgeform_bin` are needed only to drive
    stacks (render, managed); observing works with the state directory alone."""

    poll_s = 0.25  # probes are local and cheap
    plan_cache = True  # null_resources have nothing to refresh
    # Nominal (no catalog choice) unless a zone offers several types as pools (`pool_types`).
    accelerators_in_use: frozenset[str] = frozenset()
    accelerator_notes: tuple[str, ...] = ()
    carries_versions = True  # launched with --version, observed from the replica's record

    def __init__(
        self,
        state_dir: Path,
        settings: SandboxSettings,
        *,
        paths: ServicePaths | None = None,
        spec: ServiceSpec | None = None,
        hedgeform_bin: Path | None = None,
        several_types: bool = True,
    ) -> None:
        """`several_types` False: a zone asking for a set of GPU types offers none of them as
        pools of its own (a policy that places by zone only; its replicas carry no type)."""
        self.state_dir = state_dir
        self.settings = settings
        self.lb = HAProxyLB(state_dir)
        self.paths = paths
        self.spec = spec
        self.hedgeform_bin = hedgeform_bin
        self.regions = zone_regions(spec) if spec is not None else {}
        self.pool_types: PoolTypes = (
            sandbox_types(spec) if spec is not None and several_types else {}
        )
        self.typed_pools = bool(self.pool_types)
        self.accelerators_in_use = frozenset(
            name for types in self.pool_types.values() for name, _ in types
        )
        self.accelerator_notes = pools_notes(self.pool_types)

    # -- stacks ----------------------------------------------------------------------------

    def _paths(self) -> ServicePaths:
        if self.paths is None:
            raise RuntimeError("SandboxCloud was built without ServicePaths")
        return self.paths

    def stacks(self) -> list[StackDef]:
        """The spec's regions, then regions a past apply left replicas in that the spec no
        longer names (retired: drained and destroyed by the reconcile), then the front."""
        regions = sorted({region for _, region in self.regions.values()})
        retired = sorted(set(self._retired_zones().values()) - set(regions))
        return [
            *(StackDef(region, "local", region, "local") for region in regions),
            *(StackDef(region, "local", region, "local") for region in retired),
            StackDef(FRONT, "local", "", "local"),
        ]

    def _retired_zones(self) -> dict[str, str]:
        """zone -> region stack, for replicas held by a region stack on disk that the spec
        no longer names (read from the stacks' Terraform state, so no call order matters)."""
        if self.paths is None or not self.paths.state_dir.is_dir():
            return {}
        named = {region for _, region in self.regions.values()}
        out: dict[str, str] = {}
        for stack_dir in sorted(p for p in self.paths.state_dir.iterdir() if p.is_dir()):
            if stack_dir.name in named or stack_dir.name == FRONT:
                continue
            if not NAME_RE.fullmatch(stack_dir.name):
                continue
            for replica in managed_replicas(stack_dir):
                out.setdefault(replica.zone, stack_dir.name)
        return out

    def managed(self) -> list[ManagedReplica]:
        out: list[ManagedReplica] = []
        for stack in self.stacks()[:-1]:
            out.extend(managed_replicas(self._paths().stack_dir(stack.name)))
        return out

    def render(self, layout: Layout, now: float) -> list[RenderedStack]:
        """The region stacks hold `layout.kept`; HAProxy serves `layout.members` (its own
        check gates traffic too, so `draining` needs nothing more here)."""
        kept, members, epoch = layout.kept, layout.members, layout.epoch
        paths = self._paths()
        stacks = {s.name: s for s in self.stacks()}
        common = {
            "service": paths.service,
            "hedgeform_bin": str(self.hedgeform_bin),
            "sandbox_dir": str(paths.sandbox_dir.resolve()),
            "latency_ms": self.settings.latency_ms,
        }
        out: list[RenderedStack] = []
        # Zones the spec no longer names stay in the stack that holds them until drained.
        regions = {**{z: ("local", r) for z, r in self._retired_zones().items()}, **self.regions}
        for replica in kept:
            if replica.zone not in regions and replica.stack:
                regions[replica.zone] = ("local", replica.stack)
        for stack in region_stacks(regions, kept):
            replicas_of = {r.id: self._launch_settings(r, layout.versions) for r in stack.replicas}
            context = {**common, "stack": stack.name, "replicas": replicas_of,
                       "replica_accelerators": replica_accelerators(stack.replicas),
                       "replica_max_rps": self._max_rps(stack.replicas),
                       "load_balancer": None}  # fmt: skip
            out.append(RenderedStack(stacks[stack.name], "local.tfvars.json.j2", context))
        check = lb_check(self.spec, layout) if self.spec is not None else HealthCheck()
        lb = {
            "port": self.settings.lb_port,
            "members": list(members),
            "epoch": str(epoch),
            "check_path": check.path or "",
            "check_timeout_seconds": check.timeout_s,
        }
        context = {**common, "stack": FRONT, "replicas": {}, "replica_accelerators": {},
                   "load_balancer": lb, "tls": self._tls_vars()}  # fmt: skip
        out.append(RenderedStack(stacks[FRONT], "local.tfvars.json.j2", context))
        return out

    def _tls_vars(self) -> dict[str, str] | None:
        """The front stack's `tls` (service.tls): the files' paths and the certificate's
        SHA-256, so a renewed pair makes a plan (HAProxy swaps it in without a restart) but no
        new version of the service. Never the key's content. CloudConfigError (one line
        naming the field) when a file is no longer usable."""
        tls = self.spec.service.tls if self.spec is not None else None
        if tls is None:
            return None
        problem = tls_problem(tls)
        if problem is not None:
            raise CloudConfigError(problem)
        try:
            digest = cert_digest(tls)
        except OSError as exc:
            raise CloudConfigError(
                f"service.tls.certfile: cannot be read ({exc.strerror or type(exc).__name__})"
            ) from None
        return {"certfile": tls.certfile, "keyfile": tls.keyfile, "cert_sha256": digest}

    def _max_rps(self, kept: Sequence[ManagedReplica]) -> dict[str, float]:
        """replica id -> requests/s its simulated GPU serves: its type's capacity in the
        sidecar's profile (spec/sidecar.py), else its entry of a per-accelerator
        `target_qps_per_replica` (the type it runs, else the spec's first accelerator), so
        the sandbox serves each type at the throughput the service states and the SLO can be
        measured under load (issue 15). Empty without either: no limit, as before. A type
        profiled above what one simulated replica can be asked to serve
        (`replicas.MAX_RPS`, the local module's bound) is simulated at that most."""
        if self.spec is None:
            return {}
        policy = self.spec.service.replica_policy
        mix = self.spec.mix
        profiled = mix is not None and mix.profile is not None
        if not policy.target_qps_per_accelerator and not profiled:
            return {}
        named = self.spec.resources.accelerator_names
        out: dict[str, float] = {}
        for replica in kept:
            name = replica.accelerator or (named[0] if named else "")
            rps = self.spec.replica_rps(name)
            if rps is not None:
                out[replica.id] = min(rps, replicas.MAX_RPS)
        return out

    def _launch_settings(
        self, replica: ManagedReplica, versions: Mapping[int, Mapping[str, Any]]
    ) -> dict[str, Any]:
        """What a replica is launched with: its version's model name (a non-secret
        MODEL_NAME env, else the sandbox's default) and cold start (the version's
        SANDBOX_COLD_START_SECONDS env, docs/sandbox.md, else the sandbox setting)."""
        envs = dict(versions.get(replica.version, {}).get("envs") or {})
        cold_start = self.settings.cold_start_s
        with contextlib.suppress(ValueError):
            value = float(envs.get(SANDBOX_COLD_START_ENV, ""))
            if 0 <= value <= MAX_COLD_START_S:
                cold_start = value
        return {
            "zone": replica.zone,
            "market": replica.market.value,
            "version": str(replica.version),
            "model_name": envs.get("MODEL_NAME") or public_model_name(self.spec),
            "cold_start_seconds": cold_start,
        }

    def known_zones(self) -> list[str]:
        """The sandbox's zones: those of its running market, else of the shipped traces."""
        try:
            if market_path(self.state_dir).exists():
                return SpotMarket.load(self.state_dir).zones
            return sorted(z.zone for z in load_trace_set(DEFAULT_TRACE_DIR).zones)
        except (SandboxError, TraceError):
            return []  # the market itself reports what is wrong with its traces

    def applied_members(self) -> set[str] | None:
        """The target group Terraform last set, from the front stack's state."""
        front = self._paths().stack_dir(FRONT) / "terraform.tfstate"
        for res in state_resources(front):
            if res.get("name") == "target_group":
                for inst in res.get("instances", []):
                    members = inst.get("attributes", {}).get("triggers", {}).get("members", "")
                    return {m for m in str(members).split(",") if m}
        return None

    def launch_failures(
        self, stack: str, output: str, zones: Mapping[str, str]
    ) -> tuple[dict[str, tuple[FailureKind, str]], bool]:
        # The sandbox speaks AWS's capacity code; the adapters' `local` rules know it.
        return classify_apply_output("local", output, zones)

    def endpoint(self) -> str:
        """`https://` when the spec has `service.tls` (HAProxy serves HTTPS only)."""
        https = self.spec is not None and self.spec.service.tls is not None
        return f"{'https' if https else 'http'}://127.0.0.1:{self.settings.lb_port}"

    def running_endpoint(self) -> str | None:
        """The endpoint of the load balancer actually running, whatever port the settings
        name now: its port and scheme as HAProxy's record (`haproxy/lb.json`) keeps them.
        None when no load balancer runs."""
        lb = HAProxyLB(self.state_dir)  # read now: the port is recorded when HAProxy starts
        scheme = "https" if lb.tls else "http"
        return f"{scheme}://127.0.0.1:{lb.port}" if lb.port and lb.is_running() else None

    def observe(
        self, spec: ServiceSpec, since: Since, now: float, look: Look, *, collect: bool = True
    ) -> Observed:
        """The sandbox now (CloudBackend.observe). A pass (`Look.PLAN`/`APPLY`) first starts
        the market (`ensure_up`), and an apply its daemon: a plan leaves no process behind;
        orphans with a running process in a zone of
        the spec are adopted, the others reported for stopping. `Look.OFFLINE` still probes
        the replicas: the sandbox is local and needs no credentials."""
        online = look in (Look.PLAN, Look.APPLY)
        if online:
            self.ensure_up(now, daemon=look is Look.APPLY)
        managed = self.managed()
        orphans: list[str] = []
        adopted: list[ManagedReplica] = []
        if online and collect:
            found = self.orphans({m.id for m in managed})
            adopted = self.adoptable(found)
            kept = {m.id for m in adopted}
            orphans = [rid for rid in found if rid not in kept]
        managed += adopted
        notices: list[Notice] = []
        cursor, qps, samples = since.notice_cursor, None, since.request_samples
        preempted = set() if look is Look.OFFLINE else set(since.preempted)
        if online:
            notices, cursor = self.notices(since.notice_cursor)
            preempted |= {n.replica_id for n in notices if n.kind is NoticeKind.PREEMPTED}
            qps, samples = request_rate(since.request_samples, now, self.requests_total())
        observation = self.states(spec, managed, preempted, now, since.version_specs)
        members = None if look is Look.OFFLINE else self.lb_members()
        applied = self.applied_members() if online else None
        return Observed(
            tuple(managed),
            observation,
            tuple(notices),
            cursor,
            qps,
            samples,
            orphans=tuple(orphans),
            adopted=tuple(adopted),
            lb_members=None if members is None else frozenset(members),
            lb_lost_members=applied is not None and members != applied,
        )

    def ensure_up(self, now: float, *, daemon: bool = True) -> None:
        """The cloud exists before any service: the spot market and (with `daemon`; a plan
        starts none, it must leave no process behind) its preemption daemon. SandboxError
        when this state dir's HAProxy or market daemon runs from another path (the project
        was moved while they ran): starting a second set would fight the first for the load
        balancer's port."""
        elsewhere = started_elsewhere(self.state_dir)
        if elsewhere is not None:
            service = self.paths.service if self.paths is not None else "SERVICE"
            if Path(elsewhere).exists():  # a copy: those processes are the original's
                raise SandboxError(copied_state_message(elsewhere))
            raise SandboxError(
                f"this service's sandbox still runs from {elsewhere} (was the project moved?): "
                f"run `hedgeform destroy {service}` here, which stops it, then apply again"
            )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        SpotMarket.init(
            self.state_dir,
            now=now,
            speed=self.settings.speed,
            offset_s=self.settings.offset_hours * 3600,
            warning_seconds=self.settings.warning_seconds,
        )
        if daemon:
            market_daemon.start(self.state_dir)

    def notices(self, cursor: int) -> tuple[list[Notice], int]:
        """Notices after byte `cursor` of the market's feed, and the cursor after them. The
        feed is a file: nothing is consumed until the caller saves the new cursor, so a plan
        (which does not save it) leaves them for the next pass."""
        raw, new_cursor = NoticeFeed(notices_path(self.state_dir)).read(cursor)
        kinds = {"warning": NoticeKind.WARNING, "preempted": NoticeKind.PREEMPTED}
        out = [Notice(kinds[n.kind], n.replica_id, n.zone, n.at) for n in raw if n.kind in kinds]
        return out, new_cursor

    def requests_total(self) -> int | None:
        """The load balancer's request counter, or None while it is not running."""
        try:
            return self.lb.requests_total() if self.lb.is_running() else None
        except SandboxError:
            return None

    def replica_traffic(self) -> dict[str, ReplicaTraffic] | None:
        """HAProxy's per-server counters (`show stat`), by replica id; None while it is not
        running. Its health checks are not requests: they count in none of these."""
        try:
            stats = self.lb.server_stats()
        except SandboxError:
            return None
        return {name: traffic_of(s) for name, s in stats.items()}

    def lb_members(self) -> set[str] | None:
        """The replicas HAProxy serves from now: members whose address is the port their
        replica listens on. A member left on an old port (its replica was replaced under the
        same id, and the front stack applied before the region) does not count, so the pass
        sees the drift and has Terraform set the members again."""
        try:
            if not self.lb.is_running():
                return None
            members = self.lb.members()
        except SandboxError:
            return None
        current: set[str] = set()
        for name, (_, port) in members.items():
            try:
                record = replicas.get(self.state_dir, name)
            except SandboxError:
                continue
            if record is not None and record.port == port:
                current.add(name)
        return current

    def states(
        self,
        spec: ServiceSpec,
        managed: Iterable[ManagedReplica],
        preempted: set[str],
        now: float,
        version_specs: Mapping[int, Mapping[str, Any]] | None = None,
    ) -> Observation:
        """Each replica Terraform manages, with its state from the sandbox and a probe: the
        probe its own version asks (`version_specs`, spec/fingerprint.py), so a changed probe
        path judges only the replicas built for it. A launch Terraform could not create is
        FAILED_PROVISION; a replica whose process died without a preemption is FAILED (it
        crashed), of the version it was launched with."""
        managed = list(managed)
        records = {s.record.replica_id: s for s in replicas.list_replicas(self.state_dir)}
        parts = version_specs or {}
        # Exact timeout, method, headers and body; a hung replica takes timeout_seconds, so
        # the probes run in parallel below.
        requests = {
            runs: readiness.spec_probe_request(spec_for_part(spec, part), os.environ)
            for runs, part in parts.items()
        }
        default = readiness.spec_probe_request(spec, os.environ)

        def state_of(m: ManagedReplica) -> Replica:
            market = Market(m.market)
            status = records.get(m.id)
            if m.tainted:
                return Replica(m.id, m.zone, market, ReplicaState.FAILED_PROVISION, now, m.version)
            if status is None or not status.alive:
                gone = ReplicaState.PREEMPTED if m.id in preempted else ReplicaState.FAILED
                if status is None:
                    return Replica(m.id, m.zone, market, gone, now, m.version)
                rec = status.record
                return Replica(m.id, m.zone, market, gone, rec.launched_at, rec.version)
            rec = status.record
            ok = readiness.probe(rec.url, requests.get(rec.version, default)).ok
            if ok:
                state = ReplicaState.READY
            elif now - rec.launched_at < spec.service.readiness_probe.initial_delay_seconds:
                state = ReplicaState.STARTING
            else:
                state = ReplicaState.NOT_READY
            return Replica(m.id, m.zone, market, state, rec.launched_at, rec.version)

        with ThreadPoolExecutor(max_workers=8) as pool:
            observed = list(pool.map(state_of, managed))
        return Observation(tuple(observed), zone_offers(spec, self.pool_types))

    def adoptable(self, orphan_ids: Sequence[str]) -> list[ManagedReplica]:
        """Orphans with a readable record whose process runs, in a zone of the spec: their
        region's stack takes them back (the launch provisioner finds each one running and
        returns it), so a lost state file does not stop replicas that serve."""
        out: list[ManagedReplica] = []
        for replica_id in orphan_ids:
            try:
                record = replicas.get(self.state_dir, replica_id)
            except SandboxError:
                continue  # unreadable: stopped instead (`stop` finds it by process)
            if record is None or record.zone not in self.regions or not replicas.is_alive(record):
                continue
            try:
                market = Market(record.market)
            except ValueError:
                continue
            _, region = self.regions[record.zone]
            out.append(ManagedReplica(replica_id, record.zone, market, False, region))
        return out

    def stop(self, replica_ids: Sequence[str]) -> None:
        for replica_id in replica_ids:
            replicas.stop(self.state_dir, replica_id)

    def outside_terraform(self) -> OutsideTerraform:
        """The sandbox's drift (CloudBackend.outside_terraform): its module holds only
        null_resources, which Terraform cannot refresh, so the sandbox itself is compared
        with the stacks' state. A replica in a region stack's state whose process is not
        running was deleted outside Terraform (preempted, as the market's notices say, or
        stopped or crashed); a front stack whose HAProxy is not running, or whose members
        are not those Terraform set, changed outside it. Unknown instances are the orphans a
        pass would adopt or stop (`orphans`, `adoptable`); here only reported."""
        paths = self._paths()
        managed = self.managed()
        alive = {s.record.replica_id for s in replicas.list_replicas(self.state_dir) if s.alive}
        preempted = set()
        if notices_path(self.state_dir).exists():
            preempted = {n.replica_id for n in self.notices(0)[0] if n.kind is NoticeKind.PREEMPTED}
        changed: dict[str, list[DriftedResource]] = {}
        for m in sorted(managed, key=lambda m: m.id):
            if m.tainted or m.id in alive:
                continue
            why = (
                "its replica process is gone: preempted by the spot market"
                if m.id in preempted
                else "its replica process is not running: stopped or crashed outside Terraform"
            )
            address = f'module.stack.null_resource.replica["{m.id}"]'
            changed.setdefault(m.stack, []).append(DriftedResource(address, "delete", (), why))
        changed.setdefault(FRONT, []).extend(self._front_drift(paths.stack_dir(FRONT)))
        unknown = []
        found = self.orphans({m.id for m in managed})
        adopted = {m.id for m in self.adoptable(found)}
        for replica_id in found:
            try:
                record = replicas.get(self.state_dir, replica_id)
            except SandboxError:
                record = None
            zone = record.zone if record is not None else ""
            stack = self.regions[zone][1] if zone in self.regions else ""
            note = (
                "running without Terraform state: the next apply takes it back into its stack"
                if replica_id in adopted
                else "running without Terraform state: the next apply stops it"
            )
            unknown.append(UnknownInstance(stack or "-", replica_id, zone, "", "running", note))
        return OutsideTerraform(
            {stack: tuple(found) for stack, found in changed.items() if found}, tuple(unknown)
        )

    def _front_drift(self, front_dir: Path) -> list[DriftedResource]:
        """The front stack's load balancer and target group against the HAProxy running."""
        held = {res.get("name") for res in state_resources(front_dir / STATE_FILE)}
        if "load_balancer" not in held:
            return []
        if not self.lb.is_running():
            return [
                DriftedResource(
                    "module.stack.null_resource.load_balancer[0]",
                    "delete",
                    (),
                    "HAProxy is not running",
                )
            ]
        applied, current = self.applied_members(), self.lb_members()
        if applied is None or current is None or applied == current:
            return []
        change = AttributeChange("members", sorted(applied), sorted(current))
        note = "HAProxy serves other members than Terraform set"
        return [
            DriftedResource("module.stack.null_resource.target_group[0]", "update", (change,), note)
        ]

    def orphans(self, managed_ids: set[str]) -> list[str]:
        """Replica processes running without Terraform knowing (a crash between launch and
        Terraform saving its state), recorded or not: a replica server of this sandbox whose
        record is gone is found by its HEDGEFORM_SANDBOX marker (replicas.unrecorded)."""
        recorded = {s.record.replica_id for s in replicas.list_replicas(self.state_dir) if s.alive}
        unrecorded = set(replicas.unrecorded(self.state_dir).values())
        return sorted((recorded | unrecorded) - managed_ids)


def traffic_of(stats: ServerStats) -> ReplicaTraffic:
    """One HAProxy server's `show stat` row as ReplicaTraffic (times in ms -> s; HAProxy
    reports 0 before a server's first request, which is no measurement)."""
    responses = {
        "1xx": stats.hrsp_1xx,
        "2xx": stats.hrsp_2xx,
        "3xx": stats.hrsp_3xx,
        "4xx": stats.hrsp_4xx,
        "5xx": stats.hrsp_5xx,
        "other": stats.hrsp_other,
    }
    measured = stats.req_tot > 0
    return ReplicaTraffic(
        requests=stats.req_tot,
        responses=responses,
        connection_errors=stats.econ,
        response_errors=stats.eresp,
        response_time_s=stats.rtime_ms / 1000 if measured else None,
        total_time_s=stats.ttime_ms / 1000 if measured else None,
    )


def request_rate(
    samples: tuple[tuple[float, int], ...], now: float, total: int | None
) -> tuple[float | None, tuple[tuple[float, int], ...]]:
    """Requests per second over about the last minute, from the LB's counter sampled at each
    tick; None until two samples at least 5 s apart exist (then the autoscaler holds)."""
    if total is None:
        return None, ()
    kept = tuple(s for s in samples if now - s[0] <= 2 * RATE_WINDOW_S and s[1] <= total)
    kept = (*kept, (now, total))
    older = [s for s in kept if now - s[0] >= RATE_WINDOW_S]
    base = max(older, key=lambda s: s[0]) if older else kept[0]
    span = now - base[0]
    if span < 5.0:
        return None, kept
    return (total - base[1]) / span, kept
