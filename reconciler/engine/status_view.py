"""What `hedgeform status` shows: a service line, a replica table and the last events.

The events are read back from the tick log (`state/<service>/ticks.jsonl`, one record per
tick, engine/observability.py): launches (an on-demand one is a *fallback*), preemption
warnings and preemptions,
failed verdicts (FAILED_PROBING, FAILED_INITIAL_DELAY, a crash), capacity refusals,
terminations and rollout steps, each with the reason the tick recorded. Only the tail of
the file is read (`TAIL_BYTES`), so a log of months costs what a log of a day does.

What a preemption cost: each on-demand fallback is priced from the log by reconciler/cost.py's
rule (`spell_cost`: its pool's price for as long as it was alive, launch to termination, or
to now while it runs); each fallback names the losses it covers, and each warning,
preemption or failed verdict the fallbacks launched for it and their sum
(`attribute_covers`). Every figure is in the unit of the prices: USD on clouds, the
sandbox's nominal units there (`unit`, never shown as `$`).

`derive_events`, `priced_covers`, `availability` and `view_json` are pure (records and `now`
in, data out); `collect` observes the service (the same look `status` always took) and
reads the log; `from_state` shows a service whose service file cannot be used from its state
alone (the record, the log, on the sandbox its Terraform states, processes and HAProxy).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler import readiness
from reconciler.backends.sandbox import SandboxCloud, SandboxSettings, prices_line
from reconciler.cost import (
    UNIT_NOMINAL,
    UNIT_USD,
    amount,
    nominal_prices,
    spell_cost,
    tick_rate,
)
from reconciler.engine.reconcile import Reconciler
from reconciler.engine.state_store import (
    DESTROYED_FILE,
    DESTROYING_FILE,
    Record,
    last_destroyed_at,
    previous_destroyed_at,
)
from reconciler.errors import SandboxError
from reconciler.paths import ServicePaths
from reconciler.policy import Market, Memory, Observation, Replica, ReplicaState, ZoneOffer
from reconciler.policy.rollout import current_version
from reconciler.sandbox import replicas as sandbox_replicas
from reconciler.spec.fingerprint import spec_for_part
from reconciler.stacks import ManagedReplica, in_pools

TAIL_BYTES = 2 * 1024 * 1024  # the last 2 MiB of ticks.jsonl: thousands of ticks
AVAILABILITY_WINDOW_S = 3600.0
TICKS_FILE = "ticks.jsonl"
SANDBOX_DIR = "sandbox"  # state/<service>/sandbox: the local sandbox cloud's files
EVENT_KINDS = (
    "warning",
    "launch",
    "fallback",
    "preemption",
    "failed",
    "capacity",
    "terminate",
    "rollout",
    "error",
)
# A `tick decided` record no outcome names: a later pass ran, so it was cut short; or it is
# the log's last pass record, so it may also be applying now.
INTERRUPTED = (
    "tick interrupted before its outcome was recorded (killed while applying): its launches "
    "and terminations may or may not have happened; the next tick observed what was left"
)
UNFINISHED = (
    "tick interrupted before its outcome was recorded, or still applying: its launches and "
    "terminations may or may not have happened yet"
)
_VERDICT = re.compile(r"^(\S+) (FAILED\w*|PREEMPTED): (.*)$")
_TS_FORMAT = "%Y-%m-%d %H:%M:%S,%f"  # python-json-logger's asctime, local time


@dataclass(frozen=True)
class Event:
    """One thing that happened to the service, as the tick log recorded it. `at`: unix
    seconds of the tick (None when the record had no readable time); `replica`, `zone`,
    `market`: "" when the event concerns no one replica."""

    at: float | None
    tick: int | None
    kind: str
    replica: str
    zone: str
    market: str
    reason: str
    # A launch's price now (the offer of its zone and market; `collect` fills it in): what
    # a preemption's replacement or a fallback costs. None: unknown, or not a launch.
    usd_per_hour: float | None = None
    # What it cost (`priced_covers`), in the view's unit: a fallback, its on-demand cover
    # (`usd_per_hour` x `hours` alive); a warning, preemption or failure, the sum of the
    # fallbacks launched for it (`covered_by`). None: not priced, or unknown (a price or
    # an end the log lacks).
    hours: float | None = None
    cost: float | None = None
    running: bool = False  # the cover still runs: `hours` and `cost` are so far
    covered_by: tuple[str, ...] = ()  # a loss's covers: the fallbacks launched for it
    covers: tuple[str, ...] = ()  # a fallback's losses: the replicas it was launched for

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["covered_by"] = list(self.covered_by)
        out["covers"] = list(self.covers)
        return out


@dataclass(frozen=True)
class ReplicaRow:
    """One replica of the table. `probe`/`probe_ms`: the readiness probe `status` sent it
    now ("-"/None where this backend cannot probe from here); `usd_per_hour`: its offer's
    price (None: unknown); `reason`: why it last changed (its latest event)."""

    id: str
    zone: str
    market: str
    accelerator: str
    version: int
    state: str
    age_s: float
    in_lb: bool
    probe: str
    probe_ms: float | None
    usd_per_hour: float | None
    reason: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StatusView:
    service: str
    version: int | None  # the version the fleet runs or moves to; None before any
    version_detail: str  # `v4 (rolling), last ready v3`, as `hedgeform history` says it
    target: int | None
    ready: int
    endpoint: str
    usd_per_hour: float | None
    availability_1h: float | None
    replicas: tuple[ReplicaRow, ...]
    events: tuple[Event, ...]
    notes: tuple[str, ...] = ()  # health lines, held changes, lease: said under the table
    nominal: bool = False  # priced by the sandbox's nominal price list: not dollars
    destroyed_at: float | None = None  # `hedgeform destroy` ended (unix s); None: it exists
    events_asked: int = 15  # `--events N`: with 0, no events are shown, nor missed
    # What the sandbox's prices are (backends/sandbox.py `prices_line`: its own list, or each
    # GPU type's AWS list price); "" when not known (`NOMINAL_NOTE` says the unit alone).
    prices: str = ""
    # Without a usable service file (`from_state`): the price per hour is the last tick's,
    # recorded at this time (unix s; None: priced now), and `unread` says why the file could
    # not be used and what needs it ("" when it was read).
    rate_at: float | None = None
    unread: str = ""

    @property
    def unit(self) -> str:
        """The unit of every price and cost of the view (as `hedgeform cost --json` says)."""
        return UNIT_NOMINAL if self.nominal else UNIT_USD

    def to_json(self) -> dict[str, Any]:
        """The `--json` shape (docs/operations.md, "Status")."""
        return {
            "service": self.service,
            "unit": self.unit,
            "destroyed_at": self.destroyed_at,
            "version": self.version,
            "version_detail": self.version_detail,
            "target": self.target,
            "ready": self.ready,
            "endpoint": self.endpoint,
            "usd_per_hour": self.usd_per_hour,
            "availability_1h": self.availability_1h,
            "replicas": [r.to_json() for r in self.replicas],
            "events": [e.to_json() for e in self.events],
            "notes": [self.unread, *self.notes] if self.unread else list(self.notes),
        }


def read_tail(path: Path, max_bytes: int = TAIL_BYTES) -> list[dict[str, Any]]:
    """The JSON records of the last `max_bytes` of a JSON-lines file, oldest first; a line
    cut by the window's start, or one that is not a JSON object, is skipped. [] when the
    file does not exist."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            start = max(0, size - max_bytes)
            fh.seek(start)
            data = fh.read(size - start)
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")
    if start > 0:
        lines = lines[1:]  # the first one is cut
    out: list[dict[str, Any]] = []
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def this_life(records: Iterable[Mapping[str, Any]], since: float | None) -> list[Mapping[str, Any]]:
    """The records written after `since` (the service's last destroy: state_store
    `last_destroyed_at`; None: all of them). A replica id can be reused by the next life;
    what an earlier life's replica did is not this one's history. A record without a
    readable time cannot be placed and is left out when there is a `since`."""
    if since is None:
        return list(records)
    return [r for r in records if (at := record_time(r)) is not None and at > since]


