"""What a service costs: $/h now, by market, and a month-to-date estimate. Pure functions.

Units: every price and rate is USD per instance-hour (`usd_per_hour`), except on the local
sandbox, whose prices are its own nominal ones (`PriceRef.nominal`: say "sandbox: nominal
prices", never dollars). Times are unix seconds (UTC).

Shapes:

- `PriceRef(source, as_of, placeholder=False, nominal=False)`: where one price came from
  (an API, a price list file and its URL) and when it was read (ISO date or time).
  `placeholder` marks a figure typed in without a source: a surface that shows it must say so.
- `PricedOffer(offer, spot, on_demand)`: one policy pool (`ZoneOffer`, its `zone` is the pool
  name `<zone>` or `<zone>/<GPU type>`) with the `PriceRef` of each of its two prices
  (`spot` None when the offer has no spot price). Backends build them (`priced_offers`).
- `nominal_offers(offers)`: PricedOffers for a backend that records no sources (the
  sandbox: "sandbox: nominal prices").
- `hourly_cost(replicas, priced) -> HourlyCost`: $/h now of the replicas that bill (every
  state but the terminal ones: a replica starting up is billed), as `lines` (one per pool and
  market, with the unit price and its `PriceRef`), `by_market` ({"spot": x, "on_demand": y})
  and `total`; replicas in no priced pool are listed in `unpriced`, never priced at 0 quietly.
- `spell_cost(unit, start, end) -> float`: what one replica cost from `start` to `end` at a
  unit price, by the same rule (it bills the whole time it is alive); `hedgeform status`
  prices an on-demand fallback's cover with it.
- `tick_rates(replicas, offers) -> dict`: the small `cost` field of a tick record
  (engine/observability.py `tick_record`): {"spot", "on_demand", "total", "unpriced", "nominal"}
  in $/h at the prices that tick used.
- `month_to_date(ticks, now, max_gap_s=MAX_GAP_S) -> MonthToDate`: the estimate integrated
  over the tick log's records of the current calendar month (UTC). How: each tick's $/h holds
  from its time until the next tick, for at most `max_gap_s`; the time beyond that (the loop
  was down, or its ticks failed) is *not counted* and is reported as `uncovered_h`, since
  what ran then is unknown; only from the service's first tick of the month (`first_tick`).
  The last tick holds until `now` (at most `max_gap_s`); no tick holds past a destroy
  (`destroys`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from reconciler.policy import Market, Replica, ZoneOffer

# A tick's rate is held at most this long (s): 10 loop intervals of 30 s. Longer gaps between
# tick records are not counted (MonthToDate.uncovered_h).
MAX_GAP_S = 300.0
PLACEHOLDER = "placeholder"
SANDBOX_SOURCE = "sandbox: nominal prices"
# The unit of every figure a surface shows (`hedgeform cost`, `hedgeform status`, --json).
UNIT_USD = "USD"
UNIT_NOMINAL = "nominal (sandbox)"


@dataclass(frozen=True)
class PriceRef:
    """Where one price came from and when it was read."""

    source: str  # an API, or a price list file and the URL it was read from
    as_of: str  # ISO date (or date and time) the figure was read or stated
    placeholder: bool = False  # typed in without a source: show it as such
    nominal: bool = False  # the sandbox's own price list, not dollars
    live: bool = False  # read from the cloud's API just now (AWS spot)

    def describe(self) -> str:
        """One line: `<source>, <as_of>`, flagged when a placeholder or nominal."""
        if self.nominal:
            return SANDBOX_SOURCE
        text = f"{self.source}, {self.as_of}"
        return f"PLACEHOLDER, not a real price ({text})" if self.placeholder else text


# The sandbox's prices are constants of its backend, not read from any list: say where they
# are, and that they are fixed (no date is invented for them).
SANDBOX_PRICE = PriceRef(
    "sandbox nominal prices (reconciler/backends/sandbox.py SPOT_PRICE, ON_DEMAND_PRICE)",
    "fixed, not read from a price list",
    nominal=True,
)


@dataclass(frozen=True)
class PricedOffer:
    """A pool the policy may place in, with where each of its prices came from."""

    offer: ZoneOffer
    spot: PriceRef | None
    on_demand: PriceRef

    def price(self, market: Market) -> tuple[float | None, PriceRef | None]:
        if market is Market.SPOT:
            return self.offer.spot_price, self.spot
        return self.offer.on_demand_price, self.on_demand


def nominal_offers(
    offers: Iterable[ZoneOffer], typed: PriceRef | None = None
) -> tuple[PricedOffer, ...]:
    """Offers whose backend records no price sources (the sandbox, the fake backend): the
    local sandbox's are its nominal prices (`SANDBOX_PRICE`; a pool of a GPU type, one
    whose offer names an `accelerator`, is priced from a list: `typed` says which, when
    given); any other is a placeholder."""
    out = []
    for o in offers:
        if o.cloud != "local":
            ref = PriceRef(PLACEHOLDER, "-", placeholder=True)
        else:
            ref = typed if typed is not None and o.accelerator else SANDBOX_PRICE
        out.append(PricedOffer(o, ref if o.spot_price is not None else None, ref))
    return tuple(out)


@dataclass(frozen=True)
class CostLine:
    """The replicas of one pool and market: how many, at what unit price (USD/h)."""

    pool: str  # the offer's zone: `<zone>` or `<zone>/<GPU type>`
    cloud: str
    region: str
    market: str  # Market value: "spot" | "on_demand"
    replicas: int
    unit_usd_per_hour: float
    price: PriceRef

    @property
    def usd_per_hour(self) -> float:
        return self.replicas * self.unit_usd_per_hour


@dataclass(frozen=True)
class HourlyCost:
    """$/h now: per pool and market (`lines`), per market and in total."""

    lines: tuple[CostLine, ...]
    unpriced: tuple[str, ...] = ()  # ids of billing replicas in no priced pool

    @property
    def by_market(self) -> dict[str, float]:
        out = {m.value: 0.0 for m in Market}
        for line in self.lines:
            out[line.market] += line.usd_per_hour
        return out

    @property
    def total(self) -> float:
        return sum(line.usd_per_hour for line in self.lines)

    @property
    def nominal(self) -> bool:
        """Priced (at least partly) by the sandbox's nominal price list."""
        return any(line.price.nominal for line in self.lines)

    @property
    def placeholders(self) -> bool:
        return any(line.price.placeholder for line in self.lines)


