"""Per-cloud wiring of the signal adapters (reconciler/adapters) for ProviderCloud: credentials,
notices, request rate, spot prices, and replica states.

One object per cloud keeps its clients and stateful sources (price caches, CloudWatch's
"metric exists", GCP's seen operations, the replica metrics window) across ticks. Each maps
the replicas Terraform holds (tfstate.CloudReplica) to the cloud's instances, so notices and
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
from reconciler.clouds.aws import signals as aws
from reconciler.clouds.base import InstanceRef, parse_time
from reconciler.clouds.naming import gcp_url_map_name
from reconciler.clouds.prices import CatalogPriceSource
from reconciler.clouds.rest import RestClient, StaticToken, TokenProvider
from reconciler.errors import AdapterError, NotProvisionedError
from reconciler.policy import Notice, ReplicaState
from reconciler.spec.model import ServiceSpec
from reconciler.terraform.state import CloudReplica

log = logging.getLogger(__name__)
View = tuple[ReplicaState, float]  # state, launched at
AZURE_COMPUTE_API = "2024-03-01"
PROBE_WORKERS = 16  # replicas probed at once (GCP/Azure): one slow probe delays no other


class CloudApis(Protocol):
    """What ProviderCloud asks of one cloud."""

    def check_credentials(self) -> None:
        """Raise the adapters' one-line CredentialsError when none are usable."""
        ...

    def notices(
        self, region: str, zones: Sequence[str], replicas: Sequence[CloudReplica], consume: bool
    ) -> list[Notice]: ...

    def request_rate(
        self,
        region: str,
        outputs: Mapping[str, Any],
        replicas: Sequence[CloudReplica],
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
        replicas: Sequence[CloudReplica],
        outputs: Mapping[str, Any],
        preempted: set[str],
        first_seen: Mapping[str, float],
        now: float,
    ) -> dict[str, View]: ...


def _refs(
    replicas: Sequence[CloudReplica], key: Callable[[CloudReplica], str]
) -> dict[str, InstanceRef]:
    return {key(r): InstanceRef(r.id, r.zone) for r in replicas if key(r)}


def gone_state(replica: CloudReplica, preempted: set[str], spot_reclaimed: bool) -> ReplicaState:
    """A replica whose instance stopped or vanished without the reconciler asking."""
    if replica.id in preempted or (replica.market == "spot" and spot_reclaimed):
        return ReplicaState.PREEMPTED
    return ReplicaState.FAILED


# -- AWS -----------------------------------------------------------------------------------


def aws_state(
    replica: CloudReplica,
    instance: Mapping[str, Any] | None,
    health: str | None,
    initial_delay: float,
    preempted: set[str],
    now: float,
) -> View:
    """One replica's state from its EC2 instance and its target health (see module doc)."""
    if instance is None:
        return gone_state(replica, preempted, spot_reclaimed=True), now
    launched: Any = instance.get("LaunchTime")
    launched_at = float(launched.timestamp()) if hasattr(launched, "timestamp") else now
    name = str((instance.get("State") or {}).get("Name", ""))
    if name == "pending":
        return ReplicaState.PROVISIONING, launched_at
    if name == "running":
        if replica.id in preempted:
            return ReplicaState.PREEMPTED, launched_at
        if health == "healthy":
            return ReplicaState.READY, launched_at
        if health == "unhealthy" and now - launched_at >= initial_delay:
            return ReplicaState.NOT_READY, launched_at
        return ReplicaState.STARTING, launched_at
    reason = str((instance.get("StateReason") or {}).get("Code", ""))
    return gone_state(replica, preempted, reason in aws.SPOT_REASONS), launched_at


