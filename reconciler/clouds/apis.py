"""What the cloud backend asks of one cloud (`CloudApis`: credentials, notices, request rate,
spot prices, replica states; `peek` and `use_endpoint` for `hedgeform signals`) and the parts
the clouds share; each cloud's own is in clouds/<cloud>/apis.py.

One object per cloud keeps its clients and stateful sources (price caches, CloudWatch's
"metric exists", GCP's seen operations, the replica metrics window) across ticks. Each maps
the replicas Terraform holds (stacks.ManagedReplica) to the cloud's instances, so notices and
states come back keyed by replica id.

States, and how honest each is:
- AWS: `describe_instances` + the target group's health (`describe_target_health`). pending ->
  PROVISIONING; running -> STARTING until the target is `healthy` (READY); `unhealthy` past
  the readiness probe's initial delay -> NOT_READY; shutting-down/terminated/stopped with a
  spot state reason (or a PREEMPTED notice) -> PREEMPTED, else FAILED; gone -> the same.
- GCP / Azure: the instance's status from the REST API (GCP `instances.get`, Azure
  `instanceView`), and readiness from an HTTP probe of the replica's private address. The
  reconciler usually cannot reach that address (it runs outside the VPC, and the modules'
  firewalls admit only the load balancer): an unreachable replica counts as STARTING until the
  initial delay has passed and READY after it, trusting the load balancer's own health check
  to keep traffic off a replica that never became healthy (which is then not replaced).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

import requests

from reconciler import readiness
from reconciler.clouds.base import InstanceRef
from reconciler.clouds.lb_stats import GroupTraffic
from reconciler.clouds.prices import CatalogPriceSource, catalog_entry, catalog_zones, entry_refs
from reconciler.clouds.rest import TokenProvider
from reconciler.errors import CloudConfigError, HedgeformError
from reconciler.policy import Market, Notice, ReplicaState
from reconciler.spec.model import ServiceSpec
from reconciler.stacks import ManagedReplica

log = logging.getLogger(__name__)
View = tuple[ReplicaState, float]  # state, launched at
PROBE_WORKERS = 16  # replicas probed at once (GCP/Azure): one slow probe delays no other


@dataclass(frozen=True)
class Peek:
    """What one region of a cloud shows with nothing applied and nothing acknowledged."""

    notices: list[Notice] = field(default_factory=list)  # peeked: the reconciler still gets them
    request_rate: float | None = None  # requests/s over the last minute; None: unknown
    prices: dict[str, float] | None = None  # spot $/h by zone; None: no instance type to price
    notes: list[str] = field(default_factory=list)  # what could not be read, one line each


class CloudApis(Protocol):
    """What ProviderCloud asks of one cloud each tick, and `hedgeform signals` once."""

    def check_credentials(self, regions: Sequence[str]) -> None:
        """Raise the adapters' one-line CredentialsError when none are usable in `regions`."""
        ...

    def notices(
        self, region: str, zones: Sequence[str], replicas: Sequence[ManagedReplica], consume: bool
    ) -> list[Notice]:
        """New notices of `region`'s `replicas` (Terraform's), acknowledged when `consume`."""
        ...

    def request_rate(
        self,
        region: str,
        outputs: Mapping[str, Any],
        replicas: Sequence[ManagedReplica],
        now: float,
    ) -> float | None:
        """Requests/s over the minute before `now` (unix s); None: unknown or nothing applied."""
        ...

    def spot_prices(
        self, region: str, instance_type: str, zones: Sequence[str]
    ) -> dict[str, float]:
        """Spot $/h by zone (empty `zones`: all of `region`'s); live on AWS, else the catalog."""
        ...

    def states(
        self,
        region: str,
        replicas: Sequence[ManagedReplica],
        outputs: Mapping[str, Any],
        preempted: set[str],
        first_seen: Mapping[str, float],
        now: float,
    ) -> dict[str, View]:
        """Replica id -> (state, launched at unix s) for each of `replicas` (see module doc)."""
        ...

    def peek(
        self, region: str | None, zones: Sequence[str], instance_type: str | None, now: float
    ) -> Peek:
        """`region`'s (None: every region's) notices, rate and prices without Terraform state."""
        ...

    def use_endpoint(self, url: str) -> None:
        """Send later calls to `url` (moto, an HTTP fake) instead of the cloud's own APIs."""
        ...


@dataclass(frozen=True)
class TaggedInstance:
    """An instance the cloud lists as tagged (labelled) for the service, whatever Terraform
    holds: its id, its name (GCP, Azure; AWS: the id), zone, the cloud's state of it, and
    the replica id its tags name ("" when none)."""

    id: str
    name: str
    zone: str
    state: str
    replica: str = ""


@runtime_checkable
class ListsInstances(Protocol):
    """A cloud whose adapter can list every instance tagged for the service (`hedgeform
    drift`'s unknown instances): AWS (the `hedgeform:service` tag), GCP (the
    `hedgeform-service` label)."""

    def tagged_instances(self, region: str, zones: Sequence[str]) -> list[TaggedInstance]:
        """Every instance of `region` (GCP: in `zones`) tagged for the service that has not
        ended (AWS: not shutting-down or terminated)."""
        ...


