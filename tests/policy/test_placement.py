"""The dynamic fallback placer's zone statuses and choices."""

from __future__ import annotations

from reconciler.policy import ZoneStatus
from reconciler.policy.placement import choose_spot_zone, update_status
from tests.policy.builders import ZONES, offers

A, P = ZoneStatus.ACTIVE, ZoneStatus.PREEMPTED


def test_every_zone_starts_active() -> None:
    assert update_status({}, ZONES, [], []) == dict.fromkeys(ZONES, A)


def test_preemption_marks_preempted_and_launch_marks_active() -> None:
    status = update_status({}, ZONES, ["za-1a"], [])
    assert status == {"za-1a": P, "za-1b": A, "zb-1a": A}
    assert update_status(status, ZONES, [], ["za-1a"])["za-1a"] is A


def test_fewer_than_two_active_zones_reset_all_to_active() -> None:
    status = update_status({"za-1a": P}, ZONES, ["za-1b"], [])
    assert status == dict.fromkeys(ZONES, A)


def test_zones_no_longer_offered_are_forgotten() -> None:
    assert set(update_status({"gone-1a": P}, ZONES, [], [])) == set(ZONES)


def test_cheapest_active_unused_zone_first() -> None:
    priced = (*offers(["za-1a"], 2.0), *offers(["za-1b"], 1.0), *offers(["zb-1a"], 1.5))
    status = dict.fromkeys(ZONES, A)
    assert choose_spot_zone(priced, status, {}, 0, spread_by_count=False) == "za-1b"
    used = {"za-1b": 1}
    assert choose_spot_zone(priced, status, used, 0, spread_by_count=False) == "zb-1a"


def test_ties_rotate_with_the_sequence_number() -> None:
    status = dict.fromkeys(ZONES, A)
    picks = {choose_spot_zone(offers(), status, {}, s, spread_by_count=False) for s in range(3)}
    assert picks == set(ZONES)


def test_spread_by_count_prefers_the_least_loaded_active_zone() -> None:
    status = dict.fromkeys(ZONES, A)
    counts = {"za-1a": 2, "za-1b": 1, "zb-1a": 1}
    # SkyServe: all occupied, so any active zone (cheapest, rotate) - may stack on za-1a
    stacked = {
        choose_spot_zone(offers(), status, counts, s, spread_by_count=False) for s in range(3)
    }
    assert "za-1a" in stacked
    spread = {choose_spot_zone(offers(), status, counts, s, spread_by_count=True) for s in range(3)}
    assert spread == {"za-1b", "zb-1a"}


def test_no_spot_offer_means_no_zone() -> None:
    from reconciler.policy import ZoneOffer

    assert choose_spot_zone((ZoneOffer("z-1a", "z-1", "aws", None, 3.0),), {}, {}, 0,
                            spread_by_count=True) is None  # fmt: skip
