"""`hedgeform signals SERVICE`: what the cloud adapters see right now, for one service.

An inspection tool: it peeks at notices without acknowledging them (the reconciler's queue
is not drained), reads the request rate and spot prices, and prints them. Any adapter error
(credentials, throttling, unknown cloud) is one line on stderr and exit code 1.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from reconciler.clouds.base import PriceSource
from reconciler.clouds.catalog import instance_for
from reconciler.clouds.naming import aws_lb_name, gcp_url_map_name
from reconciler.clouds.prices import CatalogPriceSource
from reconciler.errors import AdapterError, CloudConfigError, NotProvisionedError, SpecError
from reconciler.paths import NAME_RE
from reconciler.policy.signals import Notice
from reconciler.spec import CLOUDS, load_spec
from reconciler.spec.model import ServiceSpec

SERVICE_NAME = NAME_RE


@dataclass
class Target:
    cloud: str
    region: str | None
    zones: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.cloud}/{self.region}" if self.region else self.cloud


@dataclass
class Report:
    notices: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, float | None] = field(default_factory=dict)
    prices: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add_notices(self, target: Target, notices: Sequence[Notice]) -> None:
        for n in notices:
            self.notices.append(
                {
                    "cloud": target.cloud,
                    "kind": n.kind.value,
                    "replica_id": n.replica_id,
                    "zone": n.zone,
                    "at": n.at,
                }
            )

    def to_json(self, service: str) -> dict[str, Any]:
        return {
            "service": service,
            "notices": sorted(self.notices, key=lambda n: (n["at"], n["replica_id"])),
            "metrics": self.metrics,
            "prices": self.prices,
            "notes": self.notes,
        }


def targets_for(spec: ServiceSpec, cloud: str | None, region: str | None) -> list[Target]:
    """The spec's locations on `cloud`/`region`, grouped per (cloud, region)."""
    by_key: dict[tuple[str, str | None], Target] = {}
    for loc in spec.resources.locations:
        loc_cloud = loc.cloud or cloud
        if loc_cloud is None or (cloud is not None and loc_cloud != cloud):
            continue
        if region is not None and loc.region not in (None, region):
            continue
        target = by_key.setdefault(
            (loc_cloud, loc.region or region), Target(loc_cloud, loc.region or region)
        )
        if loc.zone:
            target.zones.append(loc.zone)
    return list(by_key.values())


def instance_type(spec: ServiceSpec, cloud: str) -> str | None:
    """The instance type `plan` renders for this spec on `cloud` (the one catalog,
    clouds/catalog.py `instance_for`), or None when the catalog has none."""
    try:
        return instance_for(cloud, spec.resources.accelerators).instance_type
    except CloudConfigError:
        return None


def _catalog_prices(report: Report, target: Target, spec: ServiceSpec) -> None:
    itype = instance_type(spec, target.cloud)
    if itype is None:
        report.notes.append(f"{target.key}: no catalog instance type for {_wanted(spec)}")
        return
    source = CatalogPriceSource(target.cloud, itype)
    prices = source.spot_prices(target.zones)
    if target.region:
        prices = {z: p for z, p in prices.items() if z.startswith(target.region + "-")}
    report.prices[target.key] = prices
    report.notes.append(f"{target.key}: prices from the static catalog dated {source.as_of}")


def _wanted(spec: ServiceSpec) -> str:
    accelerators = spec.resources.accelerators
    return ", ".join(f"{a.name}:{a.count}" for a in accelerators) or "a CPU replica"


def _optional(report: Report, target: Target, what: str, fn: Callable[[], None]) -> None:
    """Run `fn`; a NotProvisionedError (nothing applied yet) becomes a note, not a failure."""
    try:
        fn()
    except NotProvisionedError as exc:
        report.notes.append(f"{target.key}: {what}: {exc}")


def _aws(report: Report, spec: ServiceSpec, target: Target, endpoint_url: str | None) -> None:
    from reconciler.clouds.aws import signals as aws

    if target.region is None:
        raise AdapterError("an AWS location has no region: pass --region")
    region = target.region

    def notices() -> None:
        sqs = aws.SqsNoticeSource(
            aws.notices_queue_name(spec.name),
            region,
            endpoint_url,
            service=spec.name,
            acknowledge=False,
        )
        report.add_notices(target, sqs.poll())

    _optional(report, target, "notices", notices)
    states = aws.Ec2SpotTerminationSource(region, spec.name, endpoint_url)
    report.add_notices(target, states.poll())
    lb_name = aws_lb_name(spec.name)
    metrics = aws.CloudWatchMetricsSource.for_load_balancer_name(lb_name, region, endpoint_url)
    if metrics is None:
        report.notes.append(f"{target.key}: no load balancer named {lb_name}: request rate unknown")
        report.metrics[target.key] = None
    else:
        report.metrics[target.key] = metrics.request_rate(time.time())
    itype = instance_type(spec, "aws")
    if itype is None:
        report.notes.append(f"{target.key}: no instance type for {_wanted(spec)}")
        return
    prices: PriceSource = aws.AwsSpotPriceSource(itype, region, endpoint_url)
    report.prices[target.key] = prices.spot_prices(target.zones)


