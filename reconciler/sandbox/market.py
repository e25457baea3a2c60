"""The sandbox spot market: each zone's spot capacity replays a trace at a chosen speed.

Time: only the *trace* is accelerated. `speed=360` maps one trace hour to 10 wall seconds, but
replicas, cold starts, health checks, the reconciler's tick and the preemption warning all run
in wall time, so the reconciler reacts to the warning on a realistic time scale. Scaling the
30 s warning by the speed (to 0.08 s) would make it impossible to act on.

A warning is final, as on AWS: the replica is killed at its deadline even if the trace regains
capacity before then (at high speed a dip can be shorter than the warning).

State under `<state_dir>`:
- `market.json`: trace dir, start (unix time), speed, offset, warning seconds, overrides.
- `preemptions.json`: warned replicas awaiting their deadline (id -> zone, pid, times).
- `notices.jsonl`: append-only notices, one JSON object per line (read with `NoticeFeed`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from reconciler.errors import CapacityError, SandboxError, TraceError
from reconciler.files import write_json_atomic
from reconciler.sandbox import replicas
from reconciler.sandbox.statefiles import (
    append_jsonl,
    check_market,
    check_name,
    file_lock,
    read_json,
)
from reconciler.traces import ZoneTrace, load_trace_set

DEFAULT_TRACE_DIR = Path(__file__).resolve().parent.parent / "data" / "traces" / "sandbox"
DEFAULT_SPEED = 360.0
DEFAULT_WARNING_SECONDS = 30.0


def capacity_at(
    trace: ZoneTrace, start: float, speed: float, now: float, offset_s: float = 0.0
) -> int:
    """Spot capacity of a zone at wall time `now`: a pure function of its arguments.

    Trace time is `offset_s + (now - start) * speed`; the trace loops when it runs out, so a
    sandbox can run for as long as needed.
    """
    trace_seconds = offset_s + max(0.0, now - start) * speed
    step = int(trace_seconds // trace.gap_seconds) % len(trace.data)
    return trace.data[step]


@dataclass(frozen=True)
class MarketConfig:
    trace_dir: str
    start: float
    speed: float = DEFAULT_SPEED
    offset_s: float = 0.0
    warning_seconds: float = DEFAULT_WARNING_SECONDS
    overrides: Mapping[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["overrides"] = dict(self.overrides)
        return data

    @staticmethod
    def from_json(raw: dict[str, Any]) -> MarketConfig:
        return MarketConfig(
            trace_dir=str(raw["trace_dir"]),
            start=float(raw["start"]),
            speed=float(raw.get("speed", DEFAULT_SPEED)),
            offset_s=float(raw.get("offset_s", 0.0)),
            warning_seconds=float(raw.get("warning_seconds", DEFAULT_WARNING_SECONDS)),
            overrides={str(k): int(v) for k, v in dict(raw.get("overrides", {})).items()},
        )


@dataclass(frozen=True)
class MarketNotice:
    """A preemption notice: `warning` at `at` (kill due at `deadline`), then `preempted`."""

    kind: str
    replica_id: str
    zone: str
    at: float
    deadline: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(raw: dict[str, Any]) -> MarketNotice:
        return MarketNotice(
            kind=str(raw["kind"]),
            replica_id=str(raw["replica_id"]),
            zone=str(raw["zone"]),
            at=float(raw["at"]),
            deadline=float(raw["deadline"]),
        )


@dataclass(frozen=True)
class PreemptionReport:
    warned: tuple[MarketNotice, ...] = ()
    preempted: tuple[MarketNotice, ...] = ()


class NoticeFeed:
    """Reads `notices.jsonl` from a cursor (a byte offset), so a consumer sees each notice once.

    Only complete lines are consumed: a line still being written stays for the next read.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def read(self, cursor: int = 0) -> tuple[list[MarketNotice], int]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(cursor)
                data = fh.read()
        except FileNotFoundError:
            return [], cursor
        end = data.rfind(b"\n") + 1
        notices: list[MarketNotice] = []
        for line in data[:end].splitlines():
            # A hand-edited or foreign line is skipped rather than blocking the feed forever.
            with contextlib.suppress(ValueError, KeyError, TypeError):
                notices.append(MarketNotice.from_json(json.loads(line)))
        return notices, cursor + end


def notices_path(state_dir: Path) -> Path:
    return Path(state_dir) / "notices.jsonl"


