"""Spot availability traces: one JSON file per zone, `{"metadata": {"gap_seconds": G},
"data": [n0, n1, ...]}`, where `n_t` is how many spot instances the zone could hold at step t.

File names follow the SpotHedge artifact: `<zone>_<gpu>_<count>.json`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.errors import TraceError

if TYPE_CHECKING:  # numpy is imported where arrays are built: the sandbox CLI starts faster
    import numpy as np


@dataclass(frozen=True)
class ZoneTrace:
    zone: str
    gap_seconds: int
    data: tuple[int, ...]
    source: Path

    def per_tick(self, tick_seconds: int) -> np.ndarray:
        """Capacity for every tick: each trace value holds for `gap_seconds / tick_seconds`."""
        if self.gap_seconds % tick_seconds:
            raise TraceError(
                f"{self.source}: gap_seconds {self.gap_seconds} is not a multiple of the "
                f"{tick_seconds} s tick"
            )
        import numpy as np

        return np.repeat(np.asarray(self.data, dtype=np.int64), self.gap_seconds // tick_seconds)


@dataclass(frozen=True)
class TraceSet:
    """The zones of one trace directory, replayed together."""

    name: str
    zones: tuple[ZoneTrace, ...]

    def capacity(self, tick_seconds: int) -> np.ndarray:
        """A (zones x ticks) array, cut to the shortest zone so every tick has every zone."""
        rows = [z.per_tick(tick_seconds) for z in self.zones]
        length = min(len(r) for r in rows)
        import numpy as np

        return np.stack([r[:length] for r in rows])


def zone_name(path: Path) -> str:
    """`us-east-1f_v100_1.json` -> `us-east-1f` (the zone is what precedes the first `_`)."""
    return path.stem.split("_", 1)[0]


def load_zone_trace(path: Path) -> ZoneTrace:
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceError(f"{path}: cannot read trace file ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise TraceError(
            f"{path}: not a trace file (invalid JSON at line {exc.lineno}); expected "
            '{"metadata": {"gap_seconds": N}, "data": [...]}'
        ) from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("data"), list):
        raise TraceError(
            f'{path}: not a trace file; expected {{"metadata": {{"gap_seconds": N}}, '
            '"data": [...]}'
        )
    gap = (
        raw.get("metadata", {}).get("gap_seconds")
        if isinstance(raw.get("metadata"), dict)
        else None
    )
    if not isinstance(gap, int) or isinstance(gap, bool) or gap <= 0:
        raise TraceError(f"{path}: metadata.gap_seconds must be a positive integer, got {gap!r}")
    data = raw["data"]
    if not data:
        raise TraceError(f"{path}: the trace has no data points")
    for i, value in enumerate(data):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise TraceError(f"{path}: data[{i}] must be a non-negative integer, got {value!r}")
    return ZoneTrace(zone=zone_name(path), gap_seconds=gap, data=tuple(data), source=path)


def load_trace_set(directory: Path | str) -> TraceSet:
    directory = Path(directory)
    if not directory.is_dir():
        raise TraceError(f"{directory}: not a directory of trace files")
    files = sorted(p for p in directory.iterdir() if p.suffix == ".json" and p.is_file())
    if not files:
        raise TraceError(f"{directory}: no trace files (*.json) in this directory")
    zones = tuple(load_zone_trace(p) for p in files)
    names = [z.zone for z in zones]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise TraceError(
            f"{directory}: more than one trace file for zone(s) {', '.join(duplicated)}"
        )
    return TraceSet(name=directory.name, zones=zones)
