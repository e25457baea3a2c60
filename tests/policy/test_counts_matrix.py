"""SpotHedge counts over the factors that drive them: load x ready spot x zone states x notices."""

from __future__ import annotations

import pytest

from reconciler.policy import (
    Market,
    Memory,
    Notice,
    NoticeKind,
    Signals,
    ZoneStatus,
    hedgeform,
    spothedge,
)
from reconciler.policy.decision import Decision
from tests.policy.builders import ZONES, make_spec, observe, od, spot

NOW = 10_000.0


def counts_after(decision: Decision) -> tuple[int, int]:
    return decision.count(Market.SPOT), decision.count(Market.ON_DEMAND)


@pytest.mark.parametrize("policy", [spothedge, hedgeform], ids=["spothedge", "hedgeform"])
@pytest.mark.parametrize(
    ("qps", "expected_target"),
    [(0.0, 2), (15.0, 2), (31.0, 4), (100.0, 5)],  # min 2, max 5, 10 qps per replica
)
@pytest.mark.parametrize("ready_spot", [0, 1, 2, 3, 5])
def test_spot_and_fallback_counts_follow_target_and_ready_spot(
    policy: object, qps: float, expected_target: int, ready_spot: int
) -> None:
    spec = make_spec(min_replicas=2, max_replicas=5, target_qps=10, overprovision=1, up=0, down=0)
    zones = [ZONES[i % 3] for i in range(ready_spot)]
    observed = observe(*(spot(f"s{i}", z) for i, z in enumerate(zones)))
    decision = policy(spec, observed, Signals(qps=qps, qps_at=NOW), Memory(target=2), NOW)  # type: ignore[operator]
    assert decision.target == expected_target
    n_spot, n_od = counts_after(decision)
    assert n_spot == expected_target + 1  # target + num_overprovision spot, always
    assert n_od == max(0, expected_target - ready_spot)  # cover only what ready spot lacks


@pytest.mark.parametrize("policy", [spothedge, hedgeform], ids=["spothedge", "hedgeform"])
@pytest.mark.parametrize(
    ("statuses", "occupied", "allowed"),
    [
        # an empty ACTIVE zone wins over every occupied or PREEMPTED zone
        ({"za-1a": "active", "za-1b": "active", "zb-1a": "active"}, ["za-1a", "za-1b"], {"zb-1a"}),
        ({"za-1a": "active", "za-1b": "preempted", "zb-1a": "active"}, ["za-1a"], {"zb-1a"}),
        # no empty ACTIVE zone: any ACTIVE zone, never the PREEMPTED one
        ({"za-1a": "active", "za-1b": "active", "zb-1a": "preempted"}, ["za-1a", "za-1b"],
         {"za-1a", "za-1b"}),
    ],
)  # fmt: skip
def test_new_spot_replica_goes_where_the_placer_says(
    policy: object, statuses: dict[str, str], occupied: list[str], allowed: set[str]
) -> None:
    spec = make_spec(min_replicas=len(occupied), overprovision=1)
    memory = Memory(
        target=len(occupied), zone_status={z: ZoneStatus(s) for z, s in statuses.items()}
    )
    observed = observe(*(spot(f"s{i}", z) for i, z in enumerate(occupied)))
    decision = policy(spec, observed, Signals(), memory, NOW)  # type: ignore[operator]
    assert len(decision.launches) == 1
    assert decision.launches[0].market is Market.SPOT
    assert decision.launches[0].zone in allowed