def record_time(record: Mapping[str, Any]) -> float | None:
    """Unix seconds of a tick-log record (its `ts`, local time as the logger wrote it)."""
    raw = record.get("ts")
    if not isinstance(raw, str):
        return None
    try:
        return datetime.strptime(raw, _TS_FORMAT).timestamp()
    except ValueError:
        return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def derive_events(records: Iterable[Mapping[str, Any]]) -> list[Event]:
    """Events in the order they happened, from tick-log records (module docstring). A
    preemption reported twice (the notice, then the clean-up) is one event; so is a failed
    verdict (the reason, then the clean-up); a rollout step only when it changes."""
    events: list[Event] = []
    preempted: set[str] = set()
    failed: set[str] = set()
    rollout: str | None = None
    records = list(records)
    # A pass that announced its decision (`tick decided`) has its outcome under the same
    # `pass`: the outcome tells all; an announced decision without one was interrupted.
    outcome = {
        str(r["pass"]): r.get("message")
        for r in records
        if r.get("message") in ("tick", "tick failed") and r.get("pass")
    }
    passes = [i for i, r in enumerate(records) if r.get("message") in ("tick", "tick decided")]
    for i, record in enumerate(records):
        at, tick = record_time(record), _int(record.get("tick"))
        message = record.get("message")
        if message == "tick decided" and outcome.get(str(record.get("pass"))) != "tick":
            raw = _tick_events({"decision": record.get("decided")}, preempted, failed)
            if str(record.get("pass")) not in outcome:
                raw.append(("error", "", "", "", INTERRUPTED if i < passes[-1] else UNFINISHED))
            events.extend(Event(at, tick, *fields) for fields in raw)
        elif message == "tick failed":
            events.append(Event(at, tick, "error", "", "", "", str(record.get("error", ""))))
        elif message == "tick":
            raw = _tick_events(record, preempted, failed)
            step = record.get("rollout")
            step = step if isinstance(step, str) and step else None
            if step is not None and step != rollout:
                raw.append(("rollout", "", "", "", step))
            rollout = step
            events.extend(Event(at, tick, *fields) for fields in raw)
    return _placed(events)


