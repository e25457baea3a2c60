"""GCP's public price list: the Cloud Billing Catalog API (`services.skus.list`, an API key).

GET https://cloudbilling.googleapis.com/v1/services/6F81-5844-456A/skus (Compute Engine)
answers `{"skus": [...], "nextPageToken": ""}`; a SKU has `description` ("Nvidia L4 GPU
running in Americas", "Spot Preemptible G2 Instance Core running in Americas"), `category`
(`resourceFamily` "Compute", `usageType` "OnDemand" or "Preemptible": spot), `serviceRegions`
and `pricingInfo[0].pricingExpression.tieredRates[-1].unitPrice` ({units, nanos}, USD per
`usageUnit`: h for cores and GPUs, GiBy.h for memory).

GCP prices a machine by its parts, so a machine type's price here is vCPUs x its family's
core price + GiB x its RAM price + GPUs x the GPU's price (the sizes from the catalog's
MACHINE_SIZES). Which SKU description names which part (`FAMILIES`, `GPUS`) is our reading
of the descriptions the API publishes; a part with no SKU leaves the type out, never at 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import requests

from reconciler.clouds.price_lists import MAX_PAGES, ListedPrice, get_json
from reconciler.errors import CloudApiError

COMPUTE_SERVICE = "6F81-5844-456A"
SKUS_URL = f"https://cloudbilling.googleapis.com/v1/services/{COMPUTE_SERVICE}/skus"
WHAT = "GCP Cloud Billing Catalog API"

# machine family prefix -> how its core and RAM SKUs are described
FAMILIES = {
    "g2": "G2 Instance",
    "a2": "A2 Instance",
    "a3": "A3 Instance",
    "n1": "N1 Predefined Instance",
}
# catalog accelerator -> how its GPU SKU is described
GPUS = {
    "L4": "Nvidia L4 GPU",
    "A100": "Nvidia Tesla A100 GPU",
    "A100-80GB": "Nvidia Tesla A100 80GB GPU",
    "H100": "Nvidia H100 80GB GPU",
    "T4": "Nvidia Tesla T4 GPU",
    "V100": "Nvidia Tesla V100 GPU",
}


@dataclass(frozen=True)
class Machine:
    """What one catalog entry runs: its key, machine type, vCPUs, GiB and GPUs."""

    key: str  # the catalog key (InstanceChoice.price_key)
    machine_type: str
    vcpus: float
    memory_gib: float
    accelerator: str
    gpus: int


def _unit_price(sku: Mapping[str, object]) -> float:
    try:
        info = sku["pricingInfo"][0]  # type: ignore[index]
        rate = info["pricingExpression"]["tieredRates"][-1]["unitPrice"]
        return int(rate.get("units") or 0) + int(rate.get("nanos") or 0) / 1e9
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        raise CloudApiError(
            f"{WHAT}: unexpected SKU {sku.get('skuId', '?')}: no pricingInfo unit price"
        ) from None


def list_skus(
    api_key: str, *, session: requests.Session | None = None, url: str = SKUS_URL
) -> list[dict[str, object]]:
    """Every Compute Engine SKU, page by page (`pageToken`)."""
    session = session or requests.Session()
    skus: list[dict[str, object]] = []
    token = ""
    for _ in range(MAX_PAGES):
        params = {"key": api_key, "currencyCode": "USD", "pageSize": "5000"}
        if token:
            params["pageToken"] = token
        page = get_json(session, url, params, WHAT)
        got = page.get("skus", [])
        if not isinstance(got, list):
            raise CloudApiError(f"{WHAT}: unexpected answer: 'skus' is not a list")
        skus.extend(s for s in got if isinstance(s, dict))
        next_token = page.get("nextPageToken") or ""
        if not isinstance(next_token, str):
            raise CloudApiError(f"{WHAT}: unexpected answer: 'nextPageToken' is not a string")
        token = next_token
        if not token:
            return skus
    raise CloudApiError(f"{WHAT}: more than {MAX_PAGES} pages")


# Wordings that mark a spot SKU inside its description (the category's usageType,
# "Preemptible", is what decides): removed to find the part it prices.
SPOT_WORDS = (  # the longer first: one may hold another
    " attached to Spot Preemptible VMs",
    " attached to Preemptible VMs",
    "Spot Preemptible ",
    "Preemptible ",
)


def _part_name(description: str) -> str:
    name = description.split(" running in ")[0]
    for words in SPOT_WORDS:
        name = name.replace(words, "")
    return name.strip()


def _parts(skus: Sequence[Mapping[str, object]], region: str) -> dict[tuple[bool, str], float]:
    """(spot, part name) -> USD per unit, for the SKUs of `region` that are plain on-demand
    or spot compute (commitments and the like are other usage types)."""
    out: dict[tuple[bool, str], float] = {}
    for sku in skus:
        category = sku.get("category")
        regions = sku.get("serviceRegions")
        if not isinstance(category, dict) or not isinstance(regions, list):
            continue
        if category.get("resourceFamily") != "Compute" or region not in regions:
            continue
        usage = category.get("usageType")
        if usage not in ("OnDemand", "Preemptible"):
            continue
        out[(usage == "Preemptible", _part_name(str(sku.get("description", ""))))] = _unit_price(
            sku
        )
    return out


def machine_prices(
    skus: Sequence[Mapping[str, object]], region: str, machines: Sequence[Machine]
) -> dict[str, ListedPrice]:
    """On-demand and spot USD/h of each machine in `region` (the sum of its parts); a
    machine whose parts the SKUs do not all price is left out (or its spot price, when only
    a spot part is missing)."""
    parts = _parts(skus, region)
    out: dict[str, ListedPrice] = {}
    for m in machines:
        family = FAMILIES.get(m.machine_type.split("-")[0])
        gpu = GPUS.get(m.accelerator)
        if family is None or gpu is None:
            continue
        names = [(f"{family} Core", m.vcpus), (f"{family} Ram", m.memory_gib), (gpu, m.gpus)]
        prices: list[float | None] = []
        for spot in (False, True):
            found = [parts.get((spot, name)) for name, _ in names]
            prices.append(
                None
                if any(p is None for p in found)
                else sum(p * q for p, (_, q) in zip(found, names, strict=True) if p is not None)
            )
        if prices[0] is None and prices[1] is None:
            continue
        shown = " + ".join(f"{q:g} x {name}" for name, q in names)
        source = f"{SKUS_URL} ({region}: {shown})"
        out[m.key] = ListedPrice(prices[0], prices[1], source)
    return out