def billed(replica: Replica) -> bool:
    """Whether a replica bills now: every state but the terminal ones (preempted, failed,
    shutting down). A provisioning or starting replica bills: the instance exists."""
    return replica.alive


def hourly_cost(replicas: Iterable[Replica], priced: Iterable[PricedOffer]) -> HourlyCost:
    """$/h of the billing `replicas` at the `priced` offers' prices (see the module doc)."""
    by_pool = {p.offer.zone: p for p in priced}
    counts: dict[tuple[str, Market], int] = {}
    unpriced: list[str] = []
    for r in replicas:
        if not billed(r):
            continue
        offer = by_pool.get(r.zone)
        price = offer.price(r.market)[0] if offer is not None else None
        if price is None:
            unpriced.append(r.id)
            continue
        counts[(r.zone, r.market)] = counts.get((r.zone, r.market), 0) + 1
    lines = []
    for (pool, market), n in sorted(counts.items()):
        p = by_pool[pool]
        unit, ref = p.price(market)
        assert unit is not None and ref is not None
        lines.append(
            CostLine(pool, p.offer.cloud, p.offer.region, market.value, n, float(unit), ref)
        )
    return HourlyCost(tuple(lines), tuple(sorted(unpriced)))


def spell_cost(unit_usd_per_hour: float, start: float, end: float) -> float:
    """What one replica cost from `start` to `end` (unix s) at its pool's unit price (USD, or
    nominal on the sandbox): by `billed`'s rule it bills the whole time it is alive, from its
    launch until it is terminated (0 for an empty or reversed span)."""
    return unit_usd_per_hour * max(0.0, end - start) / 3600


def tick_rates(replicas: Iterable[Replica], offers: Sequence[ZoneOffer]) -> dict[str, Any]:
    """The `cost` field of a tick record: $/h by market and in total at the prices the tick
    used, the count of billing replicas it could not price, and whether the prices are the
    sandbox's nominal ones."""
    priced = [PricedOffer(o, SANDBOX_PRICE, SANDBOX_PRICE) for o in offers]  # refs unused
    cost = hourly_cost(replicas, priced)
    rates = cost.by_market
    return {
        "spot": round(rates[Market.SPOT.value], 6),
        "on_demand": round(rates[Market.ON_DEMAND.value], 6),
        "total": round(cost.total, 6),
        "unpriced": len(cost.unpriced),
        "nominal": nominal_prices(offers),
    }