def _placed(events: list[Event]) -> list[Event]:
    """Events that name no zone (a verdict in the decision's reasons) take their replica's
    zone and market from another event of it (its launch, its termination)."""
    where = {e.replica: (e.zone, e.market) for e in events if e.replica and e.zone}
    return [
        replace(e, zone=where[e.replica][0], market=e.market or where[e.replica][1])
        if not e.zone and e.replica in where
        else e
        for e in events
    ]


_Fields = tuple[str, str, str, str, str]  # kind, replica, zone, market, reason


def _tick_events(record: Mapping[str, Any], preempted: set[str], failed: set[str]) -> list[_Fields]:
    """One tick record's events (`derive_events`); `preempted` and `failed`: the replicas
    already reported so, updated."""
    decision = _dict(record.get("decision"))
    inputs = _dict(record.get("inputs"))
    out: list[_Fields] = []
    for notice in _dicts(inputs.get("notices")):
        rid = str(notice.get("replica", ""))
        if notice.get("kind") == "warning":
            out.append(("warning", rid, str(notice.get("zone", "")), "spot", "preemption warning"))
        if notice.get("kind") == "preempted" and rid not in preempted:
            preempted.add(rid)
            out.append(
                ("preemption", rid, str(notice.get("zone", "")), "spot", "preemption notice")
            )
    for reason in _strings(decision.get("reasons")):
        match = _VERDICT.match(reason)
        if match is None:
            continue
        rid, state, why = match.groups()
        if state == "PREEMPTED" and rid not in preempted:
            preempted.add(rid)
            out.append(("preemption", rid, "", "", why))
        elif state != "PREEMPTED" and rid not in failed:
            failed.add(rid)
            out.append(("failed", rid, "", "", f"{state}: {why}"))
    for x in _dicts(decision.get("terminations")):
        rid, reason = str(x.get("id", "")), str(x.get("reason", ""))
        zone, market = str(x.get("zone", "")), str(x.get("market", ""))
        if reason == "clean up PREEMPTED" and rid not in preempted:
            preempted.add(rid)
            out.append(("preemption", rid, zone, market, "the cloud reclaimed it"))
        elif reason.startswith("clean up FAILED") and rid not in failed:
            failed.add(rid)
            out.append(("failed", rid, zone, market, reason.removeprefix("clean up ")))
        out.append(("terminate", rid, zone, market, reason))
    launches = {str(x.get("id", "")): x for x in _dicts(decision.get("launches"))}
    for rid, x in launches.items():
        reason, market = str(x.get("reason", "")), str(x.get("market", ""))
        fallback = market == Market.ON_DEMAND.value and "fallback" in reason
        out.append(
            ("fallback" if fallback else "launch", rid, str(x.get("zone", "")), market, reason)
        )
    details = _dict(record.get("launch_failure_reasons"))
    for outcome in _dict(record.get("stacks")).values():
        for rid, kind in _dict(_dict(outcome).get("launch_failures")).items():
            where = launches.get(rid, {})
            detail = str(details.get(rid, "")) or "the launch failed"
            out.append(
                (
                    "capacity" if kind == "capacity" else "failed",
                    str(rid),
                    str(where.get("zone", "")),
                    str(where.get("market", "")),
                    f"{kind}: {detail}",
                )
            )
    return out


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [x for x in value if isinstance(x, dict)] if isinstance(value, list) else []


def _strings(value: Any) -> list[str]:
    return [x for x in value if isinstance(x, str)] if isinstance(value, list) else []


def ready_in_lb(record: Mapping[str, Any]) -> int | None:
    """Ready replicas in the load balancer after a tick: its READY replicas that are members
    (`inputs.ready`, recorded since issue 17), else every READY replica counted (older
    records); None for a record that is not a tick's."""
    if record.get("message") != "tick":
        return None
    decision = record.get("decision")
    inputs = record.get("inputs")
    if not isinstance(decision, dict) or not isinstance(inputs, dict):
        return None
    ready = inputs.get("ready")
    if isinstance(ready, list):
        return len(set(_strings(ready)) & set(_strings(decision.get("lb_members"))))
    counts = inputs.get("replicas")
    if not isinstance(counts, dict):
        return None
    return sum(_int(n) or 0 for k, n in counts.items() if str(k).endswith("/READY"))


def availability(
    records: Iterable[Mapping[str, Any]], now: float, window_s: float = AVAILABILITY_WINDOW_S
) -> float | None:
    """Share of the ticks in the last `window_s` seconds after which the ready replicas in
    the load balancer were at least the target; a failed tick counts as unavailable. None
    without any tick in the window (no loop ran)."""
    good = total = 0
    for record in records:
        at = record_time(record)
        if at is None or not now - window_s <= at <= now + 60:
            continue
        if record.get("message") == "tick failed":
            total += 1
            continue
        ready = ready_in_lb(record)
        decision = record.get("decision")
        target = _int(decision.get("target")) if isinstance(decision, dict) else None
        if ready is None or target is None:
            continue
        total += 1
        good += ready >= target
    return good / total if total else None


def _replica_price(replica: Replica, offers: Mapping[str, ZoneOffer]) -> float | None:
    """The price the policy was given for the replica's pool and market (None: no offer
    prices it). With reconciler/cost.py's billing rule (a replica bills while alive) the
    total is `hedgeform cost`'s; `hedgeform cost` also shows each price's source and date."""
    offer = offers.get(replica.zone)
    if offer is None:
        return None
    return offer.spot_price if replica.market is Market.SPOT else offer.on_demand_price


