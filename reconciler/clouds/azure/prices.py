"""Azure's public price list: the Retail Prices API (no authentication, OData `$filter`).

https://prices.azure.com/api/retail/prices answers `{"BillingCurrency", "Items": [...],
"NextPageLink": url or null, "Count"}`; an item has `armRegionName`, `armSkuName`
(`Standard_NC4as_T4_v3`), `skuName` / `meterName` (` Spot` and ` Low Priority` suffixes
mark those markets), `productName` (`... Series Windows` for Windows), `type`
(`Consumption` is pay-as-you-go), `unitOfMeasure` (`1 Hour`) and `retailPrice` (USD).
Linux pay-as-you-go and Linux spot, per hour, is what the catalog needs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import requests

from reconciler.clouds.price_lists import MAX_PAGES, ListedPrice, get_json
from reconciler.errors import CloudApiError

RETAIL_PRICES_URL = "https://prices.azure.com/api/retail/prices"
WHAT = "Azure Retail Prices API"


def retail_filter(region: str, sizes: Iterable[str]) -> str:
    """The OData filter for the VM sizes' consumption prices in one region."""
    skus = " or ".join(f"armSkuName eq '{s}'" for s in sorted(set(sizes)))
    return (
        f"serviceName eq 'Virtual Machines' and priceType eq 'Consumption' "
        f"and armRegionName eq '{region}' and ({skus})"
    )


def _items(session: requests.Session, url: str, flt: str) -> list[dict[str, object]]:
    items: list[dict[str, object]] = []
    next_url: str | None = url
    params: dict[str, str] | None = {"$filter": flt, "currencyCode": "USD"}
    for _ in range(MAX_PAGES):
        if next_url is None:
            return items
        page = get_json(session, next_url, params, WHAT)
        got = page.get("Items")
        if not isinstance(got, list):
            raise CloudApiError(f"{WHAT}: unexpected answer: no 'Items' list")
        items.extend(i for i in got if isinstance(i, dict))
        link = page.get("NextPageLink")
        if link is not None and not isinstance(link, str):
            raise CloudApiError(f"{WHAT}: unexpected answer: 'NextPageLink' is not a URL")
        next_url, params = link or None, None  # the link carries the query
    raise CloudApiError(f"{WHAT}: more than {MAX_PAGES} pages; narrow the query")


def region_prices(
    region: str,
    sizes: Sequence[str],
    *,
    session: requests.Session | None = None,
    url: str = RETAIL_PRICES_URL,
) -> dict[str, ListedPrice]:
    """Linux pay-as-you-go and spot USD/h of each VM size in `region`, by size; a size the
    list has no Linux price for is left out."""
    flt = retail_filter(region, sizes)
    items = _items(session or requests.Session(), url, flt)
    on_demand: dict[str, tuple[str, float]] = {}  # size -> (effectiveStartDate, price)
    spot: dict[str, tuple[str, float]] = {}
    for item in items:
        try:
            size = str(item["armSkuName"])
            price = float(item["retailPrice"])  # type: ignore[arg-type]
            sku = str(item.get("skuName") or item.get("meterName") or "")
            product = str(item.get("productName", ""))
            unit = str(item.get("unitOfMeasure", "1 Hour"))
        except (KeyError, TypeError, ValueError):
            raise CloudApiError(
                f"{WHAT}: unexpected item (no armSkuName or retailPrice): {str(item)[:120]}"
            ) from None
        if size not in sizes or item.get("armRegionName", region) != region:
            continue
        if product.endswith("Windows") or unit != "1 Hour" or "Low Priority" in sku:
            continue
        if item.get("type", "Consumption") != "Consumption":
            continue
        table = spot if sku.endswith(" Spot") else on_demand
        start = str(item.get("effectiveStartDate", ""))
        if size not in table or start >= table[size][0]:  # the newest price in effect
            table[size] = (start, price)
    source = f"{url}?$filter={flt}"
    return {
        size: ListedPrice(
            on_demand[size][1] if size in on_demand else None,
            spot[size][1] if size in spot else None,
            source,
        )
        for size in sizes
        if size in on_demand or size in spot
    }