def nominal_prices(offers: Iterable[ZoneOffer]) -> bool:
    """Whether these offers are priced by the sandbox's own nominal price list (not dollars)."""
    return any(o.cloud == "local" for o in offers)


def amount(value: float, nominal: bool) -> str:
    """A sum in its unit: `$1.25`, or `1.25 (nominal)` on the sandbox (never a `$`); a
    positive sum below a cent reads `<$0.01` (`<0.01 (nominal)`), not as nothing."""
    shown = "<0.01" if 0 < value < 0.005 else f"{value:.2f}"
    if nominal:
        return f"{shown} (nominal)"
    return "<$0.01" if shown == "<0.01" else f"${shown}"


@dataclass(frozen=True)
class TickRate:
    """One tick log record's time (unix s) and $/h."""

    at: float
    total: float
    spot: float = 0.0
    on_demand: float = 0.0
    nominal: bool = False


@dataclass(frozen=True)
class MonthToDate:
    """The month-to-date estimate (see the module doc for how it is integrated)."""

    since: float  # the month's first second, UTC
    now: float
    usd: float  # total; by market in `by_market`
    by_market: Mapping[str, float] = field(default_factory=dict)
    covered_h: float = 0.0  # hours priced by a tick's rate
    # hours since the first tick of the month (`first_tick`) with no tick within max_gap_s,
    # the service not destroyed: not counted
    uncovered_h: float = 0.0
    ticks: int = 0  # tick records of the month with a cost
    nominal: bool = False
    max_gap_s: float = MAX_GAP_S
    first_tick: float | None = None  # when gaps start to count (None: no tick this month)


def month_start(now: float) -> float:
    """The first second of `now`'s calendar month, UTC."""
    t = datetime.fromtimestamp(now, UTC)
    return datetime(t.year, t.month, 1, tzinfo=UTC).timestamp()


def tick_rate(record: Mapping[str, Any]) -> TickRate | None:
    """A tick log record's rate, or None for a record without one (another message, a tick
    logged before the `cost` field existed, a malformed one)."""
    cost = record.get("cost")
    if record.get("message", "tick") != "tick" or not isinstance(cost, Mapping):
        return None
    try:
        return TickRate(
            at=float(cost["at"]),
            total=float(cost["total"]),
            spot=float(cost.get("spot", 0.0)),
            on_demand=float(cost.get("on_demand", 0.0)),
            nominal=bool(cost.get("nominal", False)),
        )
    except (KeyError, TypeError, ValueError):
        return None


def month_to_date(
    ticks: Iterable[TickRate],
    now: float,
    max_gap_s: float = MAX_GAP_S,
    destroys: Iterable[float] = (),
) -> MonthToDate:
    """Integrate the ticks' $/h over the current calendar month (UTC) up to `now`.

    `destroys`: when the service was destroyed (unix s): a tick's rate stops there (nothing
    runs after a destroy), and the time from a destroy to the next tick is not a gap.
    Gaps (`uncovered_h`) are counted only from the service's first tick of the month (or
    the month's start, when last month's last tick holds into it): before it the service
    did not run, which is no monitoring gap."""
    since = month_start(now)
    rates = sorted((t for t in ticks if t.at <= now), key=lambda t: t.at)
    stops = sorted(d for d in destroys if d <= now)
    # the last tick before the month began still holds into its first seconds
    before = [t for t in rates if t.at < since]
    inside = [t for t in rates if t.at >= since]
    spans = ([before[-1]] if before else []) + inside
    usd = {m.value: 0.0 for m in Market}
    covered = uncovered = 0.0
    for i, t in enumerate(spans):
        end = spans[i + 1].at if i + 1 < len(spans) else now
        end = min([end, *(d for d in stops if d > t.at)])  # a destroy ends it
        start = max(t.at, since)
        held = max(0.0, min(end, t.at + max_gap_s) - start)
        covered += held
        uncovered += max(0.0, end - start - held)
        usd[Market.SPOT.value] += t.spot * held / 3600
        usd[Market.ON_DEMAND.value] += t.on_demand * held / 3600
    return MonthToDate(
        since=since,
        now=now,
        usd=sum(usd.values()),
        by_market=usd,
        covered_h=covered / 3600,
        uncovered_h=uncovered / 3600,
        ticks=len(inside),
        nominal=any(t.nominal for t in spans),
        max_gap_s=max_gap_s,
        first_tick=max(spans[0].at, since) if spans else None,
    )
