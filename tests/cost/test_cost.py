"""reconciler/cost.py: $/h now from replicas and priced offers, the tick record's field, and
the month-to-date integration over tick records."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from reconciler.cost import (
    MAX_GAP_S,
    PricedOffer,
    PriceRef,
    TickRate,
    amount,
    hourly_cost,
    month_start,
    month_to_date,
    nominal_offers,
    tick_rate,
    tick_rates,
)
from reconciler.policy import Market, Replica, ReplicaState, ZoneOffer

LIVE = PriceRef("AWS EC2 describe_spot_price_history (live)", "2026-12-01T10:00Z", live=True)
LISTED = PriceRef("skypilot-org/skypilot-catalog catalogs/v7/aws/vms.csv", "2026-11-30")
TYPED = PriceRef("placeholder", "2025-06-01", placeholder=True)


def rep(rid: str, zone: str, market: Market, state: ReplicaState = ReplicaState.READY) -> Replica:
    return Replica(rid, zone, market, state, 0.0)


def offers() -> list[PricedOffer]:
    return [
        PricedOffer(ZoneOffer("us-east-1a", "us-east-1", "aws", 0.30, 0.8048), LIVE, LISTED),
        PricedOffer(ZoneOffer("us-east-1b", "us-east-1", "aws", 0.40, 0.8048), LIVE, LISTED),
        PricedOffer(
            ZoneOffer("us-east4-a/L4", "us-east4", "gcp", 0.38, 0.962, accelerator="L4"),
            TYPED,
            TYPED,
        ),
    ]


def test_hourly_cost_by_market_counts_billing_replicas_only() -> None:
    replicas = [
        rep("a", "us-east-1a", Market.SPOT),
        rep("b", "us-east-1a", Market.SPOT, ReplicaState.STARTING),  # starting: billed
        rep("c", "us-east-1b", Market.ON_DEMAND, ReplicaState.PROVISIONING),
        rep("d", "us-east-1b", Market.SPOT, ReplicaState.PREEMPTED),  # gone: not billed
        rep("e", "us-east-1b", Market.ON_DEMAND, ReplicaState.FAILED),
        rep("f", "us-east4-a/L4", Market.SPOT),  # a typed pool, by its pool name
        rep("g", "eu-west-1a", Market.SPOT),  # no offer: listed, never priced at 0 quietly
    ]
    cost = hourly_cost(replicas, offers())
    assert cost.by_market == pytest.approx({"spot": 2 * 0.30 + 0.38, "on_demand": 0.8048})
    assert cost.total == pytest.approx(2 * 0.30 + 0.38 + 0.8048)
    assert cost.unpriced == ("g",)
    lines = {(x.pool, x.market): x for x in cost.lines}
    assert set(lines) == {
        ("us-east-1a", "spot"),
        ("us-east-1b", "on_demand"),
        ("us-east4-a/L4", "spot"),
    }
    assert lines[("us-east-1a", "spot")].replicas == 2
    assert lines[("us-east-1a", "spot")].price is LIVE
    assert lines[("us-east-1b", "on_demand")].price is LISTED
    assert cost.placeholders  # the GCP line is priced at a typed-in figure
    assert not cost.nominal


def test_a_spot_replica_where_no_spot_is_offered_is_unpriced() -> None:
    od_only = [PricedOffer(ZoneOffer("z", "r", "aws", None, 1.0), None, LISTED)]
    cost = hourly_cost([rep("a", "z", Market.SPOT), rep("b", "z", Market.ON_DEMAND)], od_only)
    assert cost.unpriced == ("a",)
    assert cost.total == pytest.approx(1.0)


def test_placeholders_and_sandbox_prices_say_what_they_are() -> None:
    assert TYPED.describe().startswith("PLACEHOLDER, not a real price")
    assert LISTED.describe() == f"{LISTED.source}, 2026-11-30"
    sandbox = nominal_offers([ZoneOffer("local-1a", "local-1a", "local", 1.0, 3.0)])
    assert sandbox[0].on_demand.describe() == "sandbox: nominal prices"
    assert sandbox[0].on_demand.nominal
    other = nominal_offers([ZoneOffer("z", "r", "aws", None, 3.0)])
    assert other[0].spot is None and other[0].on_demand.placeholder
    cost = hourly_cost([rep("a", "local-1a", Market.SPOT)], sandbox)
    assert cost.nominal and cost.total == pytest.approx(1.0)
    assert sandbox[0].on_demand.as_of == "fixed, not read from a price list"  # not "-"
    # a sandbox pool of a GPU type is priced from the AWS list: dated as that list is
    from reconciler.backends.sandbox import typed_price_ref

    typed = typed_price_ref()
    pool = ZoneOffer("local-1a/L4", "local-1a", "local", 0.27, 0.80, accelerator="L4")
    (priced,) = nominal_offers([pool], typed)
    assert priced.on_demand is typed and typed.nominal and typed.as_of[:2] == "20"
    assert "AWS list price" in typed.source


def test_tick_rates_is_the_tick_records_cost_field() -> None:
    zones = [o.offer for o in offers()]
    field = tick_rates(
        [rep("a", "us-east-1a", Market.SPOT), rep("b", "us-east-1b", Market.ON_DEMAND)], zones
    )
    assert field == {
        "spot": 0.3,
        "on_demand": 0.8048,
        "total": pytest.approx(1.1048),
        "unpriced": 0,
        "nominal": False,
    }
    local = tick_rates([], [ZoneOffer("local-1a", "local-1a", "local", 1.0, 3.0)])
    assert local["nominal"] is True and local["total"] == 0


def test_tick_rate_reads_tick_records_and_skips_the_rest() -> None:
    good = {"message": "tick", "cost": {"at": 10.0, "total": 2.0, "spot": 1.5, "on_demand": 0.5}}
    assert tick_rate(good) == TickRate(10.0, 2.0, 1.5, 0.5, False)
    assert tick_rate({"message": "tick failed", "cost": good["cost"]}) is None
    assert tick_rate({"message": "tick", "inputs": {}}) is None  # logged before the field
    assert tick_rate({"message": "tick", "cost": {"total": 1.0}}) is None  # no time
    assert tick_rate({"message": "tick", "cost": {"at": "x", "total": 1.0}}) is None


DEC = datetime(2026, 12, 1, tzinfo=UTC).timestamp()


def test_month_start_is_the_first_second_of_the_utc_month() -> None:
    assert month_start(DEC + 3 * 86400 + 5) == DEC
    assert month_start(DEC - 1) == datetime(2026, 11, 1, tzinfo=UTC).timestamp()


def test_month_to_date_holds_each_rate_until_the_next_tick_and_skips_long_gaps() -> None:
    ticks = [
        TickRate(DEC - 10_000, 100.0, spot=100.0),  # long before the month: only if it holds
        TickRate(DEC + 0, 3.6, spot=3.6),  # 60 s at 3.6/h
        TickRate(DEC + 60, 7.2, spot=3.6, on_demand=3.6),  # then a gap: MAX_GAP_S counted
        TickRate(DEC + 4000, 1.8, on_demand=1.8),  # last: until now
    ]
    now = DEC + 4100
    mtd = month_to_date(ticks, now)
    expected_spot = 3.6 * 60 / 3600 + 3.6 * MAX_GAP_S / 3600
    expected_od = 3.6 * MAX_GAP_S / 3600 + 1.8 * 100 / 3600
    assert mtd.by_market["spot"] == pytest.approx(expected_spot)
    assert mtd.by_market["on_demand"] == pytest.approx(expected_od)
    assert mtd.usd == pytest.approx(expected_spot + expected_od)
    assert mtd.covered_h == pytest.approx((60 + MAX_GAP_S + 100) / 3600)
    assert mtd.uncovered_h == pytest.approx((4100 - 60 - MAX_GAP_S - 100) / 3600)
    assert mtd.ticks == 3
    assert mtd.since == DEC


def test_the_last_tick_of_last_month_holds_into_this_one_and_the_last_is_capped() -> None:
    ticks = [TickRate(DEC - 100, 36.0, spot=36.0)]  # holds 100 s before, 200 s after DEC
    mtd = month_to_date(ticks, DEC + 3600)
    assert mtd.usd == pytest.approx(36.0 * (MAX_GAP_S - 100) / 3600)
    assert mtd.ticks == 0
    assert mtd.uncovered_h == pytest.approx((3600 - (MAX_GAP_S - 100)) / 3600)
    assert month_to_date([], DEC + 7200).usd == 0.0
    assert month_to_date([], DEC + 7200).uncovered_h == 0.0  # no tick: it did not run
    assert month_to_date([], DEC + 7200).first_tick is None
    # a tick "from the future" (a clock step back) is not counted
    assert month_to_date([TickRate(DEC + 10, 3600.0, spot=3600.0)], DEC + 5).usd == 0.0


def test_gaps_count_from_the_first_tick_and_nothing_holds_past_a_destroy() -> None:
    """Issue 17 review: a service created at 13:50 read `14.0 h without ticks not counted`;
    after destroy the last tick's rate kept counting for up to MAX_GAP_S."""
    created = DEC + 13 * 3600 + 50 * 60
    ticks = [TickRate(created, 3.6, spot=3.6), TickRate(created + 30, 3.6, spot=3.6)]
    destroyed = created + 40
    mtd = month_to_date(ticks, created + 600, destroys=[destroyed])
    assert mtd.covered_h == pytest.approx(40 / 3600)  # 30 s, then 10 s until the destroy
    assert mtd.usd == pytest.approx(3.6 * 40 / 3600)
    assert mtd.uncovered_h == 0.0 and mtd.first_tick == created
    # alive, the loop stopped: the gap counts, from its first tick
    alive = month_to_date(ticks, created + 3600)
    assert alive.uncovered_h == pytest.approx((3600 - 30 - MAX_GAP_S) / 3600)


