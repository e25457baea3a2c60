"""The AWS / GCP / Azure backend: region stacks from the spec's locations, contexts from
reconciler.clouds, signals and states from each cloud's CloudApis (clouds/<cloud>/apis.py,
through clouds/registry.py).

Stacks are named `<cloud>-<region>` (`aws-us-east-1`, `gcp-us-central1`, `azure-eastus`), a
plain name that stays unique across clouds, plus `front` (Route 53 over every region's load
balancer) when a DNS zone is configured. A location without a region expands to the default
regions of its cloud (settings), else the catalog's first region; one without a zone to every
zone of its region in the catalog.

Load-balancer membership on clouds: the load balancer's health check is the readiness gate, so
every replica the policy keeps is registered except those under a preemption warning (which
drain) and those already gone; a target that is not healthy gets no traffic. The policy's own
`lb_members` (the ready replicas) is always a subset.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.backends.base import (
    PROVIDERS_FILE,
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
from reconciler.clouds import (
    REAL_CLOUDS,
    InstanceChoice,
    Origin,
    accelerators_for_region,
    choice_note,
    cloud_stack_context,
    front_stack_context,
    instance_for_region,
    instances_for_region,
    list_price,
    list_prices,
    list_spot_price,
    template_for,
    type_entry,
    version_entry,
    zones_of,
)
from reconciler.clouds.apis import NO_LB_STATS, CloudApis, ListsInstances, ReadsLbStats
from reconciler.clouds.checks import check_cloud_settings
from reconciler.clouds.prices import CatalogPriceSource, catalog_entry, entry_refs
from reconciler.clouds.registry import CLOUDS, cloud_replicas
from reconciler.clouds.settings import (
    ProviderSettings,
)
from reconciler.cost import PLACEHOLDER, PricedOffer, PriceRef
from reconciler.drift_report import UnknownInstance
from reconciler.errors import AdapterError, CloudConfigError, CredentialsError, HedgeformError
from reconciler.files import write_atomic
from reconciler.paths import ServicePaths, check_name
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
from reconciler.spec.fingerprint import spec_for_part
from reconciler.spec.model import ServiceSpec
from reconciler.stacks import (
    FRONT,
    ManagedReplica,
    RegionStack,
    capacity_weights,
    pool_name,
    replica_accelerators,
)
from reconciler.terraform.state import state_outputs

log = logging.getLogger(__name__)
LB_MAX_WEIGHT = 999  # an ALB forward action's target group weights: 0-999
# The shared target group's key among the types' in a weighted forward (no type starts with _).
UNTYPED = "_untyped"
FRONT_PROVIDER_REGION = "us-east-1"  # Route 53 is global; its API lives in us-east-1
FIRST_SEEN = "first_seen.json"
# The load balancers' serving figures are read at a scrape at most this often; between
# reads a scrape sees the last one. Their clouds publish per minute (and CloudWatch bills
# GetMetricData per metric requested), so reading at every 15 s scrape would pay 4x for
# the same minutes.
LB_STATS_EVERY_S = 60.0


def stack_name(cloud: str, region: str) -> str:
    return check_name(f"{cloud}-{region}", "stack")


def expand_locations(
    spec: ServiceSpec, default_regions: Mapping[str, Sequence[str]]
) -> dict[str, tuple[str, str]]:
    """zone -> (cloud, region) for every candidate zone the spec allows."""
    out: dict[str, tuple[str, str]] = {}
    for loc in spec.resources.locations:
        cloud = loc.cloud
        if cloud not in REAL_CLOUDS:
            raise CloudConfigError(
                f"location {loc.cloud or '(no cloud)'} is not a real cloud: name aws, gcp or "
                "azure for every location (the local sandbox cannot be mixed with clouds)"
            )
        if loc.region:
            regions: Sequence[str] = (loc.region,)
        elif loc.zone:  # a zone names its region (SkyPilot: `infra: aws/*/us-east-1a`)
            regions = [r for r, zs in _zones(cloud).items() if loc.zone in zs][:1]
            if not regions:
                raise CloudConfigError(
                    f"zone {loc.zone!r} is not a known zone of {cloud} in any region; write "
                    f"its region too, e.g. infra: {cloud}/REGION/{loc.zone}"
                )
        else:
            regions = tuple(default_regions.get(cloud) or ()) or (next(iter(_zones(cloud))),)
        for region in regions:
            zones = zones_of(cloud, region)
            if loc.zone:
                if loc.zone not in zones:
                    raise CloudConfigError(
                        f"zone {loc.zone!r} is not a known zone of {cloud} {region}; "
                        f"known: {', '.join(zones)}"
                    )
                zones = (loc.zone,)
            for zone in zones:
                out[zone] = (cloud, region)
    return out


def _zones(cloud: str) -> dict[str, tuple[str, ...]]:
    from reconciler.clouds.catalog import ZONES

    return ZONES[cloud]


# Where a live spot price comes from, per cloud with a live price API (`Cloud.live_spot_prices`).
LIVE_SPOT_SOURCE = {"aws": "AWS EC2 describe_spot_price_history (live)"}


def on_demand_price(cloud: str, region: str, choice: InstanceChoice) -> float | None:
    """The shipped catalog's on-demand price: this region, else any region of the cloud, else
    the cloud's list price (clouds/catalog.py `list_price`, its reference region)."""
    quote = on_demand_quote(cloud, region, choice)
    return None if quote is None else quote[0]