def _priced(event: Event, offers: Mapping[str, ZoneOffer]) -> Event:
    """A launch or fallback event with its zone and market's price now (`_replica_price`)."""
    if event.kind not in ("launch", "fallback") or event.zone not in offers:
        return event
    offer = offers[event.zone]
    price = offer.on_demand_price if event.market == Market.ON_DEMAND.value else offer.spot_price
    return replace(event, usd_per_hour=price)


LOSSES = ("warning", "preemption", "failed")  # events an on-demand cover may be launched for


def is_loss(event: Event) -> bool:
    """A replica lost or about to be: a preemption warning, a preemption, a FAILED_* verdict
    (not a launch that failed: nothing served there yet)."""
    if event.kind == "failed":
        return event.reason.startswith("FAILED")
    return event.kind in LOSSES


def attribute_covers(events: Sequence[Event]) -> dict[int, tuple[int, ...]]:
    """Which losses each fallback covers: index of a fallback -> indices of the losses
    (`is_loss`) it was launched for. The rule (docs/operations.md, "Status"):

    1. The losses of the fallback's own tick: a loss's tick is the one that saw it, and the
       one whose decision cleaned its replica up (`terminate ... clean up FAILED_PROBING`):
       the policy launches a cover beside the replacement in the tick that sees a
       preemption, and in the tick that stops a failed replica (a warning's cover is also
       its preemption's, `priced_covers`).
    2. Of those, the ones in the fallback's zone when there are any (a cover in the lost
       replica's pool), else all of them (the policy asked for on-demand capacity, not for
       a pool).
    A fallback launched in a tick without a loss covers none by name: the spec's spot share,
    spot not ready yet, or a replica whose probes fail before its verdict; its line keeps
    the policy's reason (`1 ready spot of 3`). (An earlier rule, the latest tick with a
    loss, credited such covers to losses minutes before.)"""
    cleaned = {
        e.replica: e.at
        for e in events
        if e.kind == "terminate" and e.reason.startswith("clean up") and e.at is not None
    }
    by_tick: dict[float, list[int]] = {}
    for i, e in enumerate(events):
        if is_loss(e) and e.at is not None:
            for at in {e.at, cleaned.get(e.replica, e.at)}:
                by_tick.setdefault(at, []).append(i)
    out: dict[int, tuple[int, ...]] = {}
    for i, e in enumerate(events):
        if e.kind != "fallback" or e.at is None or e.at not in by_tick:
            continue
        losses = by_tick[e.at]
        here = [j for j in losses if events[j].zone and events[j].zone == e.zone]
        out[i] = tuple(here or losses)
    return out


def priced_covers(
    events: Sequence[Event], live: Collection[str], now: float, ended_at: float | None = None
) -> list[Event]:
    """`events` with what each on-demand fallback cost and what each loss's covers cost.

    A fallback (priced: `usd_per_hour`) bills by reconciler/cost.py's rule (`spell_cost`)
    from its launch until its termination event; while it is `live`, until `now` (so far,
    `running`); gone without a termination in the log, until `ended_at` (the service was
    destroyed) or unknown (None). Which losses a fallback covers: `attribute_covers`; a
    fallback names them (`covers`), a loss names its fallbacks (`covered_by`), and a
    preemption or failure of a replica whose warning was covered carries that cover too
    (launched at the warning, it is the preemption's cover). A loss's `cost` is the sum of
    its covers' (None when one is unknown), its `hours` the longest of them."""
    ended = {e.replica: e.at for e in events if e.kind == "terminate" and e.at is not None}
    priced: list[Event] = []
    for e in events:
        if e.kind != "fallback" or e.at is None or e.usd_per_hour is None:
            priced.append(e)
            continue
        end, running = ended.get(e.replica), False
        if end is None and e.replica in live:
            end, running = now, True
        elif end is None:
            end = ended_at
        if end is None:
            priced.append(e)
            continue
        hours = max(0.0, end - e.at) / 3600
        cost = spell_cost(e.usd_per_hour, e.at, end)
        priced.append(replace(e, hours=hours, cost=cost, running=running))
    attributed = attribute_covers(priced)
    covering: dict[int, list[int]] = {}
    for f, losses in attributed.items():
        for j in losses:
            covering.setdefault(j, []).append(f)
    warned: dict[str, list[int]] = {}  # replica -> the covers of its warnings
    out = []
    for i, e in enumerate(priced):
        if e.kind == "fallback" and i in attributed:
            covers = dict.fromkeys(priced[j].replica for j in attributed[i] if priced[j].replica)
            out.append(replace(e, covers=tuple(covers)))
            continue
        if not is_loss(e):
            out.append(e)
            continue
        own = covering.get(i, [])
        if e.kind == "warning":
            warned.setdefault(e.replica, []).extend(own)
        fallbacks = [priced[f] for f in dict.fromkeys([*warned.get(e.replica, []), *own])]
        if not fallbacks:
            out.append(e)
            continue
        costs = [f.cost for f in fallbacks]
        out.append(
            replace(
                e,
                covered_by=tuple(f.replica for f in fallbacks),
                cost=None if None in costs else sum(c or 0.0 for c in costs),
                hours=max((f.hours for f in fallbacks if f.hours is not None), default=None),
                running=any(f.running for f in fallbacks),
            )
        )
    return out