class AwsApis:
    def __init__(self, spec: ServiceSpec, endpoint_url: str | None = None) -> None:
        self.service = spec.name
        self.initial_delay = float(spec.service.readiness_probe.initial_delay_seconds)
        self.endpoint_url = endpoint_url
        self._clients: dict[tuple[str, str], Any] = {}
        self._metrics: dict[tuple[str, str], aws.CloudWatchMetricsSource] = {}
        self._prices: dict[tuple[str, str], aws.AwsSpotPriceSource] = {}
        self.regions: list[str] = []

    def client(self, name: str, region: str) -> Any:
        key = (name, region)
        if key not in self._clients:
            self._clients[key] = aws.aws_client(name, region, self.endpoint_url)
        return self._clients[key]

    def check_credentials(self) -> None:
        for region in self.regions or ["us-east-1"]:
            self.client("ec2", region)

    def notices(
        self, region: str, zones: Sequence[str], replicas: Sequence[CloudReplica], consume: bool
    ) -> list[Notice]:
        source = aws.SqsNoticeSource(
            aws.notices_queue_name(self.service),
            region,
            instances=_refs(replicas, lambda r: r.instance_id),
            service=self.service,
            acknowledge=consume,
            sqs=self.client("sqs", region),
            ec2=self.client("ec2", region),
        )
        try:
            return source.poll()
        except NotProvisionedError:
            return []  # before the first apply there is no queue

    def request_rate(
        self,
        region: str,
        outputs: Mapping[str, Any],
        replicas: Sequence[CloudReplica],
        now: float,
    ) -> float | None:
        dimension = str(outputs.get("lb_arn_suffix") or "")
        if not dimension:
            return None  # no load balancer yet
        key = (region, dimension)
        if key not in self._metrics:
            cw = self.client("cloudwatch", region)
            self._metrics[key] = aws.CloudWatchMetricsSource(dimension, region, cloudwatch=cw)
        return self._metrics[key].request_rate(now)

    def spot_prices(
        self, region: str, instance_type: str, zones: Sequence[str]
    ) -> dict[str, float]:
        key = (region, instance_type)
        if key not in self._prices:
            ec2 = self.client("ec2", region)
            self._prices[key] = aws.AwsSpotPriceSource(instance_type, region, ec2=ec2)
        return self._prices[key].spot_prices(zones)

    def target_health(self, region: str, target_group_arn: str) -> dict[str, str]:
        """instance id -> TargetHealth.State of the registered targets."""
        reply = aws.call(
            self.client("elbv2", region), "describe_target_health", TargetGroupArn=target_group_arn
        )
        return {
            str(d["Target"]["Id"]): str(d.get("TargetHealth", {}).get("State", ""))
            for d in reply.get("TargetHealthDescriptions", [])
        }

    def states(
        self,
        region: str,
        replicas: Sequence[CloudReplica],
        outputs: Mapping[str, Any],
        preempted: set[str],
        first_seen: Mapping[str, float],
        now: float,
    ) -> dict[str, View]:
        ids = [r.instance_id for r in replicas if r.instance_id]
        described = aws.describe_instances(self.client("ec2", region), ids) if ids else {}
        target_group = str(outputs.get("target_group_arn") or "")
        health = self.target_health(region, target_group) if target_group and ids else {}
        return {
            r.id: aws_state(
                r,
                described.get(r.instance_id),
                health.get(r.instance_id),
                self.initial_delay,
                preempted,
                now,
            )
            for r in replicas
        }


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


class _RestApis:
    """Shared by GCP and Azure: probing and the credential check."""

    def __init__(
        self, spec: ServiceSpec, tokens: TokenProvider, session: requests.Session | None
    ) -> None:
        self.spec = spec
        self.tokens = tokens
        self.session = session or requests.Session()
        port = spec.service.ports or (spec.resources.ports[0] if spec.resources.ports else 0)
        self.port = int(port)

    def check_credentials(self) -> None:
        self.tokens.token()

    def _each(
        self, replicas: Sequence[CloudReplica], view: Callable[[CloudReplica], View]
    ) -> dict[str, View]:
        """`view` of every replica, in parallel: a probe may take the whole `timeout_seconds`
        (an address the reconciler cannot reach), and replicas must not wait for each other."""
        if not replicas:
            return {}
        with ThreadPoolExecutor(max_workers=min(PROBE_WORKERS, len(replicas))) as pool:
            return dict(zip((r.id for r in replicas), pool.map(view, replicas), strict=True))

    def _running(self, replica: CloudReplica, launched_at: float, now: float) -> ReplicaState:
        probe_spec = self.spec.service.readiness_probe
        request = readiness.spec_probe_request(self.spec, os.environ)
        ok = probe(self.session, replica.private_ip, self.port, request)
        return running_state(ok, launched_at, probe_spec.initial_delay_seconds, now)


