"""Azure's CloudApis: Resource Manager over REST, the replicas' own request counters (see
clouds/apis.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

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
from reconciler.clouds.azure import signals as azure
from reconciler.clouds.replica_metrics import ReplicaMetricsSource
from reconciler.clouds.rest import RestClient, TokenProvider
from reconciler.clouds.settings import ENV_AZURE_SUBSCRIPTION
from reconciler.errors import AdapterError, SettingsError
from reconciler.policy import Notice, ReplicaState
from reconciler.spec.model import ServiceSpec
from reconciler.stacks import ManagedReplica

AZURE_COMPUTE_API = "2024-03-01"
AZURE_RESOURCES_API = "2021-04-01"  # Resource Manager's Resources - List


def _azure_tokens() -> TokenProvider:
    return azure.AzureIdentityTokens()


class AzureApis(RestApis):
    def __init__(
        self,
        spec: ServiceSpec,
        subscription_id: str,
        tokens: TokenProvider | None = None,
        *,
        arm_url: str | None = None,
        session: requests.Session | None = None,
    ) -> None:
        super().__init__(spec, tokens or _azure_tokens(), session)
        self.subscription_id = subscription_id
        self._endpoints: dict[str, dict[str, str]] = {}
        self._metrics: dict[str, ReplicaMetricsSource] = {}
        self.use_endpoint(arm_url or azure.ARM_URL)

    def use_endpoint(self, url: str) -> None:
        """`url` is the Resource Manager base URL (activity log, VM instance views)."""
        self.arm_url = url
        self._notices: azure.AzureEvictionSource | None = None
        self._api = RestClient(
            self.arm_url, self.tokens, api="Azure Compute", credentials_hint=azure.CREDENTIALS_HINT
        )

    def notices(
        self, region: str, zones: Sequence[str], replicas: Sequence[ManagedReplica], consume: bool
    ) -> list[Notice]:

        if self._notices is None:  # one subscription-wide activity log for every region
            self._notices = azure.AzureEvictionSource(
                self.subscription_id, self.tokens, instances={}, base_url=self.arm_url
            )
        by_name = refs(replicas, lambda r: r.name)
        self._notices.instances = {name.lower(): ref for name, ref in by_name.items()}
        return self._notices.poll()

    def request_rate(
        self,
        region: str,
        outputs: Mapping[str, Any],
        replicas: Sequence[ManagedReplica],
        now: float,
    ) -> float | None:
        """The Standard LB is layer 4: sum the replicas' own counters (reachable only from
        inside the VNet; None otherwise, and the policy holds its target)."""
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
        return catalog_prices("azure", instance_type, region, zones)

    def peek(
        self, region: str | None, zones: Sequence[str], instance_type: str | None, now: float
    ) -> Peek:
        """Reads the activity log (access check only: evictions are placed through Terraform
        state's VM -> replica map); no rate (a layer-4 LB); the shipped catalog's prices."""
        subscription = self.subscription_id
        if not subscription:
            raise SettingsError(
                f"Azure subscription unknown: set {ENV_AZURE_SUBSCRIPTION} "
                "(or `azure_subscription_id` in the service's settings file)"
            )
        source = check_names(
            lambda: azure.AzureEvictionSource(
                subscription, self.tokens, instances={}, base_url=self.arm_url
            )
        )
        source.poll()
        notes = [
            "evictions are placed via the reconciler's VM -> replica map "
            "(Terraform state); this command reads the activity log but cannot place them",
            "Standard LB is layer 4: request rate comes from replicas",
        ]
        prices, dated = peek_catalog_prices("azure", instance_type, region, zones)
        return Peek([], None, prices, notes + dated)

    def tagged_instances(self, region: str, zones: Sequence[str]) -> list[TaggedInstance]:
        """Every VM of `region` tagged `hedgeform-service=<service>` (Resource Manager's
        `Resources - List` of the subscription with a tag filter, every page followed through
        `nextLink` on the same host; clouds/apis.py ListsInstances). The list carries no power
        state: `state` is "". `zones` is not a filter (a VM without zones has none)."""
        url = self._api.url(f"subscriptions/{self.subscription_id}/resources")
        params: dict[str, str] = {
            "$filter": f"tagName eq 'hedgeform-service' and tagValue eq '{self.spec.name}'",
            "api-version": AZURE_RESOURCES_API,
        }
        base = urlsplit(self.arm_url).netloc
        out: list[TaggedInstance] = []
        while True:
            page = self._api.get_json(url, params)
            for item in page.get("value") or []:
                if str(item.get("type", "")).lower() != "microsoft.compute/virtualmachines":
                    continue
                if str(item.get("location", "")).lower() != region.lower():
                    continue
                tags = item.get("tags") or {}
                placed = item.get("zones") or []
                zone = f"{region}-{placed[0]}" if placed else ""
                out.append(
                    TaggedInstance(
                        str(item.get("id", "")),
                        str(item.get("name", "")),
                        zone,
                        "",
                        str(tags.get("hedgeform-replica", "")),
                    )
                )
            link = str(page.get("nextLink") or "")
            if not link:
                break
            if urlsplit(link).netloc != base:
                raise AdapterError(f"Azure Resource Manager: a nextLink off {base}: not followed")
            url, params = link, {}
        return sorted(out, key=lambda i: (i.zone, i.name))

    def power_state(self, replica: ManagedReplica) -> str | None:
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
        replicas: Sequence[ManagedReplica],
        outputs: Mapping[str, Any],
        preempted: set[str],
        first_seen: Mapping[str, float],
        now: float,
    ) -> dict[str, View]:

        def view(r: ManagedReplica) -> View:
            launched = first_seen.get(r.id, now)
            power = self.power_state(r) if r.instance_id else None
            if power in ("starting", "unknown"):
                return ReplicaState.PROVISIONING, launched
            if power == "running" and r.id not in preempted:
                return self._running(r, launched, now), launched
            # gone, deallocated, stopped, or under an eviction notice
            return gone_state(r, preempted, spot_reclaimed=power is None), launched

        return self._each(replicas, view)
