"""The places where hedgeform deliberately differs from SkyServe's SpotHedge."""

from __future__ import annotations

import pytest

from reconciler.errors import MemoryFormatError
from reconciler.policy import (
    FailureKind,
    LaunchResult,
    Market,
    Memory,
    Signals,
    ZoneStatus,
    hedgeform,
    spothedge,
)
from tests.policy.builders import make_spec, observe, spot

NOW = 1000.0


@pytest.mark.parametrize(
    ("policy", "failure", "marked"),
    [
        (spothedge, FailureKind.QUOTA, True),  # SkyServe: any failure marks the zone
        (spothedge, FailureKind.CAPACITY, True),
        (hedgeform, FailureKind.QUOTA, False),  # a quota error says nothing about the market
        (hedgeform, FailureKind.CONFIG, False),
        (hedgeform, FailureKind.CAPACITY, True),
    ],
)
def test_which_launch_failures_mark_a_zone_preempted(
    policy: object, failure: FailureKind, marked: bool
) -> None:
    result = LaunchResult("za-1a", Market.SPOT, ok=False, failure=failure)
    spec = make_spec(min_replicas=1, overprovision=0)
    decision = policy(spec, observe(), Signals(launch_results=(result,)), Memory(), NOW)  # type: ignore[operator]
    assert (decision.memory.zone_status["za-1a"] is ZoneStatus.PREEMPTED) == marked


def test_scale_down_keeps_the_spread_in_hedgeform_but_not_in_spothedge() -> None:
    # 5 spot, 2 wanted: za-1a holds three (newest last), the others one each
    replicas = [
        spot("a1", "za-1a", at=1),
        spot("b1", "za-1b", at=5),
        spot("c1", "zb-1a", at=6),
        spot("a2", "za-1a", at=2),
        spot("a3", "za-1a", at=3),
    ]
    spec = make_spec(min_replicas=2, overprovision=0)
    h = hedgeform(spec, observe(*replicas), Signals(), Memory(target=2), NOW)
    s = spothedge(spec, observe(*replicas), Signals(), Memory(target=2), NOW)
    kept_h = {r.zone for r in replicas if r.id not in {t.replica_id for t in h.terminations}}
    kept_s = {r.zone for r in replicas if r.id not in {t.replica_id for t in s.terminations}}
    assert len(kept_h) == 2  # two zones survive
    assert kept_s == {"za-1a"}  # SkyServe stops the newest: b1, c1, a3 -> both left in za-1a


def test_memory_from_another_version_is_refused() -> None:
    with pytest.raises(MemoryFormatError):
        Memory.from_json({"version": 99})
    with pytest.raises(MemoryFormatError):
        Memory.from_json({"version": 1, "target": 1})


def test_warned_replicas_stay_in_the_lb_while_the_others_cannot_carry_the_target() -> None:
    """Draining the last servers on a warning empties the load balancer before cover is
    ready (seen in the soak): they keep serving until the cloud takes them."""
    from reconciler.policy import Notice, NoticeKind

    spec = make_spec(min_replicas=2, overprovision=0)
    replicas = [spot("a", "za-1a"), spot("b", "za-1a"), spot("c", "zb-1a")]
    warn_ab = Signals(
        notices=(
            Notice(NoticeKind.WARNING, "a", "za-1a", NOW),
            Notice(NoticeKind.WARNING, "b", "za-1a", NOW),
        )
    )
    d = hedgeform(spec, observe(*replicas), warn_ab, Memory(target=2), NOW)
    assert set(d.lb_members) == {"a", "b", "c"}  # only c would be left: keep a and b
    assert d.launches  # cover launches at once all the same
    warn_a = Signals(notices=(Notice(NoticeKind.WARNING, "a", "za-1a", NOW),))
    d = hedgeform(spec, observe(*replicas), warn_a, Memory(target=2), NOW)
    assert set(d.lb_members) == {"b", "c"}  # b and c carry the target: drain a