def _gcp_tokens() -> TokenProvider:
    from reconciler.clouds.gcp.signals import GoogleAuthTokens

    token = os.environ.get("GOOGLE_OAUTH_ACCESS_TOKEN")
    return StaticToken(token) if token else GoogleAuthTokens()


class GcpApis(_RestApis):
    def __init__(
        self,
        spec: ServiceSpec,
        project: str,
        tokens: TokenProvider | None = None,
        *,
        compute_url: str | None = None,
        monitoring_url: str | None = None,
        session: requests.Session | None = None,
    ) -> None:
        from reconciler.clouds.gcp import signals as gcp

        super().__init__(spec, tokens or _gcp_tokens(), session)
        self.project = project
        self.compute_url = compute_url or gcp.COMPUTE_URL
        self.monitoring_url = monitoring_url or gcp.MONITORING_URL
        self._notices: dict[str, gcp.GcpPreemptionSource] = {}
        self._metrics: dict[str, gcp.CloudMonitoringMetricsSource] = {}
        self._api = RestClient(
            self.compute_url, self.tokens, api="GCP Compute", credentials_hint=gcp.CREDENTIALS_HINT
        )

    def notices(
        self, region: str, zones: Sequence[str], replicas: Sequence[CloudReplica], consume: bool
    ) -> list[Notice]:
        from reconciler.clouds.gcp import signals as gcp

        if region not in self._notices:
            self._notices[region] = gcp.GcpPreemptionSource(
                self.project, self.tokens, zones=list(zones), base_url=self.compute_url
            )
        source = self._notices[region]
        source.instances = _refs(replicas, lambda r: r.name)
        return source.poll()

    def request_rate(
        self,
        region: str,
        outputs: Mapping[str, Any],
        replicas: Sequence[CloudReplica],
        now: float,
    ) -> float | None:
        from reconciler.clouds.gcp import signals as gcp

        if not outputs:
            return None  # not applied yet: no load balancer
        if region not in self._metrics:
            self._metrics[region] = gcp.CloudMonitoringMetricsSource(
                self.project,
                self.tokens,
                url_map=gcp_url_map_name(self.spec.name, region),
                base_url=self.monitoring_url,
            )
        return self._metrics[region].request_rate(now)

    def spot_prices(
        self, region: str, instance_type: str, zones: Sequence[str]
    ) -> dict[str, float]:
        return CatalogPriceSource("gcp", instance_type).spot_prices(zones)

    def instance(self, replica: CloudReplica) -> dict[str, Any] | None:
        url = self._api.url(
            f"projects/{self.project}/zones/{replica.zone}/instances/{replica.name}"
        )
        try:
            return self._api.get_json(url)
        except AdapterError as exc:
            if "HTTP 404" in str(exc):
                return None
            raise

    def states(
        self,
        region: str,
        replicas: Sequence[CloudReplica],
        outputs: Mapping[str, Any],
        preempted: set[str],
        first_seen: Mapping[str, float],
        now: float,
    ) -> dict[str, View]:

        def view(r: CloudReplica) -> View:
            data = self.instance(r)
            launched = first_seen.get(r.id, now)
            if data is not None:
                launched = parse_time(data.get("creationTimestamp")) or launched
            status = str((data or {}).get("status", ""))
            if data is None:  # spot VMs are deleted on preemption
                return gone_state(r, preempted, spot_reclaimed=True), launched
            if status in ("PROVISIONING", "STAGING"):
                return ReplicaState.PROVISIONING, launched
            if status == "RUNNING" and r.id not in preempted:
                return self._running(r, launched, now), launched
            # STOPPING, TERMINATED, SUSPENDED, or running under a preemption notice
            return gone_state(r, preempted, spot_reclaimed=True), launched

        return self._each(replicas, view)