def on_demand_quote(
    cloud: str, region: str, choice: InstanceChoice
) -> tuple[float, PriceRef] | None:
    """`on_demand_price` with where it comes from (the catalog entry's source and date, or
    the list prices' file and date); None when neither has the type."""
    entry = catalog_entry(cloud, region, choice.price_key)
    if entry is not None and "on_demand" in entry:
        return float(entry["on_demand"]), entry_refs(entry)[0]
    price = list_price(cloud, choice.price_key)
    if price is None:
        return None
    return price, _list_ref(cloud)


def _list_ref(cloud: str) -> PriceRef:
    listed = list_prices(cloud)
    return PriceRef(f"{listed.source} (list price, {listed.region})", listed.as_of)


def _one_choice(
    resources: Any,
    cloud: str,
    region: str,
    overrides: Mapping[str, str] | None = None,
    *,
    policy: Any = None,
) -> tuple[InstanceChoice, ...]:
    """`instance_for_region` as a one-element `instances_for_region`."""
    return (instance_for_region(resources, cloud, region, overrides, policy=policy),)


def pools_note(
    cloud: str,
    region: str,
    types: Sequence[InstanceChoice],
    asked: Sequence[str] = (),
    capped: Sequence[str] = (),
) -> str:
    """One line for `plan`: the GPU types a region offers as pools of their own (issue 15),
    and the types of the set (`asked`) it does not run for want of an instance of their own
    in the catalog (SkyPilot's any-of: those are skipped; `capped` ones have their own
    note)."""
    shown = []
    for choice in types:
        price = on_demand_price(cloud, region, choice)
        cost = f"${price:.2f}/h on demand" if price is not None else "no list price"
        shown.append(f"{choice.accelerator} ({choice.instance_type}, {cost})")
    running = {c.accelerator.upper() for c in types} | {c.upper() for c in capped}
    missing = [name for name in dict.fromkeys(asked) if name.upper() not in running]
    skipped = (
        f"; not running {', '.join(missing)} (the catalog has no instance of its own for it here)"
        if missing
        else ""
    )
    return (
        f"{cloud} {region} offers {', '.join(shown)} as pools of their own; the policy chooses "
        f"how many of each every tick, by price per request/s (docs/mix.md){skipped}"
    )


def _of(managed: Sequence[ManagedReplica], stack: StackDef) -> list[ManagedReplica]:
    return [r for r in managed if r.stack == stack.name]


def default_apis(
    spec: ServiceSpec, settings: ProviderSettings, clouds: set[str]
) -> dict[str, CloudApis]:
    """Each cloud's own CloudApis (clouds/<cloud>/apis.py), for the clouds the spec names."""
    return {name: CLOUDS[name].make_apis(spec, settings) for name in sorted(clouds)}


