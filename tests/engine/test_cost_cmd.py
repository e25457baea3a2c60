"""Cost on the engine's side: where each offer's price comes from (ProviderCloud.priced_offers),
the tick record's `cost` field, and `hedgeform cost` on the sandbox. No network."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import main
from reconciler.cost import hourly_cost
from reconciler.engine.observability import tick_record
from reconciler.errors import AdapterError
from reconciler.policy import Market, Replica, ReplicaState
from tests.engine.cloud_fakes import SENTINEL, make_root
from tests.engine.test_cloud_backend import Rig

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HF_TOKEN", SENTINEL)
    return make_root(tmp_path)


def test_priced_offers_name_each_prices_source_and_date(root: Path) -> None:
    rig = Rig(root)
    priced = rig.backend.priced_offers()
    assert tuple(p.offer for p in priced) == rig.backend.zone_offers()
    by_zone = {p.offer.zone: p for p in priced}
    aws = by_zone["us-east-1a"]
    assert aws.offer.spot_price == pytest.approx(0.30)  # the live (fake) API's
    assert aws.spot is not None and aws.spot.live
    assert aws.spot.source == "AWS EC2 describe_spot_price_history (live)"
    assert aws.on_demand.source.startswith("skypilot-org/skypilot-catalog catalogs/v7/aws")
    assert aws.on_demand.as_of == "2026-11-30" and not aws.on_demand.placeholder
    gcp = by_zone["us-central1-a"]  # GCP: the catalog's sourced us-central1 entry
    assert gcp.offer.spot_price == pytest.approx(0.34057)
    assert gcp.offer.on_demand_price == pytest.approx(0.85362)
    assert gcp.spot is not None and not gcp.spot.placeholder
    assert "catalogs/v7/gcp/vms.csv" in gcp.spot.source and gcp.spot.as_of == "2026-11-30"
    # a zone the catalog lists no spot price for: the region's highest, same source
    assert by_zone["us-central1-f"].offer.spot_price == pytest.approx(0.34057)


def test_a_failing_spot_api_falls_back_to_the_catalog_and_says_placeholder(root: Path) -> None:
    rig = Rig(root)
    rig.apis["aws"].prices.fail_next(AdapterError("throttled"))
    by_zone = {p.offer.zone: p for p in rig.backend.priced_offers()}
    aws = by_zone["us-east-1b"]
    assert aws.offer.spot_price == pytest.approx(0.33)  # the catalog's typed-in figure
    assert aws.spot is not None and aws.spot.placeholder and not aws.spot.live
    assert aws.spot.describe().startswith("PLACEHOLDER, not a real price")


def test_the_tick_record_carries_the_rate_at_the_prices_the_pass_used(root: Path) -> None:
    rig = Rig(root)
    result = rig.rec.run_pass(apply=True)
    assert result.observed is not None
    record = tick_record(3, result, now=1_764_583_200.0)
    cost = record["cost"]
    assert cost["at"] == 1_764_583_200.0
    # what the pass observed (nothing launched yet) at its own offers' prices
    priced = rig.backend.priced_offers()
    expected = hourly_cost(result.observed.replicas, priced)
    assert cost["total"] == pytest.approx(expected.total)
    assert cost["spot"] == pytest.approx(expected.by_market[Market.SPOT.value])
    assert cost["nominal"] is False
    # with replicas observed (Terraform is faked here: none shows up by itself), each is
    # priced at its pool's price in the pass's own offers
    observed = dataclasses.replace(
        result.observed,
        replicas=(
            Replica("a", "us-east-1a", Market.SPOT, ReplicaState.READY, 0.0),
            Replica("b", "us-central1-a", Market.ON_DEMAND, ReplicaState.STARTING, 0.0),
            Replica("c", "us-east-1b", Market.SPOT, ReplicaState.PREEMPTED, 0.0),
        ),
    )
    later = tick_record(4, dataclasses.replace(result, observed=observed), now=1.0)["cost"]
    assert later["spot"] == pytest.approx(0.30)
    assert later["on_demand"] == pytest.approx(0.85362)
    assert later["total"] == pytest.approx(0.30 + 0.85362) and later["unpriced"] == 0
    assert json.loads(json.dumps(record)) == record  # JSON as logged


def sandbox_root(tmp_path: Path) -> Path:
    (tmp_path / "services").mkdir()
    shutil.copy(REPO / "services" / "llama.yaml", tmp_path / "services" / "llama.yaml")
    (tmp_path / "terraform").symlink_to(REPO / "terraform")
    return tmp_path


def test_cost_command_on_the_sandbox_says_nominal_and_integrates_the_tick_log(
    tmp_path: Path,
) -> None:
    root = sandbox_root(tmp_path)
    state = root / "state" / "llama"
    state.mkdir(parents=True)
    now = time.time()
    records = [
        {"message": "loop started", "interval_s": 30},
        {"message": "tick", "tick": 0, "cost": {"at": now - 90, "total": 6.0, "spot": 6.0,
                                               "on_demand": 0.0, "nominal": True}},
        "not json {",
        {"message": "tick", "tick": 1, "cost": {"at": now - 30, "total": 12.0, "spot": 6.0,
                                               "on_demand": 6.0, "nominal": True}},
    ]  # fmt: skip
    (state / "ticks.jsonl").write_text(
        "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n"
    )
    runner = CliRunner()
    result = runner.invoke(main, ["cost", "llama", "--root", str(root), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["unit"] == "nominal (sandbox)"
    assert data["now"]["per_hour"]["total"] == 0  # nothing runs
    mtd = data["month_to_date"]
    if now - 90 >= datetime_month_start(now):  # not run in the first 90 s of a month
        assert mtd["ticks"] == 2
        # 60 s at 6/h, then about 30 s (until now) at 12/h
        assert mtd["total"] == pytest.approx(6.0 * 60 / 3600 + 12.0 * 30 / 3600, rel=0.05)
        assert mtd["by_market"]["on_demand"] == pytest.approx(6.0 * 30 / 3600, rel=0.1)
    rows = data["prices"]
    assert {r["pool"] for r in rows} == {"local-1a", "local-1b", "local-2a"}
    assert all(r["nominal"] for r in rows)
    # where the sandbox's prices are and that they are fixed: never a date of `-`
    assert {r["source"] for r in rows} == {
        "sandbox nominal prices (reconciler/backends/sandbox.py SPOT_PRICE, ON_DEMAND_PRICE)"
    }
    assert {r["as_of"] for r in rows} == {"fixed, not read from a price list"}
    assert "$/h" not in data["month_to_date"]["method"]
    text = runner.invoke(main, ["cost", "llama", "--root", str(root)])
    assert text.exit_code == 0, text.output
    assert text.output.startswith("sandbox: nominal prices")
    assert "$" not in text.output  # never dollars on the sandbox, not even `$/h`
    assert "nominal/h  source, as of" in text.output
    assert "local-1a   spot" in text.output


def datetime_month_start(now: float) -> float:
    from reconciler.cost import month_start

    return month_start(now)


def test_cost_command_one_line_for_an_unknown_service(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["cost", "nope", "--root", str(sandbox_root(tmp_path))])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1


def test_cost_stops_at_destroy_and_counts_gaps_from_the_first_tick(tmp_path: Path) -> None:
    """Issue 17 review: month to date kept rising after destroy (the last tick's rate held
    up to 300 s past it), and gaps counted from the month's start read like an outage."""
    from reconciler.engine.state_store import mark_destroyed

    root = sandbox_root(tmp_path)
    state = root / "state" / "llama"
    state.mkdir(parents=True)
    now = time.time()
    if now - 200 < datetime_month_start(now):
        pytest.skip("the first 200 s of a month")
    tick = {"message": "tick", "tick": 0, "cost": {"at": now - 200, "total": 36.0,
                                                   "spot": 36.0, "on_demand": 0.0,
                                                   "nominal": True}}  # fmt: skip
    (state / "ticks.jsonl").write_text(json.dumps(tick) + "\n")
    mark_destroyed(state, now - 190)
    result = CliRunner().invoke(main, ["cost", "llama", "--root", str(root), "--json"])
    assert result.exit_code == 0, result.output
    mtd = json.loads(result.output)["month_to_date"]
    assert mtd["total"] == pytest.approx(36.0 * 10 / 3600, rel=0.01)  # 10 s, not 200 s
    assert mtd["uncovered_h"] == 0.0
    text = CliRunner().invoke(main, ["cost", "llama", "--root", str(root)]).output
    assert "0 min without ticks since its first tick this month (" in text, text
