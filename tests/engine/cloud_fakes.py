"""Shared pieces of the cloud-backend tests: a temp project root holding llama-cloud, settings,
and a CloudApis made of the adapters' in-memory fakes."""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reconciler.clouds import CloudSettings
from reconciler.clouds.apis import Peek, View
from reconciler.clouds.fakes import FakeMetricsSource, FakeNoticeSource, FakePriceSource
from reconciler.clouds.settings import ProviderSettings
from reconciler.policy import Notice, ReplicaState
from reconciler.stacks import ManagedReplica

REPO = Path(__file__).resolve().parents[2]
SERVICE = "llama-cloud"
SENTINEL = "hf_SENTINEL_never_rendered_0123456789"
AMI = "ami-0123456789abcdef0"


def make_root(tmp_path: Path) -> Path:
    (tmp_path / "services").mkdir()
    shutil.copy(REPO / "services" / "llama-cloud.yaml", tmp_path / "services" / f"{SERVICE}.yaml")
    (tmp_path / "terraform").symlink_to(REPO / "terraform")
    return tmp_path


def settings(*, dns: bool = True) -> ProviderSettings:
    return ProviderSettings(
        cloud=CloudSettings(images={"aws:us-east-1": AMI}, gcp_project="hedgeform-test"),
        domain_name="llama.example.com" if dns else "",
        zone_id="Z0123456789ABC" if dns else "",
        source="services/llama-cloud.settings.yaml",
    )


class FakeApis:
    """A CloudApis over the adapters' fakes; replicas default to READY."""

    def __init__(self, prices: Mapping[str, float] | None = None) -> None:
        self.notice_source = FakeNoticeSource()
        self.metrics = FakeMetricsSource(0.0)
        self.prices = FakePriceSource(prices or {})
        self.state: dict[str, ReplicaState] = {}
        self.credentials_error: Exception | None = None
        self.calls: list[str] = []

    def check_credentials(self, regions: Sequence[str]) -> None:
        self.calls.append("credentials")
        if self.credentials_error is not None:
            raise self.credentials_error

    def notices(
        self, region: str, zones: Sequence[str], replicas: Sequence[ManagedReplica], consume: bool
    ) -> list[Notice]:
        self.calls.append("notices")
        return self.notice_source.poll()

    def request_rate(
        self,
        region: str,
        outputs: Mapping[str, Any],
        replicas: Sequence[ManagedReplica],
        now: float,
    ) -> float | None:
        self.calls.append("request_rate")
        return self.metrics.request_rate(now)

    def spot_prices(
        self, region: str, instance_type: str, zones: Sequence[str]
    ) -> dict[str, float]:
        self.calls.append("spot_prices")
        return self.prices.spot_prices(zones)

    def peek(
        self, region: str | None, zones: Sequence[str], instance_type: str | None, now: float
    ) -> Peek:
        self.calls.append("peek")
        return Peek(
            self.notice_source.poll(),
            self.metrics.request_rate(now),
            self.prices.spot_prices(zones) if instance_type else None,
        )

    def use_endpoint(self, url: str) -> None:
        self.calls.append("use_endpoint")

    def states(
        self,
        region: str,
        replicas: Sequence[ManagedReplica],
        outputs: Mapping[str, Any],
        preempted: set[str],
        first_seen: Mapping[str, float],
        now: float,
    ) -> dict[str, View]:
        self.calls.append("states")
        return {r.id: (self.state.get(r.id, ReplicaState.READY), now - 60) for r in replicas}


def aws_state_file(
    replicas: Mapping[str, tuple[str, str, str]], outputs: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A Terraform 1.0 state of the aws module: replica id -> (instance id, zone, market)."""
    instances = [
        {
            "index_key": rid,
            "schema_version": 1,
            "attributes": {
                "id": iid,
                "availability_zone": zone,
                "private_ip": "10.0.0.1",
                "instance_market_options": (
                    [{"market_type": "spot", "spot_options": []}] if market == "spot" else []
                ),
                "tags": {"hedgeform:replica": rid, "hedgeform:market": market},
            },
        }
        for rid, (iid, zone, market) in replicas.items()
    ]
    return {
        "version": 4,
        "terraform_version": "1.0.3",
        "serial": 1,
        "lineage": "test",
        "outputs": {"stack": {"value": dict(outputs or {}), "type": "object", "sensitive": True}},
        "resources": [
            {
                "module": "module.stack",
                "mode": "managed",
                "type": "aws_instance",
                "name": "replica",
                "provider": 'module.stack.provider["registry.terraform.io/hashicorp/aws"]',
                "instances": instances,
            }
        ],
    }