def _about_a_replica_gone(note: str, failing: Collection[str], shown: Collection[str]) -> bool:
    """A health note (`<id>: probes failing for N s`) about a replica the table no longer
    shows (preempted, terminated): its events already say what became of it."""
    rid = note.split(":", 1)[0]
    return rid in failing and rid not in shown


def _total_price(prices: Sequence[float | None]) -> float | None:
    return None if any(p is None for p in prices) else float(sum(p or 0.0 for p in prices))


def _probes(
    rec: Reconciler, ids: Sequence[str], version_specs: Mapping[int, Mapping[str, Any]]
) -> dict[str, readiness.ProbeResult]:
    """The readiness probe of each live sandbox replica, sent now as its own version asks
    (`version_specs`, as the sandbox backend probes), in parallel (a hung one takes the
    probe's timeout). Clouds: {} (the cloud's load balancer probes; `status` shows "-")."""
    if not isinstance(rec.cloud, SandboxCloud) or not ids:
        return {}
    sandbox = rec.paths.sandbox_dir
    default = readiness.spec_probe_request(rec.spec, os.environ)
    requests = {
        runs: readiness.spec_probe_request(spec_for_part(rec.spec, part), os.environ)
        for runs, part in version_specs.items()
    }
    targets: dict[str, tuple[str, readiness.ProbeRequest]] = {}
    for rid in ids:
        try:
            record = sandbox_replicas.get(sandbox, rid)
        except SandboxError:  # an unreadable record: no probe, "-"
            continue
        if record is not None and record.port and sandbox_replicas.is_alive(record):
            targets[rid] = (record.url, requests.get(record.version, default))
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = pool.map(lambda t: readiness.probe(*t), targets.values())
        return dict(zip(targets, results, strict=True))


def _accelerator(rec: Reconciler, offer: ZoneOffer | None) -> str:
    if offer is not None and offer.accelerator:
        return offer.accelerator
    if rec.cloud.accelerators_in_use:
        return ",".join(sorted(rec.cloud.accelerators_in_use))
    names = [a.name for a in rec.spec.resources.accelerators or ()]
    return ",".join(names) or "-"


def collect(
    rec: Reconciler, endpoint: str, version_detail: str, notes: Sequence[str], last: int
) -> StatusView:
    """The service as it is now, and its last `last` events from the tick log."""
    now = rec.clock()
    seen = rec.look()
    observed = in_pools(seen.observation, (*seen.managed, *seen.adopted))
    record = rec.records.load()
    offers = {o.zone: o for o in observed.zones}
    alive = sorted(r.id for r in observed.replicas if r.alive)
    probes = {
        rid: (p.reason, round(p.elapsed_s * 1000, 1))
        for rid, p in _probes(rec, alive, record.version_specs).items()
    }
    view = _assemble(
        rec.paths,
        now,
        observed,
        seen.lb_members or frozenset(),
        record,
        probes,
        lambda r: _accelerator(rec, offers.get(r.zone)),
        endpoint,
        version_detail,
        notes,
        last,
    )
    nominal = nominal_prices(observed.zones)
    return replace(view, nominal=nominal, prices=prices_line(observed.zones) if nominal else "")


def _assemble(
    paths: ServicePaths,
    now: float,
    observed: Observation,
    members: Collection[str],
    record: Record,
    probes: Mapping[str, tuple[str, float | None]],
    accelerator: Callable[[Replica], str],
    endpoint: str,
    version_detail: str,
    notes: Sequence[str],
    last: int,
) -> StatusView:
    """The view of `observed` (its replicas at their pools, priced by its offers) with the
    record's verdicts and the tick log's events: what `collect` and `from_state` share.
    `probes`: replica -> (what its readiness check said, its latency in ms or None)."""
    memory = record.memory
    target = memory.target
    if memory.groups:  # several GPU types: the replicas the mix runs, not its units
        target = sum(group.target or 0 for _, group in memory.groups)
    records = this_life(read_tail(paths.state_dir / TICKS_FILE), last_destroyed_at(paths.state_dir))
    offers = {o.zone: o for o in observed.zones}
    live = {r.id for r in observed.replicas if r.alive}
    events = priced_covers([_priced(e, offers) for e in derive_events(records)], live, now)
    latest: dict[str, Event] = {}
    for event in events:
        if event.replica:
            latest[event.replica] = event
    ordered = sorted(observed.replicas, key=lambda r: r.id)
    rows: list[ReplicaRow] = []
    for r in ordered:
        state = memory.failed.get(r.id, r.state.value)  # the policy's verdict, if any
        probe, probe_ms = probes.get(r.id, ("-", None))
        last_event = latest.get(r.id)
        reason = f"{last_event.kind}: {last_event.reason}" if last_event else ""
        if r.id in memory.failed and not reason.startswith("failed"):
            reason = f"failed: {memory.failed[r.id]}"
        elif r.id in memory.failing_since and r.id not in memory.failed:
            reason = f"probes failing for {now - memory.failing_since[r.id]:.0f} s"
        rows.append(
            ReplicaRow(
                id=r.id,
                zone=r.zone,
                market=r.market.value,
                accelerator=accelerator(r),
                version=r.version,
                state=state,
                age_s=round(max(0.0, now - r.launched_at), 1),
                in_lb=r.id in members,
                probe=probe,
                probe_ms=probe_ms,
                usd_per_hour=_replica_price(r, offers) if r.alive else 0.0,
                reason=reason or "-",
            )
        )
    shown = {r.id for r in ordered}
    notes = [n for n in notes if not _about_a_replica_gone(n, memory.failing_since, shown)]
    alive = [r for r in ordered if r.alive]
    ready = sum(1 for r in ordered if r.state is ReplicaState.READY and r.id in members)
    return StatusView(
        service=paths.service,
        version=current.number if (current := current_version(memory)) is not None else None,
        version_detail=version_detail,
        target=target,
        ready=ready,
        endpoint=endpoint,
        usd_per_hour=_total_price([_replica_price(r, offers) for r in alive]),
        availability_1h=availability(records, now),
        replicas=tuple(rows),
        events=tuple(events[-last:]) if last > 0 else (),
        notes=tuple(notes),
        events_asked=last,
    )


