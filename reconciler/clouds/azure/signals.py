"""Azure signals: spot evictions from the Activity Log, request rate from the replicas.

Evictions: Azure records `Microsoft.Compute/virtualMachines/evictSpotVM/action` (and the
scale-set variant) in the subscription's Activity Log. The event names the VM but not its
zone, and with `eviction_policy = "Delete"` the VM is gone by the time we look, so VMs map to
replicas and zones through `instances` (the reconciler's Terraform state). The in-VM
Scheduled Events `Preempt` (30 s ahead) is only visible from inside the VM and is not read.

Request rate: the Standard Load Balancer is layer 4 and has no HTTP request count, so
`ReplicaMetricsSource` (in `replica_metrics.py`) sums the replicas' own counters instead.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from typing import Any

from reconciler.clouds.base import Clock, InstanceRef, parse_time, rfc3339
from reconciler.clouds.rest import RestClient, TokenProvider
from reconciler.errors import CredentialsError
from reconciler.policy.signals import Notice, NoticeKind

ARM_URL = "https://management.azure.com"
ARM_SCOPE = "https://management.azure.com/.default"
ACTIVITY_LOG_API = "2015-04-01"
CREDENTIALS_HINT = (
    "set AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_CLIENT_SECRET (a service principal), "
    "or run `az login`"
)
# Lower-cased; matched as a suffix so both VMs and scale sets count.
EVICTION_OPERATIONS = ("/evictspotvm/action", "/simulateeviction/action")
_GUID = re.compile(r"[0-9a-fA-F-]{36}")
_RG = re.compile(r"[-\w._()]{1,90}")


class AzureIdentityTokens:
    """Tokens from azure-identity (DefaultAzureCredential unless one is given) for `scope`:
    Resource Manager by default, Blob Storage for the state backend's objects."""

    def __init__(self, credential: Any = None, scope: str = ARM_SCOPE) -> None:
        self._credential = credential
        self._scope = scope
        self._token: str | None = None
        self._expires = 0.0

    def token(self) -> str:
        from azure.core.exceptions import ClientAuthenticationError

        if self._token is not None and time.time() < self._expires - 60:
            return self._token
        # DefaultAzureCredential logs every credential it tried, a dozen lines on stderr, before
        # it raises: the one line below says it all.
        logging.getLogger("azure.identity").setLevel(logging.ERROR)
        try:
            if self._credential is None:
                from azure.identity import DefaultAzureCredential

                self._credential = DefaultAzureCredential()
            access = self._credential.get_token(self._scope)
        except ClientAuthenticationError:  # CredentialUnavailableError is a subclass
            raise CredentialsError(
                f"Azure credentials not found or not usable: {CREDENTIALS_HINT}"
            ) from None
        self._token, self._expires = str(access.token), float(access.expires_on)
        return self._token


class AzureEvictionSource:
    """PREEMPTED notices from Activity Log eviction events of one subscription.

    The Activity Log lags by minutes, so each poll reads the last `lookback` seconds and
    drops events already reported (by correlation id); a VM not in `instances` is skipped,
    since its zone cannot be known after a Delete eviction.
    """

    def __init__(
        self,
        subscription_id: str,
        tokens: TokenProvider,
        *,
        instances: Mapping[str, InstanceRef],
        resource_group: str | None = None,
        base_url: str = ARM_URL,
        lookback: float = 1800.0,
        clock: Clock = time.time,
        **client_options: Any,
    ) -> None:
        if not _GUID.fullmatch(subscription_id):
            raise ValueError(f"invalid Azure subscription id {subscription_id!r}: expected a GUID")
        if resource_group is not None and not _RG.fullmatch(resource_group):
            raise ValueError(f"invalid Azure resource group name {resource_group!r}")
        self.subscription_id = subscription_id
        self.resource_group = resource_group
        # Azure resource names are case-insensitive.
        self.instances = {name.lower(): ref for name, ref in instances.items()}
        self.lookback = lookback
        self._clock = clock
        self._api = RestClient(
            base_url,
            tokens,
            api="Azure Activity Log",
            credentials_hint=CREDENTIALS_HINT,
            **client_options,
        )
        self._seen: dict[str, float] = {}

    def poll(self) -> list[Notice]:
        now = self._clock()
        event_filter = (
            f"eventTimestamp ge '{rfc3339(now - self.lookback)}' "
            f"and eventTimestamp le '{rfc3339(now)}'"
        )
        if self.resource_group is not None:
            event_filter += f" and resourceGroupName eq '{self.resource_group}'"
        params = {
            "api-version": ACTIVITY_LOG_API,
            "$filter": event_filter,
            "$select": "eventTimestamp,operationName,resourceId,status,correlationId,eventDataId",
        }
        url = self._api.url(
            f"subscriptions/{self.subscription_id}/providers/Microsoft.Insights/"
            "eventtypes/management/values"
        )
        notices: dict[str, Notice] = {}
        for page in self._api.pages_by_link(url, params):
            for event in page.get("value") or []:
                notice = self._notice(event, now)
                if notice is not None:
                    notices.setdefault(notice.replica_id, notice)
        cutoff = now - 2 * self.lookback
        self._seen = {k: t for k, t in self._seen.items() if t >= cutoff}
        return sorted(notices.values(), key=lambda n: n.at)

    def _notice(self, event: Mapping[str, Any], now: float) -> Notice | None:
        operation = str((event.get("operationName") or {}).get("value", "")).lower()
        status = str((event.get("status") or {}).get("value", "")).lower()
        if not operation.endswith(EVICTION_OPERATIONS) or status == "failed":
            return None
        resource_id = str(event.get("resourceId") or "")
        # One eviction logs Started/Accepted/Succeeded under one correlation id.
        key = f"{resource_id.lower()}|{event.get('correlationId') or event.get('eventDataId')}"
        if key in self._seen:
            return None
        at = parse_time(event.get("eventTimestamp")) or now
        self._seen[key] = at
        ref = self.instances.get(resource_id.rstrip("/").rsplit("/", 1)[-1].lower())
        if ref is None:
            return None
        return Notice(NoticeKind.PREEMPTED, ref.replica_id, ref.zone, at)