@pytest.mark.parametrize(
    ("policy", "notice_kind", "expect_replacement", "expect_zone_preempted"),
    [
        (spothedge, NoticeKind.WARNING, False, False),  # SkyServe ignores warnings
        (hedgeform, NoticeKind.WARNING, True, True),  # replace at once, mark the zone
        (spothedge, NoticeKind.PREEMPTED, False, True),
        (hedgeform, NoticeKind.PREEMPTED, False, True),
    ],
)
def test_notices(
    policy: object, notice_kind: NoticeKind, expect_replacement: bool, expect_zone_preempted: bool
) -> None:
    spec = make_spec(min_replicas=3, overprovision=1)
    replicas = [spot("s0", "za-1a"), spot("s1", "za-1b"), spot("s2", "zb-1a"), spot("s3", "za-1a")]
    if notice_kind is NoticeKind.PREEMPTED:
        replicas = replicas[1:]  # the preempted replica is gone
    signals = Signals(notices=(Notice(notice_kind, "s0", "za-1a", NOW),))
    decision = policy(spec, observe(*replicas), signals, Memory(target=3), NOW)  # type: ignore[operator]
    status = decision.memory.zone_status["za-1a"]
    assert (status is ZoneStatus.PREEMPTED) == expect_zone_preempted
    spot_launches = [x for x in decision.launches if x.market is Market.SPOT]
    od_launches = [x for x in decision.launches if x.market is Market.ON_DEMAND]
    if notice_kind is NoticeKind.WARNING:
        assert len(spot_launches) == (1 if expect_replacement else 0)
        # 3 ready spot remain serving either way: the target is covered, no on-demand needed
        assert od_launches == []
        assert ("s0" in decision.lb_members) != expect_replacement
    else:
        assert len(spot_launches) == 1  # 3 alive < 4 wanted
        assert all(x.zone != "za-1a" for x in spot_launches)


def test_warning_on_a_needed_replica_brings_on_demand_cover_at_once() -> None:
    spec = make_spec(min_replicas=3, overprovision=1)
    replicas = [spot("s0", "za-1a"), spot("s1", "za-1b"), spot("s2", "zb-1a")]
    signals = Signals(notices=(Notice(NoticeKind.WARNING, "s0", "za-1a", NOW),))
    h = hedgeform(spec, observe(*replicas), signals, Memory(target=3), NOW)
    s = spothedge(spec, observe(*replicas), signals, Memory(target=3), NOW)
    assert counts_after(h) == (5, 1)  # s0 still alive + 2 new spot; 1 on-demand covers s0
    assert counts_after(s) == (4, 0)  # SkyServe waits until s0 is gone


def test_on_demand_stays_until_replacement_spot_is_ready() -> None:
    spec = make_spec(min_replicas=3, overprovision=1)
    replicas = [
        spot("s1", "za-1b"),
        spot("s2", "zb-1a"),
        spot("s3", "za-1a", ready=False),
        spot("s4", "za-1b", ready=False),
        od("o1"),
    ]
    decision = hedgeform(spec, observe(*replicas), Signals(), Memory(target=3), NOW)
    assert decision.terminations == ()
    assert counts_after(decision) == (4, 1)
    now_ready = [r if r.id != "s3" else spot("s3", "za-1a") for r in replicas]
    decision = hedgeform(spec, observe(*now_ready), Signals(), decision.memory, NOW + 30)
    assert [t.replica_id for t in decision.terminations] == ["o1"]


@pytest.mark.parametrize(("base", "expected_od"), [(0, 0), (1, 1), (2, 2)])
def test_base_on_demand_replicas_are_kept_even_when_spot_is_plentiful(
    base: int, expected_od: int
) -> None:
    spec = make_spec(min_replicas=3, overprovision=1, base_od=base)
    replicas = [spot(f"s{i}", ZONES[i % 3]) for i in range(4)]
    decision = spothedge(spec, observe(*replicas), Signals(), Memory(target=3), NOW)
    n_spot, n_od = counts_after(decision)
    assert n_od == expected_od
    assert n_spot == 4 - base


def test_without_dynamic_fallback_no_on_demand_is_launched() -> None:
    spec = make_spec(min_replicas=3, dynamic=False)
    decision = spothedge(spec, observe(), Signals(), Memory(), NOW)
    assert counts_after(decision) == (4, 0)


def test_without_spot_everything_is_on_demand() -> None:
    spec = make_spec(min_replicas=2, use_spot=False)
    decision = hedgeform(spec, observe(), Signals(), Memory(), NOW)
    assert counts_after(decision) == (0, 2)


def test_incomplete_observation_holds_everything() -> None:
    spec = make_spec(min_replicas=3)
    observed = observe(spot("s0", "za-1a"))
    held = hedgeform(
        spec,
        type(observed)(observed.replicas, observed.zones, complete=False),
        Signals(),
        Memory(target=3),
        NOW,
    )
    assert held.held and held.launches == () and held.terminations == ()
    assert held.memory == Memory(target=3)
