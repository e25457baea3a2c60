"""`hedgeform prices refresh --cloud gcp|azure [--out FILE]`: read the cloud's public price
list for every instance type and region the catalog knows, and write them, each with its
source and the day it was read, into the price catalog (clouds/prices_catalog.json)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import click
import requests

from reconciler.clouds.azure.prices import RETAIL_PRICES_URL, region_prices
from reconciler.clouds.catalog import INSTANCE_TYPES, MACHINE_SIZES, ZONES
from reconciler.clouds.gcp.prices import SKUS_URL, Machine, list_skus, machine_prices
from reconciler.clouds.price_lists import ListedPrice, merged_catalog, write_catalog
from reconciler.clouds.prices import CATALOG_PATH
from reconciler.errors import HedgeformError, InputError, StateError

DEFAULT_KEY_ENV = "HEDGEFORM_GCP_API_KEY"


def gcp_machines() -> list[Machine]:
    """Every GPU machine of the GCP catalog, by its price key (`n1-standard-8+1xT4`)."""
    out = {}
    for choice in INSTANCE_TYPES["gcp"].values():
        size = MACHINE_SIZES["gcp"].get(choice.instance_type)
        if size is None:
            continue
        out[choice.price_key] = Machine(
            choice.price_key, choice.instance_type, size[0], size[1], choice.accelerator,
            choice.count,
        )  # fmt: skip
    return [out[k] for k in sorted(out)]


def fetch(
    cloud: str,
    regions: Sequence[str],
    *,
    api_key: str = "",
    url: str | None = None,
    session: requests.Session | None = None,
) -> dict[str, dict[str, ListedPrice]]:
    """region -> catalog key -> what `cloud`'s price list says. CloudApiError (one line)."""
    session = session or requests.Session()
    if cloud == "azure":
        sizes = sorted({c.instance_type for c in INSTANCE_TYPES["azure"].values()})
        return {
            r: region_prices(r, sizes, session=session, url=url or RETAIL_PRICES_URL)
            for r in regions
        }
    skus = list_skus(api_key, session=session, url=url or SKUS_URL)
    machines = gcp_machines()
    return {r: machine_prices(skus, r, machines) for r in regions}


def refresh_catalog(
    cloud: str,
    out: Path,
    regions: Sequence[str],
    *,
    api_key: str = "",
    url: str | None = None,
    today: str | None = None,
    source: Path = CATALOG_PATH,
) -> tuple[int, int]:
    """Read `cloud`'s price list and write `out` (the catalog at `out` if it exists, else the
    shipped one, with `cloud`'s entries refreshed). Returns (refreshed, kept) entry counts."""
    base = out if out.exists() else source
    try:
        catalog = json.loads(base.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StateError(f"{base}: cannot read the price catalog ({exc})") from None
    listed = fetch(cloud, regions, api_key=api_key, url=url)
    as_of = today or datetime.now(UTC).strftime("%Y-%m-%d")
    data, refreshed = merged_catalog(catalog, cloud, listed, ZONES[cloud], as_of)
    data["as_of"] = as_of
    total = sum(len(t) for t in data["clouds"][cloud]["regions"].values())
    try:
        write_catalog(out, data)
    except OSError as exc:
        raise StateError(f"{out}: cannot write the price catalog ({exc.strerror})") from None
    return refreshed, total - refreshed


@click.group("prices")
def prices() -> None:
    """The price catalog (reconciler/clouds/prices_catalog.json): refresh it from the clouds'
    public price lists."""


@prices.command("refresh")
@click.option("--cloud", type=click.Choice(["gcp", "azure"]), required=True)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write here instead of the shipped catalog (which then stays as it is).",
)
@click.option(
    "--region",
    "regions",
    multiple=True,
    help="Only this region (repeatable); default every region of the catalog.",
)
@click.option(
    "--api-key-env",
    default=DEFAULT_KEY_ENV,
    show_default=True,
    help="GCP only: the environment variable holding a Cloud Billing Catalog API key.",
)
@click.option("--endpoint-url", default=None, hidden=True, help="The price API's URL (tests).")
def refresh(
    cloud: str,
    out: Path | None,
    regions: tuple[str, ...],
    api_key_env: str,
    endpoint_url: str | None,
) -> None:
    """Read the price list of --cloud (Azure: the Retail Prices API, no credentials; GCP:
    the Cloud Billing Catalog API, an API key in --api-key-env) for the catalog's instance
    types, and write each price with its source and today's date. Entries the list has
    nothing for are kept as they were (placeholders stay marked)."""
    try:
        known = ZONES[cloud]
        unknown = [r for r in regions if r not in known]
        if unknown:
            raise InputError(
                f"--region {unknown[0]}: not a {cloud} region of the catalog; known: "
                + ", ".join(sorted(known))
            )
        api_key = ""
        if cloud == "gcp":
            api_key = os.environ.get(api_key_env, "")
            if not api_key:
                raise InputError(
                    f"the GCP price list needs an API key: set {api_key_env} (a key with the "
                    "Cloud Billing API enabled), or name another variable with --api-key-env"
                )
        target = out or CATALOG_PATH
        refreshed, kept = refresh_catalog(
            cloud, target, list(regions) or sorted(known), api_key=api_key, url=endpoint_url
        )
    except HedgeformError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{target}: {refreshed} {cloud} entries refreshed, {kept} kept as they were")
