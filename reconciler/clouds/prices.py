"""The shipped price catalog (`prices_catalog.json`): a static, dated table, not live prices.

Used where a cloud has no cheap live spot-price API for our purpose (GCP, Azure), keyed by
instance type; which instance type carries an accelerator is the one catalog's answer
(clouds/catalog.py `instance_for`). Every entry carries its figures' `source` and `as_of`
(`spot_source`, `spot_as_of` where its spot figures come from elsewhere); `source:
placeholder` marks a figure typed in without one (`entry_refs` turns them into
cost.PriceRef). `hedgeform prices refresh` rewrites a cloud's part (clouds/price_refresh.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from reconciler.cost import PLACEHOLDER, PriceRef
from reconciler.errors import AdapterError

CATALOG_PATH = Path(__file__).with_name("prices_catalog.json")


@cache
def load_catalog(path: Path = CATALOG_PATH) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AdapterError(f"price catalog {path} unreadable: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("clouds"), dict):
        raise AdapterError(f"price catalog {path}: expected an object with 'clouds'")
    return data


def catalog_zones(cloud: str, region: str | None, path: Path = CATALOG_PATH) -> list[str]:
    regions: dict[str, Any] = load_catalog(path)["clouds"].get(cloud, {}).get("regions", {})
    zones: set[str] = set()
    for name, types in regions.items():
        if region is None or name == region:
            for entry in types.values():
                zones.update(entry.get("spot", {}))
    return sorted(zones)


@dataclass(frozen=True)
class CatalogPriceSource:
    """PriceSource from the static catalog for one cloud and instance type."""

    cloud: str
    instance_type: str
    path: Path = CATALOG_PATH

    @property
    def as_of(self) -> str:
        return str(load_catalog(self.path).get("as_of", "unknown"))

    def spot_prices(self, zones: Sequence[str]) -> dict[str, float]:
        regions: dict[str, Any] = (
            load_catalog(self.path)["clouds"].get(self.cloud, {}).get("regions", {})
        )
        prices: dict[str, float] = {}
        for types in regions.values():
            entry = types.get(self.instance_type, {})
            for zone, price in entry.get("spot", {}).items():
                if not zones or zone in zones:
                    prices[str(zone)] = float(price)
        return dict(sorted(prices.items()))


def catalog_entry(
    cloud: str, region: str, instance_type: str, path: Path = CATALOG_PATH
) -> dict[str, Any] | None:
    """The catalog's entry for `instance_type`: this region's, else any region's of the
    cloud (the first), else None."""
    regions: dict[str, Any] = load_catalog(path)["clouds"].get(cloud, {}).get("regions", {})
    entry = regions.get(region, {}).get(instance_type)
    if entry is None:
        entry = next((t[instance_type] for t in regions.values() if instance_type in t), None)
    return entry if isinstance(entry, dict) else None


def entry_refs(entry: dict[str, Any], fallback_as_of: str = "unknown") -> tuple[PriceRef, PriceRef]:
    """(on-demand, spot) PriceRef of a catalog entry; an entry without a source is a
    placeholder (the catalog before sources were recorded)."""
    source = str(entry.get("source") or PLACEHOLDER)
    as_of = str(entry.get("as_of") or fallback_as_of)
    spot_source = str(entry.get("spot_source") or source)
    spot_as_of = str(entry.get("spot_as_of") or as_of)
    return (
        PriceRef(source, as_of, placeholder=source == PLACEHOLDER),
        PriceRef(spot_source, spot_as_of, placeholder=spot_source == PLACEHOLDER),
    )
