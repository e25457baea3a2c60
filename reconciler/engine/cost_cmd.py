"""`hedgeform cost SERVICE [--json]`: $/h now by market, the month-to-date estimate from the
tick log, and every price used with its source and date (reconciler/cost.py)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from reconciler.backends.clouds import ProviderCloud
from reconciler.backends.sandbox import prices_line, typed_price_ref
from reconciler.cost import (
    MAX_GAP_S,
    UNIT_NOMINAL,
    UNIT_USD,
    HourlyCost,
    MonthToDate,
    PricedOffer,
    TickRate,
    amount,
    hourly_cost,
    month_to_date,
    nominal_offers,
    tick_rate,
)
from reconciler.engine.commands import (
    _fail,
    _reading_reconciler,
    port_opt,
    root_opt,
    service_arg,
    state_paths,
)
from reconciler.engine.reconcile import Reconciler
from reconciler.engine.state_store import destroyed_at, last_destroyed_at
from reconciler.engine.status_view import read_tail, this_life
from reconciler.errors import HedgeformError, SpecError, StateError
from reconciler.paths import ServicePaths
from reconciler.policy import Market, ReplicaState
from reconciler.stacks import in_pools

TICKS_FILE = "ticks.jsonl"


def method(nominal: bool) -> str:
    """How the month to date is estimated, in the unit of the prices."""
    rate = "rate per hour in nominal units" if nominal else "$/h"
    return (
        f"each tick's {rate} (the prices that tick used) held until the next tick, at most "
        f"{MAX_GAP_S:.0f} s, and never past a destroy; longer gaps, from the service's first "
        "tick of the month, are not counted"
    )


def read_tick_rates(path: Path) -> list[TickRate]:
    """The rates of the tick log's records (reconciler/cost.py `tick_rate`), read line by
    line (a month of 30 s ticks is tens of thousands of records); a missing log is no ticks,
    a line that is not JSON (a write cut short) is skipped."""
    rates = []
    try:
        with path.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if '"cost"' not in line:  # most lines of other messages: not parsed
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and (rate := tick_rate(record)) is not None:
                    rates.append(rate)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StateError(f"{path}: cannot read the tick log ({exc.strerror})") from None
    return rates


def current_cost(rec: Reconciler) -> tuple[HourlyCost, tuple[PricedOffer, ...]]:
    """$/h of the replicas there now, and the priced offers (every pool the spec may place
    in) it was computed from."""
    now = rec.look()
    observation = in_pools(now.observation, (*now.managed, *now.adopted))
    if isinstance(rec.cloud, ProviderCloud):
        priced = rec.cloud.priced_offers(live=True)
    else:
        typed = any(o.accelerator for o in observation.zones)
        priced = nominal_offers(observation.zones, typed_price_ref() if typed else None)
    return hourly_cost(observation.replicas, priced), priced


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def price_rows(cost: HourlyCost, priced: Sequence[PricedOffer]) -> list[dict[str, Any]]:
    """One row per pool and market offered: replicas running there, unit $/h, source, date."""
    counts = {(line.pool, line.market): line.replicas for line in cost.lines}
    rows = []
    for p in priced:
        for market in Market:
            unit, ref = p.price(market)
            if unit is None or ref is None:
                continue
            rows.append(
                {
                    "pool": p.offer.zone,
                    "cloud": p.offer.cloud,
                    "region": p.offer.region,
                    "market": market.value,
                    "replicas": counts.get((p.offer.zone, market.value), 0),
                    "usd_per_hour": unit,
                    "source": ref.source,
                    "as_of": ref.as_of,
                    "placeholder": ref.placeholder,
                    "nominal": ref.nominal,
                    "live": ref.live,
                }
            )
    return rows


def cost_json(
    service: str, cost: HourlyCost, priced: Sequence[PricedOffer], mtd: MonthToDate
) -> dict[str, Any]:
    rates = cost.by_market
    nominal = cost.nominal or mtd.nominal or any(p.on_demand.nominal for p in priced)
    now = {
        "per_hour": {**{k: round(v, 6) for k, v in rates.items()}, "total": cost.total},
        "replicas": {
            m.value: sum(x.replicas for x in cost.lines if x.market == m.value) for m in Market
        },
        "unpriced": list(cost.unpriced),
        "placeholders": cost.placeholders,
    }
    return _cost_json(service, nominal, now, mtd, price_rows(cost, priced))


def _cost_json(
    service: str,
    nominal: bool,
    now: dict[str, Any],
    mtd: MonthToDate,
    prices: list[dict[str, Any]],
    *,
    at: float | None = None,
    unread: str | None = None,
) -> dict[str, Any]:
    """`--json`'s shape. `at`: the time of the tick whose recorded rate `now` is (None: priced
    now); `unread`: why the service file could not be used (None: it was)."""
    return {
        "service": service,
        "unit": UNIT_NOMINAL if nominal else UNIT_USD,
        "service_file_error": unread,
        "now": {**now, "at": None if at is None else _iso(at)},
        "month_to_date": {
            "since": _iso(mtd.since),
            "until": _iso(mtd.now),
            "total": round(mtd.usd, 6),
            "by_market": {k: round(v, 6) for k, v in mtd.by_market.items()},
            "covered_h": round(mtd.covered_h, 4),
            "uncovered_h": round(mtd.uncovered_h, 4),
            "gaps_from": None if mtd.first_tick is None else _iso(mtd.first_tick),
            "ticks": mtd.ticks,
            "method": method(nominal),
        },
        "prices": prices,
    }


def state_cost_json(service: str, paths: ServicePaths, problem: str, now: float) -> dict[str, Any]:
    """`hedgeform cost` of a service whose service file cannot be used (`problem`, one line),
    from its tick log alone: the month to date as always, and for now the rate and billing
    replicas the last tick recorded (this life's: nothing after a destroy that still holds;
    null per hour with no such tick). Pricing the replicas there now, and each pool's
    prices, need the file: no `prices` rows."""
    ticks = paths.state_dir / TICKS_FILE
    destroys = [d for d in [last_destroyed_at(paths.state_dir)] if d is not None]
    mtd = month_to_date(read_tick_rates(ticks), now, destroys=destroys)
    last: tuple[TickRate, Mapping[str, Any]] | None = None
    gone = destroyed_at(paths.state_dir) is not None
    if not gone:
        for record in reversed(this_life(read_tail(ticks), destroys[-1] if destroys else None)):
            if (rate := tick_rate(record)) is not None:
                last = rate, record
                break
    counts = {m.value: 0 for m in Market}
    if last is None:  # destroyed: nothing runs; else unknown
        nothing = 0.0 if gone else None
        per_hour: dict[str, float | None] = {key: nothing for key in ("spot", "on_demand", "total")}
    else:
        rate, record = last
        per_hour = {"spot": rate.spot, "on_demand": rate.on_demand, "total": rate.total}
        inputs = record.get("inputs")
        states = inputs.get("replicas") if isinstance(inputs, dict) else None
        for key, n in (states if isinstance(states, dict) else {}).items():
            market, _, state = str(key).partition("/")
            with contextlib.suppress(ValueError):
                if market in counts and not ReplicaState(state).terminal and isinstance(n, int):
                    counts[market] += n
    nominal = mtd.nominal or (last is not None and last[0].nominal) or paths.sandbox_dir.is_dir()
    now_part = {"per_hour": per_hour, "replicas": counts, "unpriced": [], "placeholders": False}
    unread = (
        f"{problem}: from state/{paths.service}/{TICKS_FILE} alone; a usable service file is "
        "needed to price the replicas there now (the rate is the last tick's) and to list "
        "each pool's price"
    )
    at = None if last is None else last[0].at
    return _cost_json(service, nominal, now_part, mtd, [], at=at, unread=unread)


def _hours(h: float) -> str:
    return f"{h * 60:.0f} min" if h < 1 else f"{h:.1f} h"


def print_cost(data: dict[str, Any], prices: str = "") -> None:
    """`data` (`cost_json`) as text; `prices`: what the sandbox's prices are (backends/sandbox.py
    `prices_line`), said first when they are nominal."""
    nominal = data["unit"] != UNIT_USD
    now, mtd = data["now"], data["month_to_date"]
    rates, counts = now["per_hour"], now["replicas"]
    if data["service_file_error"]:
        click.echo(data["service_file_error"])
    if nominal:
        click.echo(prices or "sandbox: nominal prices, not dollars")
    when = "now" if now["at"] is None else f"last tick ({now['at']})"
    if rates["total"] is None:
        click.echo(f"{when}: unknown (no tick recorded a price since the service last started)")
    else:
        click.echo(
            f"{when}: {amount(rates['total'], nominal)}/h   spot "
            f"{amount(rates['spot'], nominal)}/h ({counts['spot']} replicas)   on demand "
            f"{amount(rates['on_demand'], nominal)}/h ({counts['on_demand']} replicas)"
        )
    if now["unpriced"]:
        click.echo(f"not priced (in no offered pool): {', '.join(now['unpriced'])}")
    gaps = (
        "no tick this month"
        if mtd["gaps_from"] is None
        else f"{_hours(mtd['uncovered_h'])} without ticks since its first tick this month "
        f"({mtd['gaps_from']}) not counted"
    )
    click.echo(
        f"month to date (since {mtd['since']}): {amount(mtd['total'], nominal)} estimated from "
        f"{mtd['ticks']} ticks covering {_hours(mtd['covered_h'])}; {gaps}"
    )
    click.echo(f"  ({mtd['method']})")
    rows = data["prices"]
    if not rows:
        if not data["service_file_error"]:
            click.echo("no prices: the spec offers no pool")
        return
    width = max(10, *(len(r["pool"]) for r in rows))
    per_hour = "nominal/h" if nominal else "$/h"
    click.echo(f"{'pool':<{width}} {'market':<10} {'replicas':>8} {per_hour:>10}  source, as of")
    for r in rows:
        if r["placeholder"]:
            where = f"PLACEHOLDER, not a real price (typed in {r['as_of']})"
        else:
            where = f"{r['source']}, {r['as_of']}"
        click.echo(
            f"{r['pool']:<{width}} {r['market']:<10} {r['replicas']:>8} "
            f"{r['usd_per_hour']:>10.4f}  {where}"
        )
    if now["placeholders"]:
        click.echo("warning: some replicas are priced at PLACEHOLDER figures; $/h is a guess")


@click.command("cost")
@service_arg
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@port_opt
@root_opt
def cost(service: str, as_json: bool, lb_port: int | None, root: Path | None) -> None:
    """SERVICE's cost: $/h now by market (the replicas there now at the prices the policy
    uses), a month-to-date estimate from the tick log (state/SERVICE/ticks.jsonl, written by
    `hedgeform run`), and each price with its source and date. On the sandbox the prices are
    its own nominal ones. Without a usable service file (moved away, unreadable, invalid):
    the month to date and the rate the last tick recorded, from the tick log alone, after a
    line saying why (`--json`: "service_file_error", and "now"."at", the tick's time); the
    pools' prices need the file."""
    prices = ""
    try:
        try:
            rec = _reading_reconciler(service, lb_port, root)
        except SpecError as exc:  # moved away, unreadable, invalid: the tick log is on disk
            paths = state_paths(service, root, exc)
            data = state_cost_json(service, paths, str(exc).splitlines()[0], time.time())
        else:
            now_cost, priced = current_cost(rec)
            rates = read_tick_rates(rec.paths.state_dir / TICKS_FILE)
            destroys = [last_destroyed_at(rec.paths.state_dir)]
            mtd = month_to_date(rates, rec.clock(), destroys=[d for d in destroys if d is not None])
            data = cost_json(service, now_cost, priced, mtd)
            prices = prices_line(p.offer for p in priced)
    except HedgeformError as exc:
        raise _fail(exc) from None
    if as_json:
        click.echo(json.dumps(data, indent=1, sort_keys=True))
    else:
        print_cost(data, prices)
