"""`hedgeform cost SERVICE [--json]`: $/h now by market, the month-to-date estimate from the
tick log, and every price used with its source and date (reconciler/cost.py)."""

from __future__ import annotations

import json
from collections.abc import Sequence
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
)
from reconciler.engine.reconcile import Reconciler
from reconciler.engine.state_store import last_destroyed_at
from reconciler.errors import HedgeformError, StateError
from reconciler.policy import Market
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
    return {
        "service": service,
        "unit": UNIT_NOMINAL if nominal else UNIT_USD,
        "now": {
            "per_hour": {**{k: round(v, 6) for k, v in rates.items()}, "total": cost.total},
            "replicas": {
                m.value: sum(x.replicas for x in cost.lines if x.market == m.value) for m in Market
            },
            "unpriced": list(cost.unpriced),
            "placeholders": cost.placeholders,
        },
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
        "prices": price_rows(cost, priced),
    }


def _hours(h: float) -> str:
    return f"{h * 60:.0f} min" if h < 1 else f"{h:.1f} h"


def print_cost(data: dict[str, Any], prices: str = "") -> None:
    """`data` (`cost_json`) as text; `prices`: what the sandbox's prices are (backends/sandbox.py
    `prices_line`), said first when they are nominal."""
    nominal = data["unit"] != UNIT_USD
    now, mtd = data["now"], data["month_to_date"]
    rates, counts = now["per_hour"], now["replicas"]
    if nominal:
        click.echo(prices or "sandbox: nominal prices, not dollars")
    click.echo(
        f"now: {amount(rates['total'], nominal)}/h   spot {amount(rates['spot'], nominal)}/h "
        f"({counts['spot']} replicas)   on demand {amount(rates['on_demand'], nominal)}/h "
        f"({counts['on_demand']} replicas)"
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
    its own nominal ones."""
    try:
        rec = _reading_reconciler(service, lb_port, root)
        now_cost, priced = current_cost(rec)
        rates = read_tick_rates(rec.paths.state_dir / TICKS_FILE)
        destroys = [last_destroyed_at(rec.paths.state_dir)]
        mtd = month_to_date(rates, rec.clock(), destroys=[d for d in destroys if d is not None])
        data = cost_json(service, now_cost, priced, mtd)
    except HedgeformError as exc:
        raise _fail(exc) from None
    if as_json:
        click.echo(json.dumps(data, indent=1, sort_keys=True))
    else:
        print_cost(data, prices_line(p.offer for p in priced))
