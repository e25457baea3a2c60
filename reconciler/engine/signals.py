"""`hedgeform signals SERVICE`: what the cloud adapters see right now, for one service.

An inspection tool over the objects the reconciler uses: each real cloud's `CloudApis` from
the registry, built from the same `ProviderSettings` (services/<SERVICE>.settings.yaml and
the environment), the same credential check, and `CloudApis.peek`: notices peeked without
acknowledging them (the reconciler's queue is not drained), the request rate and spot prices,
all without Terraform state. The sandbox is no registered cloud and has its own small reader.
Any error (settings, credentials, throttling, a bad name) is one line on stderr and exit 1.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from reconciler.clouds.apis import CloudApis
from reconciler.clouds.catalog import instance_for_region
from reconciler.clouds.registry import cloud as registered_cloud
from reconciler.clouds.settings import ProviderSettings, load_settings
from reconciler.clouds.settings import endpoint_url as checked_endpoint
from reconciler.errors import BadNameError, CloudConfigError, HedgeformError
from reconciler.paths import NAME_RE, settings_file_beside
from reconciler.policy.signals import Notice
from reconciler.spec import CLOUDS, load_spec
from reconciler.spec.model import ServiceSpec

SANDBOX = "local"  # the spec's name for the sandbox, which the registry does not hold


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


def instance_type(
    spec: ServiceSpec,
    cloud: str,
    region: str | None,
    overrides: Mapping[str, str] | None = None,
) -> str | None:
    """The instance type `plan` renders for this spec in `cloud`/`region` (the one catalog,
    clouds/catalog.py `instance_for_region`, with the settings' `instance_types` overrides),
    or None when the catalog has none."""
    try:
        return instance_for_region(
            spec.resources, cloud, region, overrides, policy=spec.service.replica_policy
        ).instance_type
    except CloudConfigError:
        return None


def _wanted(spec: ServiceSpec) -> str:
    accelerators = spec.resources.accelerators
    return ", ".join(f"{a.name}:{a.count}" for a in accelerators) or "a CPU replica"


def cloud_apis(
    spec: ServiceSpec,
    settings: ProviderSettings,
    targets: Sequence[Target],
    endpoint_url: str | None,
) -> dict[str, CloudApis]:
    """The registry's CloudApis of each real cloud among `targets`, credentials checked in
    their regions (as `ProviderCloud.observe` does before a pass), sent to `endpoint_url`
    when given."""
    apis: dict[str, CloudApis] = {}
    for name in dict.fromkeys(t.cloud for t in targets if t.cloud != SANDBOX):
        api = registered_cloud(name).make_apis(spec, settings)
        if endpoint_url:
            api.use_endpoint(endpoint_url)
        api.check_credentials([t.region for t in targets if t.cloud == name and t.region])
        apis[name] = api
    return apis


def _peek(
    report: Report, spec: ServiceSpec, target: Target, api: CloudApis, itype: str | None
) -> None:
    seen = api.peek(target.region, target.zones, itype, time.time())
    report.add_notices(target, seen.notices)
    report.metrics[target.key] = seen.request_rate
    if seen.prices is not None:
        report.prices[target.key] = seen.prices
    report.notes.extend(f"{target.key}: {note}" for note in seen.notes)
    if itype is None:
        report.notes.append(f"{target.key}: no catalog instance type for {_wanted(spec)}")


def _sandbox(report: Report, target: Target, state_dir: Path | None) -> None:
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
    *,
    settings_file: Path,
    state_dir: Path | None = None,
) -> Report:
    """What every target of `spec` on `cloud`/`region` shows now; `settings_file` (optional,
    overlaid with the environment) is read only when a real cloud is among them."""
    targets = targets_for(spec, cloud, region)
    if not targets:
        where = " ".join(x for x in (cloud, region) if x) or "any cloud"
        raise CloudConfigError(f"service {spec.name} has no location on {where}")
    apis: dict[str, CloudApis] = {}
    overrides: Mapping[str, str] = {}
    if any(t.cloud != SANDBOX for t in targets):
        settings = load_settings(settings_file)
        url = checked_endpoint(endpoint_url or "", "--endpoint-url")  # before any client
        apis = cloud_apis(spec, settings, targets, url)
        overrides = settings.cloud.instance_types
    report = Report()
    for target in targets:
        if target.cloud == SANDBOX:
            _sandbox(report, target, state_dir)
        else:
            itype = instance_type(spec, target.cloud, target.region, overrides)
            _peek(report, spec, target, apis[target.cloud], itype)
    return report


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
    try:
        if not NAME_RE.fullmatch(service):
            raise BadNameError(
                f"invalid service name {service!r}: use lowercase letters, digits and '-'"
            )
        spec = load_spec(services_dir / f"{service}.yaml")
        report = collect(
            spec,
            cloud,
            region,
            endpoint_url,
            settings_file=settings_file_beside(services_dir / f"{service}.yaml"),
            state_dir=state_dir,
        )
    except HedgeformError as exc:
        raise click.ClickException(str(exc)) from None
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