@runtime_checkable
class ReadsLbStats(Protocol):
    """A cloud whose adapter reads its load balancer's serving figures (requests, responses
    by class, connection errors, response times) per group of targets and zone: AWS
    (CloudWatch), GCP (Cloud Monitoring). Azure's Standard load balancer is layer 4 and has
    none (`NO_LB_STATS` says why)."""

    def lb_traffic(
        self, region: str, outputs: Mapping[str, Any], zones: Sequence[str], accelerator: str,
        now: float,
    ) -> list[GroupTraffic]:  # fmt: skip
        """`region`'s figures (`outputs`: its stack's Terraform outputs; empty before the first
        apply: nothing to read) in `zones`; `accelerator` labels a group whose type is not
        its own ("" where the region runs several). The adapter keeps the running totals, so
        one object must serve every read. Errors: AdapterError and its kin."""
        ...


# Why a cloud without ReadsLbStats has no serving figures: one line for the log.
NO_LB_STATS: Mapping[str, str] = {
    "azure": (
        "Azure's Standard load balancer is layer 4 (TCP): it counts no HTTP requests, "
        "responses or latencies to read (docs/operations.md)"
    ),
}


def refs(
    replicas: Sequence[ManagedReplica], key: Callable[[ManagedReplica], str]
) -> dict[str, InstanceRef]:
    return {key(r): InstanceRef(r.id, r.zone) for r in replicas if key(r)}


T = TypeVar("T")


def check_names(make: Callable[[], T]) -> T:
    """`make()`, with a name an API filter refuses (the adapters' ValueError: a project,
    subscription, region or zone) turned into a one-line CloudConfigError."""
    try:
        return make()
    except HedgeformError:
        raise
    except ValueError as exc:
        raise CloudConfigError(" ".join(str(exc).split())) from None


def catalog_prices(
    cloud: str, instance_type: str, region: str | None, zones: Sequence[str]
) -> dict[str, float]:
    """Spot $/h by zone from the shipped catalog: of `zones` (empty: all) in `region` (None:
    in every region)."""
    prices = CatalogPriceSource(cloud, instance_type).spot_prices(zones)
    if region is None:
        return prices
    in_region = set(catalog_zones(cloud, region))
    return {zone: price for zone, price in prices.items() if zone in in_region}


def peek_catalog_prices(
    cloud: str, instance_type: str | None, region: str | None, zones: Sequence[str]
) -> tuple[dict[str, float] | None, list[str]]:
    """`Peek.prices` from the shipped catalog, and the note dating them (None and no note
    without an instance type)."""
    if instance_type is None:
        return None, []
    prices = catalog_prices(cloud, instance_type, region, zones)
    entry = catalog_entry(cloud, region or "", instance_type)
    if entry is None:
        as_of = CatalogPriceSource(cloud, instance_type).as_of
        return prices, [f"prices from the static catalog dated {as_of}"]
    spot = entry_refs(entry)[1]
    return prices, [f"spot prices from the static catalog: {spot.describe()}"]


def gone_state(replica: ManagedReplica, preempted: set[str], spot_reclaimed: bool) -> ReplicaState:
    """A replica whose instance stopped or vanished without the reconciler asking."""
    if replica.id in preempted or (replica.market == Market.SPOT and spot_reclaimed):
        return ReplicaState.PREEMPTED
    return ReplicaState.FAILED


# -- GCP and Azure: status from REST, readiness from a probe (or the initial delay) --------


def probe(
    session: requests.Session, address: str, port: int, request: readiness.ProbeRequest
) -> bool | None:
    """True on HTTP 200, False on another status, None when the replica cannot be reached
    (no address, refused, timed out after the spec's exact timeout_seconds)."""
    if not address:
        return None
    result = readiness.probe(f"http://{address}:{port}", request, session)
    return result.ok if result.reachable else None


def running_state(
    ok: bool | None, launched_at: float, initial_delay: float, now: float
) -> ReplicaState:
    """A running replica: READY on a 200; an unreachable one is assumed READY once the initial
    delay has passed (the load balancer's health check still gates its traffic)."""
    if ok:
        return ReplicaState.READY
    if now - launched_at < initial_delay:
        return ReplicaState.STARTING
    return ReplicaState.READY if ok is None else ReplicaState.NOT_READY


class RestApis:
    """Shared by GCP and Azure: probing and the credential check."""

    def __init__(
        self, spec: ServiceSpec, tokens: TokenProvider, session: requests.Session | None
    ) -> None:
        self.spec = spec
        self.tokens = tokens
        self.session = session or requests.Session()
        port = spec.service.ports or (spec.resources.ports[0] if spec.resources.ports else 0)
        self.port = int(port)

    def check_credentials(self, regions: Sequence[str]) -> None:
        self.tokens.token()

    def _each(
        self, replicas: Sequence[ManagedReplica], view: Callable[[ManagedReplica], View]
    ) -> dict[str, View]:
        """`view` of every replica, in parallel: a probe may take the whole `timeout_seconds`
        (an address the reconciler cannot reach), and replicas must not wait for each other."""
        if not replicas:
            return {}
        with ThreadPoolExecutor(max_workers=min(PROBE_WORKERS, len(replicas))) as pool:
            return dict(zip((r.id for r in replicas), pool.map(view, replicas), strict=True))

    def _running(self, replica: ManagedReplica, launched_at: float, now: float) -> ReplicaState:
        probe_spec = self.spec.service.readiness_probe
        request = readiness.spec_probe_request(self.spec, os.environ)
        ok = probe(self.session, replica.private_ip, self.port, request)
        return running_state(ok, launched_at, probe_spec.initial_delay_seconds, now)
