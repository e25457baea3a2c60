"""Shared part of `hedgeform prices refresh`: one HTTP GET with one-line errors, and the
catalog's part for one cloud built from what a cloud's price list says (clouds/azure/prices.py,
clouds/gcp/prices.py read the lists), written atomically into prices_catalog.json.

A refreshed entry carries `source` (the API and the query) and `as_of` (the day it was read);
an entry the price list had nothing for is kept as it was (a placeholder stays marked).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from reconciler.errors import CloudApiError
from reconciler.files import write_atomic

TIMEOUT_S = 30.0
MAX_PAGES = 200


@dataclass(frozen=True)
class ListedPrice:
    """What a price list says of one instance type in one region, USD per hour."""

    on_demand: float | None
    spot: float | None
    source: str  # the API and the query it answered


def get_json(
    session: requests.Session, url: str, params: Mapping[str, str] | None, what: str
) -> dict[str, Any]:
    """GET `url` and its JSON object; CloudApiError (one line) on a network failure, an HTTP
    error or a body that is not a JSON object. `what` names the API in the message."""
    try:
        response = session.get(url, params=params, timeout=TIMEOUT_S)
    except requests.RequestException as exc:
        # str(exc) holds the whole URL, a GCP API key included: never shown
        raise CloudApiError(f"{what}: cannot reach {url.split('?')[0]}: {_reason(exc)}") from None
    if response.status_code != 200:
        body = " ".join(response.text.split())[:200]
        raise CloudApiError(f"{what}: HTTP {response.status_code} from {url.split('?')[0]}: {body}")
    try:
        data = response.json()
    except ValueError:
        raise CloudApiError(f"{what}: the answer is not JSON") from None
    if not isinstance(data, dict):
        raise CloudApiError(
            f"{what}: unexpected answer: a JSON {type(data).__name__}, not an object"
        )
    return data


_REASONS = (
    ("Failed to resolve", "the name does not resolve"),
    ("Name or service not known", "the name does not resolve"),
    ("Connection refused", "connection refused"),
    ("timed out", "timed out"),
    ("SSL", "TLS failed"),
)


def _reason(exc: requests.RequestException) -> str:
    text = str(exc)
    for marker, reason in _REASONS:
        if marker in text:
            return reason
    return type(exc).__name__


def merged_catalog(
    catalog: Mapping[str, Any],
    cloud: str,
    listed: Mapping[str, Mapping[str, ListedPrice]],
    zones: Mapping[str, tuple[str, ...]],
    as_of: str,
) -> tuple[dict[str, Any], int]:
    """`catalog` with `cloud`'s entries replaced by what the price list says (`listed`:
    region -> catalog key -> price; `zones`: the zones of each region, which share the
    region's spot price). Entries the list had nothing for stay. Returns the new catalog and
    how many entries were refreshed."""
    data = json.loads(json.dumps(catalog))  # a deep copy
    part = data.setdefault("clouds", {}).setdefault(cloud, {})
    regions = part.setdefault("regions", {})
    refreshed = 0
    for region, types in sorted(listed.items()):
        for key, price in sorted(types.items()):
            if price.on_demand is None and price.spot is None:
                continue
            entry: dict[str, Any] = {}
            if price.on_demand is not None:
                entry["on_demand"] = round(price.on_demand, 6)
            entry["spot"] = (
                {}
                if price.spot is None
                else {z: round(price.spot, 6) for z in zones.get(region, ())}
            )
            entry["source"] = price.source
            entry["as_of"] = as_of
            regions.setdefault(region, {})[key] = entry
            refreshed += 1
    return data, refreshed


def write_catalog(path: Path, catalog: Mapping[str, Any]) -> None:
    """Write the catalog atomically (a reader sees the old file or the new one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(catalog, indent=1) + "\n", mode=0o644)