def _azure_tokens() -> TokenProvider:
    from reconciler.clouds.azure.signals import AzureIdentityTokens

    return AzureIdentityTokens()


class AzureApis(_RestApis):
    def __init__(
        self,
        spec: ServiceSpec,
        subscription_id: str,
        tokens: TokenProvider | None = None,
        *,
        arm_url: str | None = None,
        session: requests.Session | None = None,
    ) -> None:
        from reconciler.clouds.azure import signals as azure
        from reconciler.clouds.replica_metrics import ReplicaMetricsSource

        super().__init__(spec, tokens or _azure_tokens(), session)
        self.subscription_id = subscription_id
        self.arm_url = arm_url or azure.ARM_URL
        self._notices: azure.AzureEvictionSource | None = None
        self._endpoints: dict[str, dict[str, str]] = {}
        self._metrics: dict[str, ReplicaMetricsSource] = {}
        self._api = RestClient(
            self.arm_url, self.tokens, api="Azure Compute", credentials_hint=azure.CREDENTIALS_HINT
        )

    def notices(
        self, region: str, zones: Sequence[str], replicas: Sequence[CloudReplica], consume: bool
    ) -> list[Notice]:
        from reconciler.clouds.azure import signals as azure

        if self._notices is None:  # one subscription-wide activity log for every region
            self._notices = azure.AzureEvictionSource(
                self.subscription_id, self.tokens, instances={}, base_url=self.arm_url
            )
        refs = _refs(replicas, lambda r: r.name)
        self._notices.instances = {name.lower(): ref for name, ref in refs.items()}
        return self._notices.poll()

    def request_rate(
        self,
        region: str,
        outputs: Mapping[str, Any],
        replicas: Sequence[CloudReplica],
        now: float,
    ) -> float | None:
        """The Standard LB is layer 4: sum the replicas' own counters (reachable only from
        inside the VNet; None otherwise, and the policy holds its target)."""
        from reconciler.clouds.replica_metrics import ReplicaMetricsSource

        self._endpoints[region] = {
            r.id: f"http://{r.private_ip}:{self.port}" for r in replicas if r.private_ip
        }
        if region not in self._metrics:
            self._metrics[region] = ReplicaMetricsSource(
                lambda: self._endpoints.get(region, {}), session=self.session
            )
        return self._metrics[region].request_rate(now)

    def spot_prices(
        self, region: str, instance_type: str, zones: Sequence[str]
    ) -> dict[str, float]:
        return CatalogPriceSource("azure", instance_type).spot_prices(zones)

    def power_state(self, replica: CloudReplica) -> str | None:
        """`running`, `starting`, `deallocated`, ... from the VM's instance view; None when the
        VM is gone (Spot eviction with the Delete policy)."""
        url = self._api.url(f"{replica.instance_id}/instanceView")
        try:
            view = self._api.get_json(url, {"api-version": AZURE_COMPUTE_API})
        except AdapterError as exc:
            if "HTTP 404" in str(exc):
                return None
            raise
        for status in view.get("statuses") or []:
            code = str(status.get("code", ""))
            if code.startswith("PowerState/"):
                return code.split("/", 1)[1]
        return "starting"  # no power state yet: still provisioning

    def states(
        self,
        region: str,
        replicas: Sequence[CloudReplica],
        outputs: Mapping[str, Any],
        preempted: set[str],
        first_seen: Mapping[str, float],
        now: float,
    ) -> dict[str, View]:

        def view(r: CloudReplica) -> View:
            launched = first_seen.get(r.id, now)
            power = self.power_state(r) if r.instance_id else None
            if power in ("starting", "unknown"):
                return ReplicaState.PROVISIONING, launched
            if power == "running" and r.id not in preempted:
                return self._running(r, launched, now), launched
            # gone, deallocated, stopped, or under an eviction notice
            return gone_state(r, preempted, spot_reclaimed=power is None), launched

        return self._each(replicas, view)
