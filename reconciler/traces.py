"""Spot availability traces: one JSON file per zone, `{"metadata": {"gap_seconds": G},
"data": [n0, n1, ...]}`, where `n_t` is how many spot instances the zone could hold at step t.

File names follow the SpotHedge artifact: `<zone>_<gpu>_<count>.json`. One directory may hold
several GPU types; two types in one zone are two *pools* (issue 15), each with its own trace.
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
    # From the file name: `us-east-1f_v100_1.json` -> "V100", 1; "" and 0 when it has none.
    accelerator: str = ""
    accelerator_count: int = 0

    @property
    def seconds(self) -> int:
        """How long the trace covers: each value holds for its own `gap_seconds`."""
        return len(self.data) * self.gap_seconds

    def ticks(self, tick_seconds: int) -> int:
        """Ticks (at times 0, tick, 2 tick, ...) that fall inside the trace."""
        return -(-self.seconds // tick_seconds)

    def per_tick(self, tick_seconds: int) -> np.ndarray:
        """Capacity for every tick: tick t (time t * tick_seconds) takes the value in force then.

        Value i holds for [i * gap, (i + 1) * gap), whatever the gap (195 s, 34 s, 300 s...), so
        a drop takes effect at the first tick at or after it. With a gap under one tick, a value
        in force only between two ticks is never seen.
        """
        import numpy as np

        times = np.arange(self.ticks(tick_seconds), dtype=np.int64) * tick_seconds
        values: np.ndarray = np.asarray(self.data, dtype=np.int64)[times // self.gap_seconds]
        return values


@dataclass(frozen=True)
class TraceSet:
    """The zones of one trace directory, replayed together."""

    name: str
    zones: tuple[ZoneTrace, ...]

    @property
    def accelerators(self) -> tuple[str, ...]:
        """The GPU types of the set, in file order (empty if the names carry none)."""
        return tuple(dict.fromkeys(z.accelerator for z in self.zones if z.accelerator))

    @property
    def pools(self) -> tuple[str, ...]:
        """What the policy calls each trace's place: the zone, or `<zone>/<GPU>` when the set
        holds several GPU types (so two types of one zone are two distinct pools)."""
        several = len(self.accelerators) > 1
        return tuple(f"{z.zone}/{z.accelerator}" if several else z.zone for z in self.zones)

    def only(self, accelerator: str) -> TraceSet:
        """The traces of one GPU type, named `<set>/<GPU>`; TraceError if it has none."""
        zones = tuple(z for z in self.zones if z.accelerator == accelerator)
        if not zones:
            have = ", ".join(self.accelerators) or "none named"
            raise TraceError(f"{self.name}: no traces of GPU type {accelerator!r} (have {have})")
        return TraceSet(f"{self.name}/{accelerator}", zones)

    def require_one_type(self, what: str) -> None:
        """TraceError (one line) when the set holds several GPU types and `what` replays one."""
        if len(self.accelerators) > 1:
            raise TraceError(
                f"{self.name}: holds several GPU types ({', '.join(self.accelerators)}); "
                f"{what} replays one type: point it at a directory of one"
            )

    def capacity(self, tick_seconds: int) -> np.ndarray:
        """A (zones x ticks) array over the zones' common span, from their start (`span_note`)."""
        length = min(z.ticks(tick_seconds) for z in self.zones)
        import numpy as np

        return np.stack([z.per_tick(tick_seconds)[:length] for z in self.zones])

    def span_note(self, tick_seconds: int) -> str | None:
        """One line when the zones cover different spans, saying what is dropped; else None.

        Every tick must have every zone, so the set is replayed over the span all zones cover,
        from their common start; the rest of each longer zone is not used.
        """
        lengths = {
            pool: z.ticks(tick_seconds) for pool, z in zip(self.pools, self.zones, strict=True)
        }
        common = min(lengths.values())
        if common == max(lengths.values()):
            return None
        covers = [z.seconds for z in self.zones]
        drops = sorted(((1 - common / n) * 100, zone) for zone, n in lengths.items() if n > common)
        drops.sort(key=lambda d: -d[0])  # the largest first, ties by zone name
        dropped = ", ".join(f"{_percent(pct)} of {zone}" for pct, zone in drops)
        return (
            f"{self.name}: zones cover {_span(min(covers), max(covers))}; using the common "
            f"first {_span(min(covers))} (drops {dropped})"
        )


def _span(*seconds: float) -> str:
    """`9.1-13.2 days`, or hours for spans under two days."""
    day = 86_400.0
    unit, size = ("days", day) if min(seconds) >= 2 * day else ("h", 3_600.0)
    return "-".join(f"{s / size:.1f}" for s in seconds) + f" {unit}"


def _percent(pct: float) -> str:
    return f"{pct:.0f}%" if pct >= 1 else f"{pct:.1f}%"


def zone_name(path: Path) -> str:
    """`us-east-1f_v100_1.json` -> `us-east-1f` (the zone is what precedes the first `_`)."""
    return path.stem.split("_", 1)[0]


def accelerator_of(path: Path) -> tuple[str, int]:
    """`us-east-1f_v100_1.json` -> ("V100", 1); `x_a100_80gb_8.json` -> ("A100-80GB", 8): the
    GPU between the zone and the count, upper-cased, `_` read as `-` (SkyPilot's names).
    ("", 0) when the name has no `<gpu>_<count>` part."""
    parts = path.stem.split("_")
    if len(parts) < 3 or not parts[-1].isdigit() or int(parts[-1]) < 1:
        return "", 0
    return "-".join(parts[1:-1]).upper(), int(parts[-1])


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
    gpu, count = accelerator_of(path)
    return ZoneTrace(
        zone=zone_name(path),
        gap_seconds=gap,
        data=tuple(data),
        source=path,
        accelerator=gpu,
        accelerator_count=count,
    )


def load_trace_set(directory: Path | str) -> TraceSet:
    directory = Path(directory)
    if not directory.is_dir():
        raise TraceError(f"{directory}: not a directory of trace files")
    files = sorted(p for p in directory.iterdir() if p.suffix == ".json" and p.is_file())
    if not files:
        raise TraceError(f"{directory}: no trace files (*.json) in this directory")
    zones = tuple(load_zone_trace(p) for p in files)
    places = [(z.zone, z.accelerator) for z in zones]
    duplicated = sorted({z for z, a in places if places.count((z, a)) > 1})
    if duplicated:
        raise TraceError(
            f"{directory}: more than one trace file for zone(s) {', '.join(duplicated)} "
            "(one per zone and GPU type)"
        )
    return TraceSet(name=directory.name, zones=zones)
