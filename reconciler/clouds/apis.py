"""What the cloud backend asks of one cloud (`CloudApis`: credentials, notices, request rate,
spot prices, replica states) and the parts the clouds share; each cloud's own is in
clouds/<cloud>/apis.py.

One object per cloud keeps its clients and stateful sources (price caches, CloudWatch's
"metric exists", GCP's seen operations, the replica metrics window) across ticks. Each maps
the replicas Terraform holds (tfstate.ManagedReplica) to the cloud's instances, so notices and
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
from typing import Any, Protocol

import requests

from reconciler import readiness
from reconciler.clouds.base import InstanceRef
from reconciler.clouds.rest import TokenProvider
from reconciler.policy import Market, Notice, ReplicaState
from reconciler.spec.model import ServiceSpec
from reconciler.stacks import ManagedReplica

log = logging.getLogger(__name__)
View = tuple[ReplicaState, float]  # state, launched at
PROBE_WORKERS = 16  # replicas probed at once (GCP/Azure): one slow probe delays no other


class CloudApis(Protocol):
    """What ProviderCloud asks of one cloud."""

    def check_credentials(self, regions: Sequence[str]) -> None:
        """Raise the adapters' one-line CredentialsError when none are usable in `regions`."""
        ...

    def notices(
        self, region: str, zones: Sequence[str], replicas: Sequence[ManagedReplica], consume: bool
    ) -> list[Notice]: ...

    def request_rate(
        self,
        region: str,
        outputs: Mapping[str, Any],
        replicas: Sequence[ManagedReplica],
        now: float,
    ) -> float | None: ...

    def spot_prices(
        self, region: str, instance_type: str, zones: Sequence[str]
    ) -> dict[str, float]:
        """Live where the cloud has a cheap API (AWS); raising makes the caller use the
        shipped catalog."""
        ...

    def states(
        self,
        region: str,
        replicas: Sequence[ManagedReplica],
        outputs: Mapping[str, Any],
        preempted: set[str],
        first_seen: Mapping[str, float],
        now: float,
    ) -> dict[str, View]: ...


def refs(
    replicas: Sequence[ManagedReplica], key: Callable[[ManagedReplica], str]
) -> dict[str, InstanceRef]:
    return {key(r): InstanceRef(r.id, r.zone) for r in replicas if key(r)}


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