class ProviderCloud:
    """The CloudBackend of AWS, GCP and Azure specs (see the module docstring)."""

    poll_s = 15.0  # converge re-observes through cloud APIs: not four times a second
    plan_cache = False  # the cloud can drift: always plan

    def __init__(
        self,
        paths: ServicePaths,
        spec: ServiceSpec,
        settings: ProviderSettings,
        apis: Mapping[str, CloudApis] | None = None,
        *,
        several_types: bool = True,
    ) -> None:
        """`several_types` False: a region asked for a set of GPU types runs one of them (the
        catalog's cheapest), for a policy that places by zone only."""
        self.paths = paths
        self.spec = spec
        self.settings = settings
        self.state_dir = paths.state_dir / "cloud"
        self.zone_regions = expand_locations(spec, settings.default_regions)
        self.regions = sorted(set(self.zone_regions.values()))
        self.clouds = {cloud for cloud, _ in self.regions}
        check_cloud_settings(spec, self.regions, settings)  # one line per missing setting
        self.apis = dict(apis) if apis is not None else default_apis(spec, settings, self.clouds)
        # (cloud, region) -> every instance choice its stack runs: several when the spec asks
        # for a set of GPU types, the policy mixes them and the cloud's module runs a type
        # per replica (issue 15); else the one of `instance_for_region`.
        try:
            self.region_types: dict[tuple[str, str], tuple[InstanceChoice, ...]] = {
                (cloud, region): (
                    instances_for_region
                    if several_types and CLOUDS[cloud].typed_replicas
                    else _one_choice
                )(
                    spec.resources,
                    cloud,
                    region,
                    settings.cloud.instance_types,
                    policy=spec.service.replica_policy,
                )
                for cloud, region in self.regions
            }
        except CloudConfigError as exc:  # a spec field: say which file
            raise CloudConfigError(f"{paths.spec_file}: {exc}") from None
        mix_note: tuple[str, ...] = ()
        capped: dict[tuple[str, str], tuple[str, ...]] = {}
        for (cloud, region), types in sorted(self.region_types.items()):
            most = CLOUDS[cloud].max_types_per_region
            if most is not None and len(types) > most:
                self.region_types[(cloud, region)] = types[:most]
                left = capped[(cloud, region)] = tuple(c.accelerator for c in types[most:])
                mix_note += (
                    f"{cloud} {region}: at most {most} GPU types per region; not running "
                    f"{', '.join(left)}",
                )
        self.typed_pools = any(len(types) > 1 for types in self.region_types.values())
        untyped = sorted({c for c, _ in self.regions if not CLOUDS[c].typed_replicas})
        if self.typed_pools and untyped:  # pools need every region to run typed replicas
            self.region_types = {key: types[:1] for key, types in self.region_types.items()}
            self.typed_pools = False
            mix_note = (
                f"{', '.join(untyped)} regions run one GPU type per region only (their module "
                "takes no type per replica), so every region runs one type, the catalog's choice",
            )
        self.instance_choices = {key: types[0] for key, types in self.region_types.items()}
        self.accelerators_in_use = frozenset(
            c.accelerator for types in self.region_types.values() for c in types if c.accelerator
        )
        self.accelerator_notes = tuple(
            note
            for (cloud, region), types in sorted(self.region_types.items())
            if (
                note := (
                    pools_note(
                        cloud,
                        region,
                        types,
                        [a.name for a in accelerators_for_region(spec.resources, cloud, region)[0]],
                        capped.get((cloud, region), ()),
                    )
                    if self.typed_pools
                    else choice_note(
                        spec.resources, cloud, region, types[0], policy=spec.service.replica_policy
                    )
                )
            )
        )
        self.accelerator_notes += mix_note
        # The last read of the load balancers' figures: (monotonic time, result or error).
        self._traffic_lock = threading.Lock()  # scrapes come from the metrics thread
        self._traffic: tuple[float, Mapping[str, ReplicaTraffic] | HedgeformError] | None = None
        self._traffic_said: set[str] = set()

    # -- stacks ------------------------------------------------------------------------------

    def stacks(self) -> list[StackDef]:
        out = [StackDef(stack_name(c, r), c, r, c) for c, r in self.regions]
        if self.settings.has_front:
            out.append(StackDef(FRONT, FRONT, "", FRONT))
        return out

    def _region_stacks(self) -> list[StackDef]:
        return [s for s in self.stacks() if s.name != FRONT]

    def _outputs(self, stack: StackDef) -> dict[str, Any]:
        return state_outputs(self.paths.stack_dir(stack.name))

    def _check_credentials(self) -> None:
        for cloud in sorted(self.clouds):
            self.apis[cloud].check_credentials([r for c, r in self.regions if c == cloud])

    def managed(self) -> list[ManagedReplica]:
        replicas: list[ManagedReplica] = []
        for stack in self._region_stacks():
            replicas.extend(cloud_replicas(self.paths.stack_dir(stack.name), stack.cloud))
        return replicas

    def _zones_of(self, stack: StackDef) -> list[str]:
        key = (stack.cloud, stack.region)
        return sorted(z for z, cr in self.zone_regions.items() if cr == key)

    def observe(
        self, spec: ServiceSpec, since: Since, now: float, look: Look, *, collect: bool = True
    ) -> Observed:
        """The clouds now (CloudBackend.observe). A pass checks credentials first, polls
        notices (consumed on `Look.APPLY` only) and the request rate; every look but
        `OFFLINE` reads each replica's state from the cloud's API, and the load balancers'
        members are the READY replicas (their health check is the readiness gate). Cloud
        instances exist only through Terraform: there are no orphans to collect."""
        managed = self.managed()
        if look is Look.OFFLINE:
            return Observed(
                tuple(managed),
                self._offline(managed, now),
                notice_cursor=since.notice_cursor,
                request_samples=since.request_samples,
            )
        notices: list[Notice] = []
        qps: float | None = None
        preempted = set(since.preempted)
        if look in (Look.PLAN, Look.APPLY):
            self._check_credentials()
            notices = self._notices(managed, consume=look is Look.APPLY)
            preempted |= {n.replica_id for n in notices if n.kind is NoticeKind.PREEMPTED}
        observation = self._states(managed, preempted, now)
        if look in (Look.PLAN, Look.APPLY):
            qps = self._request_rate(managed, now)
        ready = frozenset(r.id for r in observation.replicas if r.state is ReplicaState.READY)
        return Observed(
            tuple(managed),
            observation,
            tuple(notices),
            since.notice_cursor,
            qps,
            lb_members=ready,
        )

    # -- signals -----------------------------------------------------------------------------

    def _notices(self, managed: Sequence[ManagedReplica], *, consume: bool) -> list[Notice]:
        """Polled from each region's source; a failing source is logged and skipped (the
        states read by `observe` still show a preempted replica), missing credentials are not."""
        out: list[Notice] = []
        for stack in self._region_stacks():
            try:
                out.extend(
                    self.apis[stack.cloud].notices(
                        stack.region, self._zones_of(stack), _of(managed, stack), consume
                    )
                )
            except CredentialsError:
                raise
            except AdapterError as exc:
                log.warning("notices of %s unavailable: %s", stack.name, exc)
        return out

    def _request_rate(self, managed: Sequence[ManagedReplica], now: float) -> float | None:
        """The sum over regions; unknown (None, the policy holds) if any region's is unknown."""
        total = 0.0
        for stack in self._region_stacks():
            try:
                rate = self.apis[stack.cloud].request_rate(
                    stack.region, self._outputs(stack), _of(managed, stack), now
                )
            except CredentialsError:
                raise
            except AdapterError as exc:
                log.warning("request rate of %s unavailable: %s", stack.name, exc)
                return None
            if rate is None:
                return None
            total += rate
        return total

    # -- observation -------------------------------------------------------------------------

    def zone_offers(self, *, live: bool = True) -> tuple[ZoneOffer, ...]:
        """Prices per candidate zone: live spot prices where the cloud has them (AWS), else
        (or when the API fails) the shipped catalog; on-demand prices from the catalog."""
        return tuple(p.offer for p in self.priced_offers(live=live))

    def priced_offers(self, *, live: bool = True) -> tuple[PricedOffer, ...]:
        """`zone_offers` with where each price came from and when (reconciler/cost.py)."""
        offers: list[PricedOffer] = []
        for stack in self._region_stacks():
            cloud, region = stack.cloud, stack.region
            zones = self._zones_of(stack)
            types = self.region_types[(cloud, region)]
            for choice in types:
                # Several types: each (zone, type) is a pool of its own (stacks.pool_name).
                typed = choice.accelerator if self.typed_pools else ""
                itype = choice.instance_type
                quote = on_demand_quote(cloud, region, choice)
                if quote is None:
                    log.warning(
                        "no on-demand price for %s %s in the catalog; using 1.0", cloud, itype
                    )
                    quote = (1.0, PriceRef(PLACEHOLDER, "-", placeholder=True))
                od, od_ref = quote
                spot, spot_ref = self._spot_prices(stack, choice, zones, live)
                from_api = spot_ref is not None and spot_ref.live
                # The per-zone catalog lists not every type: then the list prices' spot
                # reference (their source's lowest zone), rather than on-demand, so a type
                # the catalog omits is not priced out of a mix.
                listed = list_spot_price(cloud, choice.price_key) if not spot else None
                for zone in zones:
                    price: float | None = spot.get(zone)
                    ref = spot_ref
                    if price is None and from_api:
                        continue  # the cloud lists no spot price: the type is not offered there
                    if price is None and spot:  # the catalog lists not the zone: no preference
                        price = max(spot.values())
                    elif price is None and listed:
                        price, ref = listed, _list_ref(cloud)
                    elif price is None:
                        price, ref = od, od_ref
                    use_spot = self.spec.resources.use_spot
                    offers.append(
                        PricedOffer(
                            ZoneOffer(
                                pool_name(zone, typed),
                                region,
                                cloud,
                                price if use_spot else None,
                                od,
                                accelerator=typed,
                            ),
                            ref if use_spot else None,
                            od_ref,
                        )
                    )
        return tuple(offers)

    def _spot_prices(
        self, stack: StackDef, choice: InstanceChoice, zones: Sequence[str], live: bool
    ) -> tuple[dict[str, float], PriceRef | None]:
        """Spot prices per zone and where they came from: the cloud's API when it has one and
        answers (AWS), else the shipped catalog, by the type's `price_key` (a GCP N1 machine
        is priced with its GPUs); None: it lists the type nowhere."""
        itype, key = choice.instance_type, choice.price_key
        if live and CLOUDS[stack.cloud].live_spot_prices:
            try:
                prices = self.apis[stack.cloud].spot_prices(stack.region, itype, zones)
                if prices:
                    read = datetime.now(UTC).strftime("%Y-%m-%dT%H:%MZ")
                    return prices, PriceRef(
                        LIVE_SPOT_SOURCE.get(stack.cloud, f"{stack.cloud} spot price API (live)"),
                        read,
                        live=True,
                    )
            except CredentialsError:
                raise
            except AdapterError as exc:
                log.warning("spot prices of %s unavailable, using the catalog: %s", stack.name, exc)
        prices = CatalogPriceSource(stack.cloud, key).spot_prices(zones)
        entry = catalog_entry(stack.cloud, stack.region, key)
        return prices, (entry_refs(entry)[1] if entry is not None and prices else None)

    def _states(
        self, managed: Sequence[ManagedReplica], preempted: set[str], now: float
    ) -> Observation:
        first_seen = self._first_seen(managed, now)
        replicas: list[Replica] = []
        complete = True
        for stack in self._region_stacks():
            mine = [r for r in _of(managed, stack) if not r.tainted]
            views = {}
            if mine:
                try:
                    views = self.apis[stack.cloud].states(
                        stack.region, mine, self._outputs(stack), preempted, first_seen, now
                    )
                except CredentialsError:
                    raise
                except AdapterError as exc:
                    log.warning("states of %s unavailable: %s; holding", stack.name, exc)
                    complete = False
            for r in _of(managed, stack):
                state, at = views.get(r.id, (ReplicaState.STARTING, first_seen.get(r.id, now)))
                if r.tainted:
                    state = ReplicaState.FAILED_PROVISION
                replicas.append(Replica(r.id, r.zone, Market(r.market), state, at, r.version))
        return Observation(tuple(replicas), self.zone_offers(), complete)

    def _offline(self, managed: Sequence[ManagedReplica], now: float) -> Observation:
        """No cloud API at all (`plan --render-only`): every replica Terraform holds counts as
        ready (tainted ones as FAILED_PROVISION), prices come from the catalog."""
        replicas = tuple(
            Replica(
                r.id,
                r.zone,
                Market(r.market),
                ReplicaState.FAILED_PROVISION if r.tainted else ReplicaState.READY,
                now,
                r.version,
            )
            for r in managed
        )
        return Observation(replicas, self.zone_offers(live=False))

    def _first_seen(self, managed: Sequence[ManagedReplica], now: float) -> dict[str, float]:
        """When each replica was first observed (GCP/Azure state has no launch time), kept in
        state/<service>/cloud/first_seen.json."""
        path = self.state_dir / FIRST_SEEN
        try:
            seen = {str(k): float(v) for k, v in json.loads(path.read_text()).items()}
        except (OSError, ValueError, AttributeError):
            seen = {}
        current = {r.id for r in managed}
        updated = {rid: seen.get(rid, now) for rid in sorted(current)}
        if updated != seen:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            write_atomic(path, json.dumps(updated, indent=1, sort_keys=True) + "\n")
        return updated

    # -- rendering ---------------------------------------------------------------------------

    def render(self, layout: Layout, now: float) -> list[RenderedStack]:
        """Each region stack holds its share of `layout.kept`; its load balancer registers
        every kept replica not draining (its health check gates traffic), and the policy's
        members, which are always among them."""
        kept = layout.kept
        registered = set(layout.members) | {r.id for r in kept if r.id not in layout.draining}
        out: list[RenderedStack] = []
        for stack in self._region_stacks():
            key = (stack.cloud, stack.region)
            mine = [r for r in kept if self.zone_regions.get(r.zone) == key]
            replicas = tuple(sorted(mine, key=lambda r: r.id))
            region = RegionStack(stack.cloud, stack.region, replicas)
            context = cloud_stack_context(
                self.spec, region, sorted(registered), self.settings.cloud
            )
            types = self.region_types[key]
            if self.typed_pools:  # several GPU types: each replica runs its own (issue 15)
                context["accelerator_types"] = {
                    c.accelerator: type_entry(stack.cloud, c) for c in types
                }
                context["replica_accelerators"] = {
                    rid: acc
                    for rid, acc in replica_accelerators(replicas).items()
                    if acc in context["accelerator_types"]
                }
                if CLOUDS[stack.cloud].weighs_types:
                    context.update(self._lb_weights(context, replicas, layout.members, registered))
            if CLOUDS[stack.cloud].carries_versions:
                self._add_versions(context, region, layout.versions)
            out.append(
                RenderedStack(stack, template_for(stack.cloud), context, self._providers(stack))
            )
        front = next((s for s in self.stacks() if s.name == FRONT), None)
        if front is not None:
            context = front_stack_context(
                self.spec, self.settings.domain_name, self.settings.zone_id, self.origins()
            )
            out.append(RenderedStack(front, template_for(FRONT), context, self._providers(front)))
        return out

    def _lb_weights(
        self,
        context: Mapping[str, Any],
        replicas: Sequence[ManagedReplica],
        ready: Sequence[str],
        registered: set[str],
    ) -> dict[str, Any]:
        """`accelerator_weights` and `untyped_weight` of a region running several types: the
        load balancer's weight of each type's target group (and of the shared one, for
        replicas of no type), in proportion to the requests/s its ready members serve
        (`ServiceSpec.replica_rps`: the sidecar's profile, else `target_qps_per_replica`; one
        per replica without either). Ready, not merely registered: an ALB target group whose
        targets are all unhealthy fails open and sends to them, so a type still starting must
        weigh 0. When no member is ready the registered ones weigh (and with none, every group
        weighs the same: `capacity_weights`)."""
        types: Mapping[str, str] = context["replica_accelerators"]
        named = self.spec.resources.accelerator_names
        untyped_as = named[0] if named else ""

        def capacity(members: set[str]) -> dict[str, float]:
            out = dict.fromkeys([*context["accelerator_types"], UNTYPED], 0.0)
            for r in replicas:
                if r.id in members:
                    key = types.get(r.id, UNTYPED)
                    out[key] += self.spec.replica_rps(types.get(r.id, untyped_as)) or 1.0
            return out

        shares = capacity(set(ready))
        if not any(shares.values()):
            shares = capacity(registered)
        weights = capacity_weights(shares, LB_MAX_WEIGHT)
        untyped = weights.pop(UNTYPED)
        return {"accelerator_weights": weights, "untyped_weight": untyped}

    @property
    def carries_versions(self) -> bool:
        """Rollouts need every region's module to launch replicas per version."""
        return all(CLOUDS[s.cloud].carries_versions for s in self._region_stacks())

    def _add_versions(
        self,
        context: dict[str, Any],
        region: RegionStack,
        versions: Mapping[int, Mapping[str, Any]],
    ) -> None:
        """`versions` of a region stack: what every version in use runs there (its instance
        type, image, disk and scripts), from the spec part the record keeps of it, or the
        current spec's for a version it has none of (before any version was registered)."""
        wanted = {r.version for r in region.replicas} | set(versions)
        out: dict[str, Any] = {}
        for runs in sorted(wanted):
            part = versions.get(runs)
            spec = spec_for_part(self.spec, part) if part is not None else self.spec
            out[str(runs)] = version_entry(spec, region.cloud, region.region, self.settings.cloud)
        context["versions"] = out

    def origins(self) -> dict[str, Origin]:
        """Region stacks whose load balancer exists (from their applied outputs)."""
        origins: dict[str, Origin] = {}
        for stack in self._region_stacks():
            outputs = self._outputs(stack)
            address = outputs.get("lb_dns_name") or outputs.get("lb_ip_address")
            if address:
                url = str(outputs.get("lb_url") or "")
                origins[stack.name] = Origin(stack.cloud, stack.region, str(address), url=url)
        return origins

    def _providers(self, stack: StackDef) -> dict[str, str]:
        """The provider block of the stack's root configuration (the modules declare none)."""
        if stack.cloud == FRONT:  # Route 53 and the front's health checks: AWS, one region
            aws = CLOUDS["aws"]
            name = aws.provider
            config = aws.provider_config(FRONT_PROVIDER_REGION, self.settings)
        else:
            cloud = CLOUDS[stack.cloud]
            name, config = cloud.provider, cloud.provider_config(stack.region, self.settings)
        text = json.dumps({"provider": {name: config}}, indent=2, sort_keys=True) + "\n"
        return {PROVIDERS_FILE: text}

    # -- outcomes ----------------------------------------------------------------------------

    def launch_failures(
        self, stack: str, output: str, zones: Mapping[str, str]
    ) -> tuple[dict[str, tuple[FailureKind, str]], bool]:
        cloud = next((s.cloud for s in self.stacks() if s.name == stack), "")
        return classify_apply_output(cloud, output, zones)

    def stop(self, replica_ids: Sequence[str]) -> None:
        """Never asked: `observe` reports no orphans and adopts none."""
        if replica_ids:
            raise NotImplementedError("cloud replicas are stopped by Terraform only")

    def outside_terraform(self) -> OutsideTerraform:
        """Instances tagged for the service that no stack's state holds, listed through each
        cloud's adapter (clouds/apis.py ListsInstances: AWS by the `hedgeform:service` tag,
        GCP by the `hedgeform-service` label, Azure by the `hedgeform-service` tag).
        What changed of the resources Terraform holds is its own refresh's to say."""
        known = {x for m in self.managed() for x in (m.instance_id, m.name) if x}
        unknown: list[UnknownInstance] = []
        notes: list[str] = []
        for stack in self._region_stacks():
            apis = self.apis[stack.cloud]
            apis.check_credentials([stack.region])
            if not isinstance(apis, ListsInstances):
                notes.append(
                    f"{stack.name}: instances tagged for the service are not listed on "
                    f"{stack.cloud} (no adapter call for it yet)"
                )
                continue
            try:
                found = apis.tagged_instances(stack.region, self._zones_of(stack))
            except CredentialsError:
                raise
            except AdapterError as exc:
                notes.append(f"{stack.name}: instances tagged for the service not listed: {exc}")
                continue
            for inst in found:
                if inst.id in known or inst.name in known:
                    continue
                note = "tagged for the service, but in no stack's Terraform state"
                if inst.replica:
                    note += f" (its replica tag: {inst.replica})"
                unknown.append(
                    UnknownInstance(stack.name, inst.id, inst.zone, inst.name, inst.state, note)
                )
        return OutsideTerraform({}, tuple(unknown), tuple(notes))

    def endpoint(self) -> str:
        """The service's URL: the front's DNS name (https:// when every region's load
        balancer serves TLS, as the name then reaches only HTTPS origins), else each region's
        load balancer URL as its module reports it (`lb_url`)."""
        origins = list(self.origins().values())
        if self.settings.has_front:
            scheme = "https" if origins and all(o.https for o in origins) else "http"
            return f"{scheme}://{self.settings.domain_name}"
        return ", ".join(o.endpoint() for o in origins) or "(no load balancer applied yet)"

    def replica_traffic(self) -> Mapping[str, ReplicaTraffic] | None:
        """The load balancers' figures per target group (backend) and zone, keyed
        `<stack>/<group>/<zone>`: every region whose cloud reads them (clouds/apis.py
        `ReadsLbStats`), read at most every LB_STATS_EVERY_S (a failure too is kept that
        long). A region of a cloud without them is left out (said once in the log); when no
        region has them, or a read fails, the error says why (`hedgeform_lb_stats_up` 0)."""
        with self._traffic_lock:
            at = time.monotonic()
            if self._traffic is None or at - self._traffic[0] >= LB_STATS_EVERY_S:
                result: Mapping[str, ReplicaTraffic] | HedgeformError
                try:
                    result = self._read_traffic(time.time())
                except HedgeformError as exc:
                    result = exc
                self._traffic = (at, result)
            got = self._traffic[1]
        if isinstance(got, HedgeformError):
            raise got
        return got

    def _read_traffic(self, now: float) -> dict[str, ReplicaTraffic]:
        out: dict[str, ReplicaTraffic] = {}
        readable = 0
        skipped: dict[str, str] = {}  # stack -> why its cloud has no figures
        for stack in self._region_stacks():
            apis = self.apis[stack.cloud]
            if not isinstance(apis, ReadsLbStats):
                skipped[stack.name] = NO_LB_STATS.get(stack.cloud, f"{stack.cloud}: not read")
                continue
            readable += 1
            types = self.region_types.get((stack.cloud, stack.region), ())
            accelerator = types[0].accelerator if len(types) == 1 else ""
            try:
                groups = apis.lb_traffic(
                    stack.region, self._outputs(stack), self._zones_of(stack), accelerator, now
                )
            except AdapterError as exc:
                raise type(exc)(f"{stack.name}: {exc}") from None
            for g in groups:
                out[f"{stack.name}/{g.group}/{g.zone}"] = ReplicaTraffic(
                    requests=g.requests,
                    responses=g.responses,
                    connection_errors=g.connection_errors,
                    response_errors=None,
                    response_time_s=g.response_time_s,
                    total_time_s=g.total_time_s,
                    zone=g.zone,
                    accelerator=g.accelerator,
                    response_time_quantiles_s=g.response_time_quantiles_s,
                )
        if not readable:  # the collector says this once
            raise AdapterError("; ".join(sorted(set(skipped.values()))) or "no region stack")
        for stack_name, why in sorted(skipped.items()):  # the other regions' figures are read
            if stack_name not in self._traffic_said:
                self._traffic_said.add(stack_name)
                log.warning("serving metrics of %s not read: %s", stack_name, why)
        return out

    def stack_dir(self, stack: str) -> Path:
        return self.paths.stack_dir(stack)
