"""A throughput profile: what each GPU type costs and sustains within the latency SLO (issue 15).

The shape is Mélange's (Griggs et al., arXiv 2404.14527), as `../shared/melange/anchor.json`
records its example configs:

    {"gpus": {"<type>": {"usd_per_hour": 1.01, "max_rps": [[2, 1], [5, 2]]}, ...},
     "distribution": [[0.2, 0.1], [0.5, 0.2]]}

`max_rps[i][j]` is the highest request rate (requests/s) one instance of the type sustains
within the SLO when every request falls in bucket (i, j) (rows: input-length buckets,
columns: output-length buckets); 0 means the type cannot serve that bucket within the SLO.
`distribution[i][j]` is the share of requests in that bucket (the shares sum to 1). A scalar
`max_rps` with no `distribution` is one bucket (the single-bucket fixture's shape).
Errors are `ProfileError`, one line naming the field path.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from reconciler.errors import ProfileError

Grid = tuple[tuple[float, ...], ...]


@dataclass(frozen=True)
class GpuType:
    name: str
    usd_per_hour: float
    max_rps: Grid  # per bucket, requests/s one instance sustains within the SLO


@dataclass(frozen=True)
class Profile:
    gpus: tuple[GpuType, ...]
    distribution: Grid  # share of requests per bucket; sums to 1

    @property
    def buckets(self) -> list[tuple[int, int]]:
        return [(i, j) for i, row in enumerate(self.distribution) for j in range(len(row))]


# A number in exponent form YAML 1.1 reads as a string: its float form needs a dot and a
# signed exponent (`1.0e+7`); JSON reads `1e7` as a number, PyYAML as the text '1e7'.
_EXPONENT_TEXT = re.compile(r"[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+")


def yaml_number_hint(value: object) -> str:
    """`; YAML 1.1 reads 1e7 as text: write 1.0e+7 or 10000000` for a string that is a
    number in an exponent form YAML 1.1 does not take for one (no dot or no sign in the
    exponent); "" for any other value (a quoted '1.0e+7' was meant as text)."""
    if not isinstance(value, str) or not _EXPONENT_TEXT.fullmatch(value):
        return ""
    mantissa, _, exponent = value.replace("_", "").lower().partition("e")
    if "." in mantissa and exponent[0] in "+-":
        return ""
    if "." not in mantissa:
        mantissa += ".0"
    elif mantissa.endswith("."):
        mantissa += "0"
    if exponent[0] not in "+-":
        exponent = "+" + exponent
    written = f"{mantissa}e{exponent}"
    if not math.isfinite(float(written)):
        return ""
    plain = f"{Decimal(written).normalize():f}"
    also = f" or {plain}" if abs(int(exponent)) <= 12 else ""
    return f"; YAML 1.1 reads {value} as text: write {written}{also}"


def _number(value: Any, where: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ProfileError(f"{where}: {value!r} is not a number{yaml_number_hint(value)}")
    if value < 0 or (positive and value == 0):
        raise ProfileError(f"{where}: {value!r} must be {'above' if positive else 'at least'} 0")
    return float(value)


def _grid(value: Any, where: str) -> Grid:
    if not isinstance(value, list) or not value:
        raise ProfileError(f"{where}: expected a non-empty list of rows")
    rows = []
    for i, row in enumerate(value):
        if not isinstance(row, list) or not row:
            raise ProfileError(f"{where}[{i}]: expected a non-empty list of numbers")
        rows.append(tuple(_number(x, f"{where}[{i}][{j}]") for j, x in enumerate(row)))
    return tuple(rows)


def parse_profile(data: Any, where: str = "profile") -> Profile:
    """A Profile from its JSON/YAML form (module docstring); ProfileError names the field."""
    if not isinstance(data, Mapping):
        raise ProfileError(f"{where}: expected a mapping with 'gpus' (and 'distribution')")
    gpus_raw = data.get("gpus")
    if not isinstance(gpus_raw, Mapping) or not gpus_raw:
        raise ProfileError(f"{where}.gpus: expected a mapping of GPU type to its figures")
    unknown = sorted(set(data) - {"gpus", "distribution", "about"})
    if unknown:
        raise ProfileError(f"{where}.{unknown[0]}: unknown field (expected gpus, distribution)")
    for name, raw in gpus_raw.items():
        if not isinstance(raw, Mapping):
            raise ProfileError(
                f"{where}.gpus.{name}: expected a mapping with usd_per_hour and max_rps"
            )
    scalar = any(not isinstance(g.get("max_rps"), list) for g in gpus_raw.values())
    if "distribution" in data:
        distribution = _grid(data["distribution"], f"{where}.distribution")
    elif scalar:
        distribution = ((1.0,),)
    else:
        raise ProfileError(f"{where}.distribution: missing (needed with per-bucket max_rps)")
    total = sum(sum(row) for row in distribution)
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        raise ProfileError(f"{where}.distribution: the shares sum to {total:g}, not 1")
    shape = [len(row) for row in distribution]
    gpus = []
    for name, raw in gpus_raw.items():
        at = f"{where}.gpus.{name}"
        extra = sorted(set(raw) - {"usd_per_hour", "max_rps"})
        if extra:
            raise ProfileError(f"{at}.{extra[0]}: unknown field (expected usd_per_hour, max_rps)")
        if "usd_per_hour" not in raw or "max_rps" not in raw:
            missing = "usd_per_hour" if "usd_per_hour" not in raw else "max_rps"
            raise ProfileError(f"{at}.{missing}: missing")
        price = _number(raw["usd_per_hour"], f"{at}.usd_per_hour", positive=True)
        rps = raw["max_rps"]
        grid = (
            _grid(rps, f"{at}.max_rps")
            if isinstance(rps, list)
            else ((_number(rps, f"{at}.max_rps"),),)
        )
        if [len(row) for row in grid] != shape:
            raise ProfileError(
                f"{at}.max_rps: {len(grid)} rows of {[len(r) for r in grid]} buckets, but the "
                f"distribution has {len(shape)} rows of {shape}"
            )
        gpus.append(GpuType(str(name), price, grid))
    return Profile(tuple(gpus), distribution)