def from_state(
    paths: ServicePaths,
    record: Record,
    problem: str,
    notes: Sequence[str],
    last: int,
    now: float,
    *,
    remote: bool,
    version_detail: str,
) -> StatusView:
    """A service whose service file cannot be used (`problem`, one line: moved away,
    unreadable, invalid, or its sidecar invalid), from what its state knows, as `hedgeform
    logs` reads it: the record (version, target, the policy's verdicts), the tick log (events,
    availability, and the price per hour the last tick recorded: nothing else prices it), and
    on the sandbox with a local state the replicas of its Terraform states, each one's
    process, and the load balancer running (members, HAProxy's health check of each: no
    readiness probe is sent, its request is the file's). A cloud's replicas, or a remote
    state's, need the file (its clouds and regions, Terraform to read the state): no table.
    The view's `unread` line says so."""
    records = this_life(read_tail(paths.state_dir / TICKS_FILE), last_destroyed_at(paths.state_dir))
    rates = [r for r in map(tick_rate, records) if r is not None]
    rate = rates[-1] if rates else None
    sandbox = paths.sandbox_dir.is_dir()
    priced = "the price per hour is the last tick's, " + (
        f"at {clock(rate.at)}" if rate is not None else "and none was recorded"
    )
    if sandbox and not remote:
        cloud = SandboxCloud(paths.sandbox_dir, SandboxSettings(), paths=paths)
        managed = cloud.managed()
        replicas, members, probes = _sandbox_replicas(cloud, managed, record.memory, now)
        types = {m.id: m.accelerator for m in managed if m.accelerator}
        observed = in_pools(Observation(tuple(replicas), ()), managed)
        endpoint = cloud.running_endpoint() or "- (no load balancer running)"
        needed = (
            "to probe the replicas (their state here: each one's process and HAProxy's "
            f"health check), to price each replica and launch ({priced}) and to say when "
            "failing probes replace one"
        )
    else:
        observed, members, probes, types = Observation((), ()), frozenset(), {}, {}
        endpoint = "?"
        where = "a remote state" if remote else "the clouds"
        needed = (
            f"for the replica table and the endpoint (reading {where} takes the file's "
            f"stacks), to price each launch ({priced}) and to say when failing probes replace "
            "one"
        )
    view = _assemble(
        paths,
        now,
        observed,
        members,
        record,
        probes,
        lambda r: types.get(r.id) or "-",
        endpoint,
        version_detail,
        notes,
        last,
    )
    return replace(
        view,
        usd_per_hour=None if rate is None else rate.total,
        rate_at=None if rate is None else rate.at,
        # the sandbox's own prices: its directory says so, ticks or not (as `destroyed`)
        nominal=any(r.nominal for r in rates) or sandbox,
        unread=f"{problem}: shown from state/{paths.service} alone; a usable service file is "
        f"needed {needed}",
    )


def _sandbox_replicas(
    cloud: SandboxCloud, managed: Sequence[ManagedReplica], memory: Memory, now: float
) -> tuple[list[Replica], frozenset[str], dict[str, tuple[str, float | None]]]:
    """The sandbox's replicas without the spec: each replica its Terraform states hold, in
    the state its process and the load balancer give it (`from_state`), the members the
    running HAProxy serves from, and each member's health check there ("LB check UP").
    A replica Terraform could not create is FAILED_PROVISION; one without a running process
    PREEMPTED when the record saw it preempted, else FAILED (as `SandboxCloud.states`); a
    running member READY when its check passes, else NOT_READY; a running replica outside
    the load balancer NOT_READY once it was ready (the record's `ready_once`), else STARTING."""
    records = {s.record.replica_id: s for s in sandbox_replicas.list_replicas(cloud.state_dir)}
    members = frozenset(cloud.lb_members() or ())
    try:
        checks = cloud.lb.server_stats() if members else {}
    except SandboxError:  # it stopped meanwhile: no check to show
        checks = {}
    # a mix's memory holds its types' preemptions and readiness merged (policy/mixed.py)
    preempted = {p[0] for p in memory.recent_preemptions}
    ready_once = memory.ready_once
    out: list[Replica] = []
    probes: dict[str, tuple[str, float | None]] = {}
    for m in managed:
        status = records.get(m.id)
        launched, version = (
            (status.record.launched_at, status.record.version)
            if status is not None
            else (now, m.version)
        )
        if m.tainted:
            state = ReplicaState.FAILED_PROVISION
        elif status is None or not status.alive:
            state = ReplicaState.PREEMPTED if m.id in preempted else ReplicaState.FAILED
        elif m.id in members and m.id in checks:
            check = checks[m.id]
            state = ReplicaState.READY if check.up else ReplicaState.NOT_READY
            probes[m.id] = (f"LB check {check.status}", None)
        else:
            state = ReplicaState.NOT_READY if m.id in ready_once else ReplicaState.STARTING
        out.append(Replica(m.id, m.zone, Market(m.market), state, launched, version))
    return out, members, probes


