"""GCP's CloudApis: Compute Engine and Cloud Monitoring over REST (see clouds/apis.py)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import requests

from reconciler.clouds.apis import RestApis, View, gone_state, refs
from reconciler.clouds.base import parse_time
from reconciler.clouds.gcp import signals as gcp
from reconciler.clouds.naming import gcp_url_map_name
from reconciler.clouds.prices import CatalogPriceSource
from reconciler.clouds.rest import RestClient, StaticToken, TokenProvider
from reconciler.errors import AdapterError
from reconciler.policy import Notice, ReplicaState
from reconciler.spec.model import ServiceSpec
from reconciler.stacks import ManagedReplica


def _gcp_tokens() -> TokenProvider:
    token = os.environ.get("GOOGLE_OAUTH_ACCESS_TOKEN")
    return StaticToken(token) if token else gcp.GoogleAuthTokens()


class GcpApis(RestApis):
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
        self, region: str, zones: Sequence[str], replicas: Sequence[ManagedReplica], consume: bool
    ) -> list[Notice]:
        if region not in self._notices:
            self._notices[region] = gcp.GcpPreemptionSource(
                self.project, self.tokens, zones=list(zones), base_url=self.compute_url
            )
        source = self._notices[region]
        source.instances = refs(replicas, lambda r: r.name)
        return source.poll()

    def request_rate(
        self,
        region: str,
        outputs: Mapping[str, Any],
        replicas: Sequence[ManagedReplica],
        now: float,
    ) -> float | None:
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

    def instance(self, replica: ManagedReplica) -> dict[str, Any] | None:
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
        replicas: Sequence[ManagedReplica],
        outputs: Mapping[str, Any],
        preempted: set[str],
        first_seen: Mapping[str, float],
        now: float,
    ) -> dict[str, View]:

        def view(r: ManagedReplica) -> View:
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
