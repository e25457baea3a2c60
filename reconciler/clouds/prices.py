"""The shipped price catalog (`prices_catalog.json`): a static, dated table, not live prices.

Used where a cloud has no cheap live spot-price API for our purpose (GCP, Azure), keyed by
instance type; which instance type carries an accelerator is the one catalog's answer
(clouds/catalog.py `instance_for`). Its `as_of` date travels with every answer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

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
