"""GCP's CloudApis: Compute Engine and Cloud Monitoring over REST (see clouds/apis.py)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import requests

from reconciler.clouds.apis import (
    Peek,
    RestApis,
    TaggedInstance,
    View,
    catalog_prices,
    check_names,
    gone_state,
    peek_catalog_prices,
    refs,
)
from reconciler.clouds.base import parse_time
from reconciler.clouds.gcp import signals as gcp
from reconciler.clouds.gcp.lb_stats import BackendServiceStats
from reconciler.clouds.gcp.naming import gcp_url_map_name
from reconciler.clouds.lb_stats import GroupTraffic
from reconciler.clouds.rest import RestClient, StaticToken, TokenProvider
from reconciler.clouds.settings import ENV_GCP_PROJECT
from reconciler.errors import AdapterError, CloudConfigError, SettingsError
from reconciler.paths import NAME_RE
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
        self._connect(compute_url or gcp.COMPUTE_URL, monitoring_url or gcp.MONITORING_URL)

    def _connect(self, compute_url: str, monitoring_url: str) -> None:
        self.compute_url = compute_url
        self.monitoring_url = monitoring_url
        self._notices: dict[str, gcp.GcpPreemptionSource] = {}
        self._metrics: dict[str, gcp.CloudMonitoringMetricsSource] = {}
        self._lb_stats: dict[str, BackendServiceStats] = {}
        self._api = RestClient(
            self.compute_url, self.tokens, api="GCP Compute", credentials_hint=gcp.CREDENTIALS_HINT
        )

    def use_endpoint(self, url: str) -> None:
        """`url` serves /compute/v1 (Compute Engine) and /v3 (Cloud Monitoring)."""
        base = url.rstrip("/")
        self._connect(f"{base}/compute/v1", f"{base}/v3")

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
        return catalog_prices("gcp", instance_type, region, zones)

    def lb_traffic(
        self, region: str, outputs: Mapping[str, Any], zones: Sequence[str], accelerator: str,
        now: float,
    ) -> list[GroupTraffic]:  # fmt: skip
        """The URL map's figures per backend service and zone from Cloud Monitoring
        (clouds/gcp/lb_stats.py); every zone's instance group holds all the region's types,
        so `accelerator` labels them all."""
        if not outputs:
            return []  # not applied yet: no load balancer
        if region not in self._lb_stats:
            url_map = gcp_url_map_name(self.spec.name, region)
            if not NAME_RE.fullmatch(url_map) or not NAME_RE.fullmatch(self.project):
                raise CloudConfigError(
                    f"invalid GCP project or URL map: {self.project!r}, {url_map!r}"
                )
            api = RestClient(
                self.monitoring_url,
                self.tokens,
                api="GCP Monitoring",
                credentials_hint=gcp.CREDENTIALS_HINT,
            )
            self._lb_stats[region] = BackendServiceStats(api, self.project, url_map)
        return self._lb_stats[region].read(zones, accelerator, now)

    def peek(
        self, region: str | None, zones: Sequence[str], instance_type: str | None, now: float
    ) -> Peek:
        """Preemptions from the zone operations (instance names as replica ids), the rate of
        the region's URL map by name, and the shipped catalog's prices."""
        project = self.project
        if not project:
            raise SettingsError(
                f"GCP project unknown: set {ENV_GCP_PROJECT} "
                "(or `gcp_project` in the service's settings file)"
            )
        source = check_names(
            lambda: gcp.GcpPreemptionSource(
                project, self.tokens, zones=list(zones) or None, base_url=self.compute_url
            )
        )
        notices = source.poll()
        if region is not None and not zones:
            notices = [n for n in notices if n.zone.startswith(region + "-")]
        notes: list[str] = []
        rate = None
        if region is None:
            notes.append("no region, so no load balancer: request rate unknown")
        else:
            metrics = check_names(
                lambda: gcp.CloudMonitoringMetricsSource(
                    project,
                    self.tokens,
                    url_map=gcp_url_map_name(self.spec.name, region),
                    base_url=self.monitoring_url,
                )
            )
            rate = metrics.request_rate(now)
        prices, dated = peek_catalog_prices("gcp", instance_type, region, zones)
        return Peek(notices, rate, prices, notes + dated)

    def tagged_instances(self, region: str, zones: Sequence[str]) -> list[TaggedInstance]:
        """Every instance of `zones` labelled `hedgeform-service=<service>` (Compute Engine
        `instances.list` with a label filter; clouds/apis.py ListsInstances)."""
        out: list[TaggedInstance] = []
        for zone in sorted(zones):
            url = self._api.url(f"projects/{self.project}/zones/{zone}/instances")
            params = {"filter": f"labels.hedgeform-service={self.spec.name}"}
            while True:
                page = self._api.get_json(url, params)
                for item in page.get("items") or []:
                    labels = item.get("labels") or {}
                    out.append(
                        TaggedInstance(
                            str(item.get("id", "")),
                            str(item.get("name", "")),
                            zone,
                            str(item.get("status", "")),
                            str(labels.get("hedgeform-replica", "")),
                        )
                    )
                token = page.get("nextPageToken")
                if not token:
                    break
                params = {**params, "pageToken": str(token)}
        return sorted(out, key=lambda i: (i.zone, i.name))

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