def _gcp(report: Report, spec: ServiceSpec, target: Target, endpoint_url: str | None) -> None:
    from reconciler.clouds.gcp import signals as gcp
    from reconciler.clouds.rest import StaticToken, TokenProvider

    tokens: TokenProvider
    env_token = os.environ.get("GOOGLE_OAUTH_ACCESS_TOKEN")
    google = gcp.GoogleAuthTokens()
    tokens = StaticToken(env_token) if env_token else google
    tokens.token()  # fail early, with the credentials hint
    project = (
        os.environ.get("GOOGLE_CLOUD_PROJECT")
        or os.environ.get("CLOUDSDK_CORE_PROJECT")
        or google.project
    )
    if not project:
        raise AdapterError("GCP project unknown: set GOOGLE_CLOUD_PROJECT")
    base = endpoint_url.rstrip("/") if endpoint_url else None
    compute = f"{base}/compute/v1" if base else gcp.COMPUTE_URL
    monitoring = f"{base}/v3" if base else gcp.MONITORING_URL
    source = gcp.GcpPreemptionSource(project, tokens, zones=target.zones or None, base_url=compute)
    notices = source.poll()
    if target.region and not target.zones:
        notices = [n for n in notices if n.zone.startswith(target.region + "-")]
    report.add_notices(target, notices)
    if target.region:
        metrics = gcp.CloudMonitoringMetricsSource(
            project, tokens, url_map=gcp_url_map_name(spec.name, target.region), base_url=monitoring
        )
        report.metrics[target.key] = metrics.request_rate(time.time())
    else:
        report.notes.append(f"{target.key}: no region, so no load balancer: request rate unknown")
        report.metrics[target.key] = None
    _catalog_prices(report, target, spec)


def _azure(report: Report, spec: ServiceSpec, target: Target, endpoint_url: str | None) -> None:
    from reconciler.clouds.azure import signals as azure

    tokens = azure.AzureIdentityTokens()
    tokens.token()
    subscription = os.environ.get("AZURE_SUBSCRIPTION_ID")
    if not subscription:
        raise AdapterError("Azure subscription unknown: set AZURE_SUBSCRIPTION_ID")
    source = azure.AzureEvictionSource(
        subscription, tokens, instances={}, base_url=endpoint_url or azure.ARM_URL
    )
    source.poll()  # checks access; without the VM -> replica map no eviction can be placed
    report.notes.append(
        f"{target.key}: evictions are placed via the reconciler's VM -> replica map "
        "(Terraform state); this command reads the activity log but cannot place them"
    )
    report.metrics[target.key] = None
    report.notes.append(f"{target.key}: Standard LB is layer 4: request rate comes from replicas")
    _catalog_prices(report, target, spec)


def _local(report: Report, target: Target, state_dir: Path | None) -> None:
    from reconciler.sandbox.notice_source import SandboxNoticeSource

    if state_dir is None:
        report.notes.append("local: pass --state-dir (or HEDGEFORM_SANDBOX_STATE_DIR) for notices")
        return
    notices = SandboxNoticeSource(state_dir).poll()
    if target.zones:
        notices = [n for n in notices if n.zone in target.zones]
    report.add_notices(target, notices)


def collect(
    spec: ServiceSpec,
    cloud: str | None,
    region: str | None,
    endpoint_url: str | None,
    state_dir: Path | None = None,
) -> Report:
    targets = targets_for(spec, cloud, region)
    if not targets:
        where = " ".join(x for x in (cloud, region) if x) or "any cloud"
        raise AdapterError(f"service {spec.name} has no location on {where}")
    report = Report()
    for target in targets:
        if target.cloud == "aws":
            _aws(report, spec, target, endpoint_url)
        elif target.cloud == "gcp":
            _gcp(report, spec, target, endpoint_url)
        elif target.cloud == "azure":
            _azure(report, spec, target, endpoint_url)
        elif target.cloud == "local":
            _local(report, target, state_dir)
        else:
            raise AdapterError(f"unknown cloud {target.cloud!r}; known: {', '.join(CLOUDS)}")
    return report


def _fail(message: str) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)


@click.command("signals", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("service")
@click.option("--cloud", type=click.Choice(CLOUDS), help="Only this cloud's locations.")
@click.option("--region", help="Only this region (also the region for locations without one).")
@click.option(
    "--endpoint-url",
    help="Send API calls here (moto, HTTP fakes). AWS: the endpoint; GCP: serves "
    "/compute/v1 and /v3; Azure: the ARM base URL.",
)
@click.option(
    "--services-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("services"),
    show_default=True,
    help="Where <SERVICE>.yaml lives.",
)
@click.option(
    "--state-dir",
    envvar="HEDGEFORM_SANDBOX_STATE_DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="Sandbox state directory, for --cloud local notices.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def signals(
    service: str,
    cloud: str | None,
    region: str | None,
    endpoint_url: str | None,
    services_dir: Path,
    state_dir: Path | None,
    as_json: bool,
) -> None:
    """Show the notices, request rate and spot prices the adapters see for SERVICE.

    Notices are peeked, not acknowledged, so the reconciler still receives them.
    """
    if not SERVICE_NAME.fullmatch(service):
        _fail(f"invalid service name {service!r}: use lowercase letters, digits and '-'")
    try:
        spec = load_spec(services_dir / f"{service}.yaml")
    except SpecError as exc:
        _fail(str(exc))
        return
    try:
        report = collect(spec, cloud, region, endpoint_url, state_dir)
    except AdapterError as exc:
        _fail(str(exc))
        return
    except ValueError as exc:  # a name an API filter would not accept
        _fail(" ".join(str(exc).split()))
        return
    data = report.to_json(spec.name)
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    for notice in data["notices"]:
        click.echo(
            f"notice  {notice['kind']:9} {notice['replica_id']} in {notice['zone']} "
            f"at {notice['at']:.0f} ({notice['cloud']})"
        )
    for key, rate in data["metrics"].items():
        click.echo(f"rate    {key}: " + ("unknown" if rate is None else f"{rate:.2f} req/s"))
    for key, prices in data["prices"].items():
        shown = ", ".join(f"{z} {p:.4g}" for z, p in prices.items()) or "none"
        click.echo(f"prices  {key}: {shown}")
    for note in data["notes"]:
        click.echo(f"note    {note}")