def destroyed(service: str, state_dir: Path, at: float, last: int, now: float) -> StatusView:
    """A service `hedgeform destroy` took down at `at`: nothing runs or bills; the events
    before it (of the life it ended: after the destroy before it), each fallback's cover
    priced until then where the log gave it a price."""
    records = this_life(read_tail(state_dir / TICKS_FILE), previous_destroyed_at(state_dir))
    rates = [r for r in map(tick_rate, records) if r is not None]
    events = priced_covers(derive_events(records), (), now, ended_at=at)
    return StatusView(
        service=service,
        version=None,
        version_detail="",
        target=None,
        ready=0,
        endpoint="-",
        usd_per_hour=0.0,
        availability_1h=None,
        replicas=(),
        events=tuple(events[-last:]) if last > 0 else (),
        # the sandbox's own prices: its directory stays after destroy, ticks or not
        nominal=any(r.nominal for r in rates) or (state_dir / SANDBOX_DIR).is_dir(),
        destroyed_at=at,
        events_asked=last,
    )


def stamp(at: float) -> str:
    """`2026-12-01 13:40:12 UTC`."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def destroyed_line(service: str, at: float) -> str:
    return (
        f"{service}  destroyed {stamp(at)} (hedgeform destroy): nothing runs, nothing bills; "
        f"`hedgeform apply {service}` creates it again"
    )


def money(value: float | None, nominal: bool = False) -> str:
    """A price per hour in its unit: `$3.00/h`, `3.00 (nominal)/h` on the sandbox, `?`."""
    return "?" if value is None else f"{amount(value, nominal)}/h"


def span(hours: float) -> str:
    """A duration with its unit: `40 s` under a minute, `25 min` under an hour, else `1.4 h`."""
    if hours < 1 / 60:
        return f"{hours * 3600:.0f} s"
    return f"{hours * 60:.0f} min" if hours < 1 else f"{hours:.1f} h"


def event_cost(e: Event, nominal: bool) -> str:
    """What an event line adds about money (` (...)`, or ""): a launch's price per hour; a
    fallback's losses it covers and its cover so far or in all; a warning's, preemption's
    or failure's covers and their cost."""
    if is_loss(e) and e.covered_by:
        what = "so far" if e.running else "in all"
        total = "? (an end or a price is unknown)" if e.cost is None else amount(e.cost, nominal)
        return f" (on-demand cover {', '.join(e.covered_by)}: {total} {what})"
    covers = f"covers {', '.join(e.covers)}; " if e.covers else ""
    if e.usd_per_hour is None:
        return f" ({covers.removesuffix('; ')})" if covers else ""
    rate = money(e.usd_per_hour, nominal)
    if e.kind != "fallback" or e.cost is None or e.hours is None:
        return f" ({covers}{rate})"
    ran = "running for" if e.running else "ran"
    so_far = " so far" if e.running else ""
    return f" ({covers}{rate}; {ran} {span(e.hours)}: {amount(e.cost, nominal)}{so_far})"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def clock(at: float | None) -> str:
    return "-" if at is None else datetime.fromtimestamp(at).strftime("%H:%M:%S")


def service_line(view: StatusView) -> str:
    """`llama  v2 (ready)  target 2  ready 2  $3.10/h now  availability 1h 98.3%`."""
    target = "-" if view.target is None else str(view.target)
    version = view.version_detail or "no version yet"
    when = "now" if view.rate_at is None else f"at the last tick {clock(view.rate_at)}"
    return (
        f"{view.service}  {version}  target {target}  ready {view.ready}  "
        f"{money(view.usd_per_hour, view.nominal)} {when}  "
        f"availability 1h {percent(view.availability_1h)}"
    )


