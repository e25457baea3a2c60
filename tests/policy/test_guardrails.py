"""Guardrails cap what one tick may change and protect the on-demand base."""

from __future__ import annotations

from reconciler.policy import Market, Memory, Signals, hedgeform
from reconciler.policy.guardrails import Limits, apply_guardrails
from tests.policy.builders import make_spec, observe, od, spot


def test_launches_beyond_the_cap_are_deferred() -> None:
    spec = make_spec(min_replicas=5, overprovision=1)
    observed = observe()
    d = hedgeform(spec, observed, Signals(), Memory(), 0)
    assert len(d.launches) == 11  # 6 spot + 5 on-demand cover
    g = apply_guardrails(d, observed, spec, Limits(max_launches=4))
    assert len(g.launches) == 4
    assert sum(g.desired.values()) == 4
    assert any("deferred" in r for r in g.reasons)


def test_terminations_are_capped_but_cleanups_are_free() -> None:
    spec = make_spec(min_replicas=1, overprovision=0)
    replicas = [spot(f"s{i}", "za-1a") for i in range(5)]
    gone = spot("gone", "za-1b")
    from dataclasses import replace

    from reconciler.policy import ReplicaState

    gone = replace(gone, state=ReplicaState.PREEMPTED)
    observed = observe(*replicas, gone)
    d = hedgeform(spec, observed, Signals(), Memory(target=1), 0)
    g = apply_guardrails(d, observed, spec, Limits(max_terminations=2))
    stopped = [t.replica_id for t in g.terminations]
    assert "gone" in stopped
    assert len(stopped) == 3  # two live replicas + the free cleanup
    assert g.count(Market.SPOT) == 3


def test_on_demand_is_never_stopped_below_the_base() -> None:
    spec = make_spec(min_replicas=2, overprovision=0, base_od=1)
    observed = observe(od("o1"), od("o2"), spot("s1", "za-1a"), spot("s2", "za-1b"))
    d = hedgeform(spec, observed, Signals(), Memory(target=2), 0)
    # a forged decision that stops both on-demand replicas
    from dataclasses import replace

    from reconciler.policy import Termination

    forged = replace(
        d,
        terminations=(
            Termination("o1", "za-1a", Market.ON_DEMAND, "x"),
            Termination("o2", "za-1a", Market.ON_DEMAND, "x"),
        ),
    )
    g = apply_guardrails(forged, observed, spec, Limits())
    assert [t.replica_id for t in g.terminations] == ["o1"]
    assert any("on-demand base is 1" in r for r in g.reasons)
