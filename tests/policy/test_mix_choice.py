"""Choosing the mix to run without flapping (policy/mix_choice.py), issue 15 item 4."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from reconciler.errors import MixError
from reconciler.policy.mix import solve_mix
from reconciler.policy.mix_choice import choose_mix, effective_prices, stepped_prices
from reconciler.spec.profile import parse_profile
from tests.policy.test_mix import instances

# Mélange's head example (../shared/melange/anchor.json `configs.head_example`), written out so
# these tests run without ../shared.
HEAD = parse_profile(
    {
        "gpus": {
            "A10G": {"usd_per_hour": 1.01, "max_rps": [[2, 1], [5, 2]]},
            "A100-80GB": {"usd_per_hour": 3.67, "max_rps": [[20, 20], [40, 20]]},
        },
        "distribution": [[0.2, 0.1], [0.5, 0.2]],
    }
)
COLD, HOLD = 600.0, 1200.0  # a 10-minute cold start; SkyServe's default downscale delay


def serves(profile: Any, counts: dict[str, int], rate: float) -> bool:
    """`counts` carries `rate` (size-oblivious): a mix capped at those counts exists."""
    caps = {g.name: counts.get(g.name, 0) for g in profile.gpus}
    try:
        solve_mix(profile, rate, size_aware=False, caps=caps)
    except MixError:
        return False
    return True


def test_nothing_running_gets_the_cheapest_mix() -> None:
    prices = {"A10G": 1.01, "A100-80GB": 3.67}
    got = choose_mix(HEAD, 10.0, prices, {}, cold_start_s=COLD, hold_s=HOLD)
    best = solve_mix(HEAD, 10.0, size_aware=False, prices=prices)
    assert (got.counts, got.usd_per_hour) == (best.counts, best.usd_per_hour)
    assert got.reason == "nothing runs: the cheapest mix"


def test_a_small_rise_adds_to_what_runs_instead_of_moving_types() -> None:
    """One A10G serves 2.5 req/s of the head example's mix, one A100-80GB 26.7. Three A10Gs
    run at 7.4 req/s; at 7.6 the cheapest mix from scratch is one A100 ($3.67/h), but its
    saving over a fourth A10G ($4.04/h) cannot repay starting it within the hold."""
    prices = {"A10G": 1.01, "A100-80GB": 3.67}
    assert solve_mix(HEAD, 7.6, size_aware=False, prices=prices).counts == {
        "A10G": 0,
        "A100-80GB": 1,
    }
    got = choose_mix(HEAD, 7.6, prices, {"A10G": 3}, cold_start_s=COLD, hold_s=HOLD)
    assert got.counts == {"A10G": 4, "A100-80GB": 0} and not got.switched
    assert got.reason == "what runs falls short: it plus the cheapest capacity added"
    # Far above, the saving repays the move: 20 req/s on A10Gs would take 8 ($8.08/h).
    far = choose_mix(HEAD, 20.0, prices, {"A10G": 3}, cold_start_s=COLD, hold_s=HOLD)
    assert far.switched and far.counts == {"A10G": 0, "A100-80GB": 1}


def test_when_a_types_spot_vanishes_the_mix_moves_only_if_the_saving_repays_the_move() -> None:
    on_demand = {"A10G": 1.01, "A100-80GB": 3.67}
    with_spot = effective_prices(on_demand, {"A10G": [0.30, 0.35], "A100-80GB": [1.50]}, True)
    assert with_spot == {"A10G": 0.30, "A100-80GB": 1.50}
    start = choose_mix(HEAD, 7.0, with_spot, {}, cold_start_s=COLD, hold_s=HOLD)
    assert start.counts == {"A10G": 3, "A100-80GB": 0}  # 3 x $0.30 beats 1 x $1.50
    gone = effective_prices(on_demand, {"A10G": [], "A100-80GB": [1.50]}, True)
    assert gone == {"A10G": 1.01, "A100-80GB": 1.50}  # no spot anywhere: on-demand
    moved = choose_mix(HEAD, 7.0, gone, start.counts, cold_start_s=COLD, hold_s=HOLD)
    assert moved.switched and moved.counts == {"A10G": 0, "A100-80GB": 1}
    assert moved.reason.startswith("switch: saves $1.53/h")
    # The same saving cannot repay a 10-minute overlap if the decision stands only 5 minutes.
    kept = choose_mix(HEAD, 7.0, gone, start.counts, cold_start_s=COLD, hold_s=300)
    assert not kept.switched and kept.counts == start.counts


def test_spot_is_ignored_without_use_spot() -> None:
    assert effective_prices({"L4": 0.8}, {"L4": [0.3]}, use_spot=False) == {"L4": 0.8}
    assert stepped_prices({"L4": 0.8}, {}, {"L4": [(0.3, 2)]}, use_spot=False) == (
        {"L4": 0.8},
        {},
    )


def test_a_type_whose_pools_are_full_is_spot_as_far_as_they_hold() -> None:
    """Every A10G pool refused or lost spot lately: A10G costs spot for the two replicas its
    pools hold and on-demand past them; one open pool (any price) lifts the limit; pools
    that hold nothing leave on-demand."""
    on_demand = {"A10G": 1.01, "A100-80GB": 3.67}
    held = {"A10G": [(0.30, 1), (0.35, 1), (0.20, 0)]}
    prices, beyond = stepped_prices(on_demand, {"A100-80GB": [1.22]}, held, True)
    assert prices == {"A10G": 0.30, "A100-80GB": 1.22} and beyond == {"A10G": (2, 1.01)}
    prices, beyond = stepped_prices(on_demand, {"A10G": [0.40]}, held, True)
    assert prices["A10G"] == 0.30 and beyond == {}
    prices, beyond = stepped_prices(on_demand, {}, {"A10G": [(0.30, 0)]}, True)
    assert prices == on_demand and beyond == {}
    # Three A10Gs run at 7 req/s; their pools hold all three: the mix keeps them, where the
    # plain effective price (on-demand, as if no spot were left) moved to one A100-80GB.
    keep = choose_mix(HEAD, 7.0, {"A10G": 0.30, "A100-80GB": 1.22}, {"A10G": 3},
                      cold_start_s=COLD, hold_s=HOLD, beyond={"A10G": (3, 1.01)})  # fmt: skip
    assert keep.counts == {"A10G": 3, "A100-80GB": 0} and not keep.switched
    gone = choose_mix(HEAD, 7.0, {"A10G": 1.01, "A100-80GB": 1.22}, {"A10G": 3},
                      cold_start_s=COLD, hold_s=HOLD)  # fmt: skip
    assert gone.switched and gone.counts == {"A10G": 0, "A100-80GB": 1}
    # Held for two only, the third costs on-demand: 2 × 0.30 + 1.01 = $1.61/h against
    # $1.22/h, a saving of $0.39/h × 1200 s that does not repay a 600 s start at $1.22/h.
    two = choose_mix(HEAD, 7.0, {"A10G": 0.30, "A100-80GB": 1.22}, {"A10G": 3},
                     cold_start_s=COLD, hold_s=HOLD, beyond={"A10G": (2, 1.01)})  # fmt: skip
    assert two.counts == {"A10G": 3, "A100-80GB": 0}
    assert two.usd_per_hour == pytest.approx(1.61)


@settings(max_examples=150, deadline=None)
@given(instances(), st.sampled_from([0.5, 1.0, 2.0]), st.dictionaries(
    st.sampled_from(["T0", "T1", "T2"]), st.integers(0, 4), max_size=3))  # fmt: skip
def test_choices_serve_the_rate_never_cost_more_than_keeping_and_stand_still(
    case: tuple[dict[str, Any], float], factor: float, running: dict[str, int]
) -> None:
    raw, rate = case
    profile = parse_profile(raw)
    names = {g.name for g in profile.gpus}
    running = {n: c for n, c in running.items() if n in names}
    prices = {g.name: g.usd_per_hour for g in profile.gpus}
    try:
        got = choose_mix(profile, rate * factor, prices, running, cold_start_s=COLD, hold_s=HOLD)
    except MixError:
        assume(False)
        raise
    assert serves(profile, got.counts, rate * factor)
    if any(running.values()) and serves(profile, running, rate * factor):
        # What runs already serves: never dearer than it, and no new type without a switch.
        kept = sum(c * prices[n] for n, c in running.items())
        assert got.usd_per_hour <= kept + 1e-6
        if not got.switched:
            assert all(got.counts[n] <= running.get(n, 0) for n in names)
    # A fixpoint: asked again with the same inputs, the choice does not move.
    again = choose_mix(profile, rate * factor, prices, got.counts, cold_start_s=COLD, hold_s=HOLD)
    assert again.counts == got.counts and not again.switched


@given(st.floats(1.0, 6.0), st.floats(-0.1, 0.1))
@settings(max_examples=100, deadline=None)
def test_small_rate_changes_never_switch_types(rate: float, wiggle: float) -> None:
    """Rates within ±10 % of the one a mix was chosen for never move replicas between types at
    list prices with a 10-minute cold start: only counts change."""
    prices = {"A10G": 1.01, "A100-80GB": 3.67}
    first = choose_mix(HEAD, rate, prices, {}, cold_start_s=COLD, hold_s=HOLD)
    second = choose_mix(HEAD, rate * (1 + wiggle), prices, first.counts, cold_start_s=COLD,
                        hold_s=HOLD)  # fmt: skip
    third = choose_mix(HEAD, rate, prices, second.counts, cold_start_s=COLD, hold_s=HOLD)
    for step in (second, third):
        assert not step.switched, (rate, wiggle, first.counts, second.counts, third.counts)


def test_unknown_types_in_running_are_refused_in_one_line() -> None:
    with pytest.raises(MixError, match="'H100' is not a GPU type of the profile"):
        choose_mix(HEAD, 1.0, {}, {"H100": 1}, cold_start_s=COLD, hold_s=HOLD)


def test_a_mix_is_priced_with_its_spare_so_a_large_spare_is_left_when_spot_returns() -> None:
    """One A100-80GB runs (A10G spot had been gone) with its spare; A10G spot is back. Without
    the spare the saving (3 × $0.34 against $1.22/h) cannot repay a 600 s start within the
    1200 s hold, so the dearer type stayed all day in a backtest window; with it, one
    A100-80GB and its spare ($2.45/h) against three A10Gs and theirs ($1.35/h), it does."""
    prices = {"A10G": 1.01 / 3, "A100-80GB": 3.67 / 3}
    running = {"A100-80GB": 1}
    bare = choose_mix(HEAD, 7.0, prices, running, cold_start_s=COLD, hold_s=HOLD)
    assert bare.counts == {"A10G": 0, "A100-80GB": 1} and not bare.switched
    spare = dict(prices)  # one spare, at each type's spot price
    moved = choose_mix(HEAD, 7.0, prices, running, cold_start_s=COLD, hold_s=HOLD, spare=spare)
    assert moved.switched and moved.counts == {"A10G": 3, "A100-80GB": 0}
    assert moved.spare_type == "A10G" and moved.usd_per_hour == pytest.approx(4 * 1.01 / 3)
    assert moved.reason.startswith("switch: saves $1.10/h")


def test_with_nothing_ready_both_sides_start_and_spot_pays_for_its_cover() -> None:
    """At 20 req/s with the A100-80GB's spot gone (priced at on-demand, $3.67/h) and A10G
    spot at $0.34/h, eight A10Gs ($2.69/h) save $0.98/h. With its on-demand A100-80GB
    running, the switch starts eight spot A10Gs beside it: $2.69/h for 120 s, repaid. With
    nothing ready, staying starts one on-demand A100-80GB ($3.67/h) while the switch starts
    eight spot A10Gs *and* the eight on-demand ones SpotHedge covers them with ($10.77/h).
    The saving earns $0.33 within the 1200 s hold; the difference, $7.10/h, costs $0.24
    over a 120 s start (it switches) and $0.36 over a 180 s one (it stays)."""
    prices = {"A10G": 1.01 / 3, "A100-80GB": 3.67}
    cover = {"A10G": 1.01, "A100-80GB": 3.67}
    running = {"A100-80GB": 1}

    def choose(cold: float, ready: dict[str, int] | None) -> Any:
        return choose_mix(
            HEAD, 20.0, prices, running, cold_start_s=cold, hold_s=HOLD, ready=ready, cover=cover
        )

    assert choose(120.0, None).counts == {"A10G": 8, "A100-80GB": 0}  # beside what runs
    assert choose(120.0, {}).counts == {"A10G": 8, "A100-80GB": 0}
    stays = choose(180.0, {})
    assert stays.counts == {"A10G": 0, "A100-80GB": 1} and not stays.switched
    assert choose(180.0, None).counts == {"A10G": 8, "A100-80GB": 0}
    # Replicas already ready start nothing: with five A10Gs ready (short of 20 req/s), the
    # switch starts three and their cover, cheaper than the A100-80GB: it switches.
    assert choose(180.0, {"A10G": 5}).counts == {"A10G": 8, "A100-80GB": 0}