def test_signals_say_whether_the_catalogs_spot_prices_are_placeholders() -> None:
    """`hedgeform signals` on GCP/Azure shows the catalog's prices with their source and
    date, and a placeholder as such (clouds/apis.py peek_catalog_prices)."""
    from reconciler.clouds.apis import peek_catalog_prices

    prices, notes = peek_catalog_prices("azure", "Standard_NC4as_T4_v3", "westeurope", [])
    assert prices == {"westeurope-1": 0.14, "westeurope-2": 0.14, "westeurope-3": 0.14}
    assert notes == [
        "spot prices from the static catalog: PLACEHOLDER, not a real price "
        "(placeholder, 2025-06-01)"
    ]
    prices, notes = peek_catalog_prices("gcp", "g2-standard-8", "us-east4", [])
    assert prices == {"us-east4-a": 0.34032, "us-east4-c": 0.34032}
    assert "catalogs/v7/gcp/vms.csv at 017e2502fb63" in notes[0]
    assert notes[0].endswith(", 2026-12-01") and "PLACEHOLDER" not in notes[0]


def test_the_aws_us_west_2_on_demand_price_has_a_source_and_its_spot_stays_a_placeholder() -> None:
    """The us-west-2 g6.xlarge on-demand figure is SkyPilot's catalog row (was typed in by
    hand); its per-zone spot figures stay placeholders: the catalog's spot is per AZ ID."""
    from reconciler.clouds.prices import catalog_entry, entry_refs

    entry = catalog_entry("aws", "us-west-2", "g6.xlarge")
    assert entry is not None and entry["on_demand"] == 0.8048
    on_demand, spot = entry_refs(entry)
    assert not on_demand.placeholder and on_demand.as_of == "2026-12-01"
    assert "catalogs/v7/aws/vms.csv at 001367d22a00" in on_demand.source
    assert all(",0.8048," in row and ",us-west-2,usw2-az" in row for row in entry["evidence"])
    assert spot.placeholder and spot.as_of == "2025-06-01"


def test_a_sum_below_a_cent_is_not_shown_as_nothing() -> None:
    """A five-second on-demand cover at 3/h costs 0.004: status printed `0.00 (nominal)`."""
    assert amount(3.0 * 5 / 3600, nominal=True) == "<0.01 (nominal)"
    assert amount(0.004, nominal=False) == "<$0.01"
    assert amount(0.0, nominal=False) == "$0.00"
    assert amount(0.005, nominal=False) == "$0.01"
    assert amount(1.25, nominal=True) == "1.25 (nominal)"