def market_path(state_dir: Path) -> Path:
    return Path(state_dir) / "market.json"


class SpotMarket:
    """Spot capacity per zone for one sandbox state dir."""

    def __init__(self, state_dir: Path, config: MarketConfig) -> None:
        self.state_dir = Path(state_dir)
        self.config = config
        try:
            traces = load_trace_set(config.trace_dir)
            traces.require_one_type("the sandbox's spot market")
        except TraceError as exc:
            raise SandboxError(str(exc)) from exc
        self.traces: dict[str, ZoneTrace] = {}
        for trace in traces.zones:
            check_name(trace.zone, f"zone (from trace file {trace.source.name})")
            self.traces[trace.zone] = trace

    # -- setup -------------------------------------------------------------------------------

    @classmethod
    def init(
        cls,
        state_dir: Path,
        *,
        now: float,
        trace_dir: Path | str | None = None,
        speed: float = DEFAULT_SPEED,
        offset_s: float = 0.0,
        warning_seconds: float = DEFAULT_WARNING_SECONDS,
        reset: bool = False,
    ) -> SpotMarket:
        """Create `market.json` (the trace clock starts at `now`) unless it exists; `reset`
        replaces it. An existing market keeps its start, so restarts do not rewind the trace."""
        if speed <= 0 or warning_seconds < 0 or offset_s < 0:
            raise SandboxError("speed must be > 0, warning seconds and offset >= 0")
        path = market_path(state_dir)
        with file_lock(Path(state_dir) / ".market.lock"):
            raw = read_json(path)
            if raw is not None and not reset:
                return cls(state_dir, _parse_config(path, raw))
            config = MarketConfig(
                trace_dir=str(Path(trace_dir or DEFAULT_TRACE_DIR).resolve()),
                start=now,
                speed=speed,
                offset_s=offset_s,
                warning_seconds=warning_seconds,
            )
            market = cls(state_dir, config)  # validates the traces before writing
            write_json_atomic(path, config.to_json())
            return market

    @staticmethod
    def load_config(state_dir: Path) -> MarketConfig:
        path = market_path(state_dir)
        raw = read_json(path)
        if raw is None:
            raise SandboxError(
                f"no spot market in {state_dir}: start one with "
                f"`hedgeform sandbox market run --state-dir {state_dir}`"
            )
        return _parse_config(path, raw)

    @classmethod
    def load(cls, state_dir: Path) -> SpotMarket:
        return cls(state_dir, cls.load_config(state_dir))

    @property
    def zones(self) -> list[str]:
        return sorted(self.traces)

    def _check_zone(self, zone: str) -> str:
        check_name(zone, "zone")
        if zone not in self.traces:
            raise SandboxError(
                f"InvalidParameterValue: {zone} is not a sandbox zone "
                f"(zones: {', '.join(self.zones)})"
            )
        return zone

    # -- capacity ----------------------------------------------------------------------------

    def trace_capacity(self, zone: str, now: float) -> int:
        c = self.config
        return capacity_at(self.traces[self._check_zone(zone)], c.start, c.speed, now, c.offset_s)

    def capacity(self, zone: str, now: float) -> int:
        """The override when one is set, else the trace's value at `now`."""
        override = self.config.overrides.get(self._check_zone(zone))
        return override if override is not None else self.trace_capacity(zone, now)

    def set_capacity(self, zone: str, capacity: int | None) -> None:
        """Pin a zone's capacity (tests, demos); None follows the trace again."""
        self._check_zone(zone)
        if capacity is not None and capacity < 0:
            raise SandboxError("capacity must be >= 0")
        path = market_path(self.state_dir)
        with file_lock(self.state_dir / ".market.lock"):
            raw = read_json(path)
            config = _parse_config(path, raw) if raw is not None else self.config
            overrides = dict(config.overrides)
            if capacity is None:
                overrides.pop(zone, None)
            else:
                overrides[zone] = capacity
            self.config = MarketConfig(**{**asdict(config), "overrides": overrides})
            write_json_atomic(path, self.config.to_json())

    @contextlib.contextmanager
    def zone_lock(self, zone: str) -> Iterator[None]:
        """Hold across `try_acquire` and the launch so two launches cannot both take the last
        unit of capacity."""
        with file_lock(self.state_dir / f".zone-{self._check_zone(zone)}.lock"):
            yield

    def spot_in_use(self, zone: str) -> list[replicas.ReplicaRecord]:
        return [
            s.record
            for s in replicas.list_replicas(self.state_dir)
            if s.alive and s.record.zone == zone and s.record.market == "spot"
        ]

    def try_acquire(self, zone: str, market: str, now: float) -> None:
        """Raise `CapacityError` when a spot launch into `zone` would exceed its capacity.
        On-demand always succeeds (in a known zone)."""
        self._check_zone(zone)
        if check_market(market) == "on_demand":
            return
        capacity = self.capacity(zone, now)
        in_use = len(self.spot_in_use(zone))
        if in_use >= capacity:
            raise CapacityError(
                f"InsufficientInstanceCapacity: no spot capacity in zone {zone} "
                f"(capacity {capacity}, in use {in_use})"
            )

    # -- preemption --------------------------------------------------------------------------

    def preemption_check(self, now: float) -> PreemptionReport:
        """Warn the newest spot replicas beyond each zone's capacity, and kill those whose
        warning deadline has passed. Safe to call from several processes (locked)."""
        pending_path = self.state_dir / "preemptions.json"
        feed = notices_path(self.state_dir)
        warned: list[MarketNotice] = []
        preempted: list[MarketNotice] = []
        with file_lock(self.state_dir / ".preempt.lock"):
            pending: dict[str, dict[str, Any]] = dict(read_json(pending_path) or {})
            live = [s.record for s in replicas.list_replicas(self.state_dir) if s.alive]
            live_by_id = {r.replica_id: r for r in live}
            # A pending warning whose replica is gone (stopped by its owner) or was replaced
            # by a new process with the same id is dropped.
            for rid in list(pending):
                rec = live_by_id.get(rid)
                if rec is None or rec.pid != pending[rid].get("pid"):
                    del pending[rid]
            for zone in self.zones:
                spot = [r for r in live if r.zone == zone and r.market == "spot"]
                excess = len(spot) - self.capacity(zone, now)
                need = excess - sum(1 for r in spot if r.replica_id in pending)
                if need <= 0:
                    continue
                fresh = [r for r in spot if r.replica_id not in pending]
                fresh.sort(key=lambda r: (r.launched_at, r.replica_id), reverse=True)
                for rec in fresh[:need]:
                    notice = MarketNotice(
                        "warning", rec.replica_id, zone, now, now + self.config.warning_seconds
                    )
                    pending[rec.replica_id] = {
                        "zone": zone,
                        "pid": rec.pid,
                        "warned_at": now,
                        "deadline": notice.deadline,
                    }
                    append_jsonl(feed, notice.to_json())
                    warned.append(notice)
            for rid, info in sorted(pending.items(), key=lambda kv: float(kv[1]["deadline"])):
                if float(info["deadline"]) > now:
                    continue
                replicas.stop(self.state_dir, rid)
                notice = MarketNotice(
                    "preempted", rid, str(info["zone"]), now, float(info["deadline"])
                )
                append_jsonl(feed, notice.to_json())
                preempted.append(notice)
                del pending[rid]
            write_json_atomic(pending_path, pending)
        return PreemptionReport(tuple(warned), tuple(preempted))

    def pending_warnings(self) -> dict[str, dict[str, Any]]:
        return dict(read_json(self.state_dir / "preemptions.json") or {})

    def status(self, now: float) -> dict[str, Any]:
        c = self.config
        pending = self.pending_warnings()
        live = [s.record for s in replicas.list_replicas(self.state_dir) if s.alive]
        zones = []
        for zone in self.zones:
            in_zone = [r for r in live if r.zone == zone]
            zones.append(
                {
                    "zone": zone,
                    "capacity": self.capacity(zone, now),
                    "trace_capacity": self.trace_capacity(zone, now),
                    "override": c.overrides.get(zone),
                    "spot_running": sum(1 for r in in_zone if r.market == "spot"),
                    "on_demand_running": sum(1 for r in in_zone if r.market == "on_demand"),
                    "warned": sorted(r for r, info in pending.items() if info["zone"] == zone),
                }
            )
        return {
            **c.to_json(),
            "now": now,
            "trace_seconds": c.offset_s + max(0.0, now - c.start) * c.speed,
            "zones": zones,
        }


def _parse_config(path: Path, raw: Any) -> MarketConfig:
    try:
        return MarketConfig.from_json(raw)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SandboxError(f"{path}: corrupt market file ({exc})") from exc