def renderable(view: StatusView) -> Any:
    """The view as rich renderables: the service line, the replica table, the events."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    if view.destroyed_at is not None:
        parts: list[Any] = [Text(destroyed_line(view.service, view.destroyed_at))]
        if view.events:
            parts.append(Text(f"last {len(view.events)} events before (state/{view.service}/"
                              f"{TICKS_FILE}):"))  # fmt: skip
            parts.append(_events_table(view))
        return Group(*parts)
    parts = [Text(service_line(view))]
    if view.unread:
        parts.append(Text(view.unread))
    parts.append(Text(f"endpoint: {view.endpoint}"))
    if view.replicas:
        table = Table(box=None, pad_edge=False, header_style="bold")
        for column in ("replica", "zone", "market", "accel", "ver", "state", "age", "in LB"):
            table.add_column(column, no_wrap=True)
        table.add_column("probe", no_wrap=True)
        table.add_column("nominal/h" if view.nominal else "$/h", justify="right", no_wrap=True)
        table.add_column("last change")
        for r in view.replicas:
            probe = r.probe if r.probe_ms is None else f"{r.probe} {r.probe_ms:.0f}ms"
            cells = (r.id, r.zone, r.market, r.accelerator, f"v{r.version}")
            table.add_row(
                *(Text(c) for c in cells),
                Text(r.state, style=_state_style(r.state)),
                Text(age(r.age_s)),
                Text("yes" if r.in_lb else "no"),
                Text(probe),
                Text(_unit_price(r.usd_per_hour, view.nominal)),
                Text(r.reason),
            )
        parts.append(table)
    else:
        parts.append(Text("no replicas"))
    parts.extend(Text(note) for note in view.notes)  # lease, held change, health
    if view.nominal:
        parts.append(Text(prices_note(view)))
    if view.events:
        parts.append(Text(f"last {len(view.events)} events (state/{view.service}/{TICKS_FILE}):"))
        parts.append(_events_table(view))
    elif view.events_asked:
        parts.append(
            Text(
                f"no events in the last records of state/{view.service}/{TICKS_FILE} "
                "(`hedgeform apply` and `hedgeform run` write them: launches, preemptions, "
                "fallbacks, refusals and rollouts are events)"
            )
        )
    return Group(*parts)


def _events_table(view: StatusView) -> Any:
    from rich.table import Table
    from rich.text import Text

    events = Table(box=None, pad_edge=False, show_header=False)
    for column in ("time", "kind", "replica", "where", "reason"):
        events.add_column(column, no_wrap=column != "reason")
    for e in view.events:
        where = "/".join(x for x in (e.zone, e.market) if x)
        cost = event_cost(e, view.nominal)
        cells = (clock(e.at), e.kind, e.replica or "-", where or "-", e.reason + cost)
        events.add_row(*(Text(c) for c in cells))
    return events


NOMINAL_NOTE = "sandbox: nominal prices, not dollars"


def prices_note(view: StatusView) -> str:
    """The line under the table of a sandbox service: which prices, in which unit, from
    where (`StatusView.prices`), as `hedgeform cost` says them."""
    listed = "" if view.unread else "; `hedgeform cost` lists each"
    return f"prices: {view.prices or NOMINAL_NOTE}{listed}"


def _unit_price(value: float | None, nominal: bool) -> str:
    """The table's price cell: `$3.00` or `3.00` under a `nominal/h` header; `?`."""
    if value is None:
        return "?"
    return f"{value:.2f}" if nominal else f"${value:.2f}"


def _state_style(state: str) -> str:
    if state == ReplicaState.READY.value:
        return "green"
    if state.startswith("FAILED") or state == ReplicaState.PREEMPTED.value:
        return "red"
    return "yellow"


def service_dirs(state_root: Path) -> list[str]:
    """Names of the services with a state directory under `state_root`: directories whose
    name is a service name (paths.check_name) holding a record or a tick log."""
    from reconciler.paths import check_name

    if not state_root.is_dir():
        return []
    names = []
    for child in sorted(state_root.iterdir()):
        try:
            check_name(child.name)
        except Exception:
            continue
        if child.is_dir() and not child.is_symlink() and is_service_dir(child):
            names.append(child.name)
    return names


def is_service_dir(path: Path) -> bool:
    """A service's state directory: it holds a record, a tick log, a sandbox or a destroy mark."""
    names = ("reconciler.json", TICKS_FILE, SANDBOX_DIR, DESTROYED_FILE, DESTROYING_FILE)
    return any((path / name).exists() for name in names)


def console() -> Any:
    """A rich console on stdout: a terminal's width on a terminal; elsewhere (a pipe, a
    file) lines as long as they need, without colour, so scripts can grep whole rows."""
    import sys

    from rich.console import Console

    tty = sys.stdout.isatty()
    return Console(file=sys.stdout, width=None if tty else 1000, highlight=False, soft_wrap=not tty)


def show(build: Callable[[], StatusView], *, as_json: bool, watch: bool, interval: float) -> None:
    """Print `build()` once, or with `watch` again every `interval` seconds until Ctrl-C
    (exit 0): in place on a terminal (rich.live.Live), once per interval elsewhere."""
    import time

    out = console()

    def emit(view: StatusView) -> None:
        if as_json:
            out.file.write(json.dumps(view.to_json()) + "\n")
        elif out.is_terminal:
            out.print(renderable(view))
        else:  # no cell padding at the ends of lines: rows are for grep and diff
            with out.capture() as captured:
                out.print(renderable(view))
            out.file.write("".join(ln.rstrip() + "\n" for ln in captured.get().splitlines()))
        out.file.flush()

    if not watch:
        emit(build())
        return
    try:
        if as_json or not out.is_terminal:
            while True:
                emit(build())
                time.sleep(interval)
        from rich.live import Live

        with Live(renderable(build()), console=out, auto_refresh=False) as live:
            while True:
                time.sleep(interval)
                live.update(renderable(build()), refresh=True)
    except KeyboardInterrupt:
        return
