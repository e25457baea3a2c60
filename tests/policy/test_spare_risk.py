"""When the default policy runs its spare (policy/spare_risk.py, issue 14)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.policy import ZoneOffer
from reconciler.policy.spare_risk import (
    AVAILABILITY_GOAL,
    documented_lead,
    extend_hold,
    hold_seconds,
    spare_needed,
)
from tests.policy.builders import offers


def _offer(cloud: str, lead: float | None = None) -> ZoneOffer:
    return ZoneOffer("z-1a", "z-1", cloud, 1.0, 3.0, lead)


def test_documented_leads_per_cloud_and_the_zones_own_lead_first() -> None:
    assert documented_lead(_offer("aws")) == 120
    assert documented_lead(_offer("gcp")) == documented_lead(_offer("azure")) == 30
    assert documented_lead(_offer("local")) == 0  # the sandbox's warning is a runtime knob
    assert documented_lead(_offer("aws", 45.0)) == 45


@given(st.floats(min_value=0.0, max_value=3600.0))
def test_one_uncovered_loss_per_hold_stays_within_the_availability_goal(shortfall: float) -> None:
    # A loss of `shortfall` seconds at most once per hold is a (1 - goal) share of the time.
    hold = hold_seconds(shortfall)
    assert math.isclose(shortfall, (1 - AVAILABILITY_GOAL) * hold, abs_tol=1e-6)


def test_a_late_notice_keeps_the_spare_and_a_covering_one_does_not() -> None:
    cold = 120.0
    # no warning at all: 120 s short, so 120 / 0.001 s = 33.3 h of spare from the loss
    assert extend_hold(None, [(1000.0, 0.0)], cold) == pytest.approx(1000.0 + 120_000.0)
    # 30 s of warning: 90 s short
    assert extend_hold(None, [(1000.0, 30.0)], cold) == pytest.approx(1000.0 + 90_000.0)
    # a warning as long as the cold start covers it: nothing changes
    assert extend_hold(None, [(1000.0, 120.0)], cold) is None
    assert extend_hold(5000.0, [(1000.0, 150.0)], cold) == 5000.0
    # the later end wins; never shortened
    assert extend_hold(10**6, [(1000.0, 0.0)], cold) == 10**6
    # before the cold start is measured the spare is kept anyway, not held by this
    assert extend_hold(None, [(1000.0, 0.0)], None) is None


def test_spare_needed_until_the_cold_start_is_measured() -> None:
    needed, why = spare_needed(offers(), [], None, None, 0.0)
    assert needed and "not measured" in why


def test_spare_follows_the_clouds_documented_lead_against_the_cold_start() -> None:
    aws = offers()  # builders: every zone is aws (120 s)
    assert spare_needed(aws, ["za-1a"], 100.0, None, 0.0)[0] is False
    needed, why = spare_needed(aws, ["za-1a"], 150.0, None, 0.0)
    assert needed and "aws notices (120 s) are shorter than the cold start (150 s)" in why
    gcp = (ZoneOffer("g-1a", "g-1", "gcp", 1.0, 3.0), *aws)
    # a GCP zone in use: its 30 s notice cannot cover a 100 s cold start
    assert spare_needed(gcp, ["g-1a"], 100.0, None, 0.0)[0] is True
    assert spare_needed(gcp, ["za-1a"], 100.0, None, 0.0)[0] is False
    # no spot replica yet: every spot zone counts
    assert spare_needed(gcp, [], 100.0, None, 0.0)[0] is True


def test_a_hold_keeps_the_spare_until_it_ends() -> None:
    assert spare_needed(offers(), ["za-1a"], 100.0, 500.0, 499.0)[0] is True
    assert "spare kept 8.3 h more" in spare_needed(offers(), [], 100.0, 30_000.0, 0.0)[1]
    assert "spare kept 2 min more" in spare_needed(offers(), [], 100.0, 130.0, 0.0)[1]
    assert spare_needed(offers(), ["za-1a"], 100.0, 500.0, 500.0)[0] is False


def test_without_the_documented_prior_only_a_seen_late_notice_keeps_the_spare() -> None:
    gcp = (ZoneOffer("g-1a", "g-1", "gcp", 1.0, 3.0),)
    assert spare_needed(gcp, ["g-1a"], 100.0, None, 0.0, documented_prior=False)[0] is False
    assert spare_needed(gcp, ["g-1a"], 100.0, 50.0, 0.0, documented_prior=False)[0] is True
