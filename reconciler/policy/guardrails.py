"""Guardrails on a Decision, applied after the policy and before rendering.

A bug, a bad metric or a flapping signal must not turn into a fleet-wide change in one tick:
launches and terminations per tick are capped, and on-demand replicas are never stopped below
`base_ondemand_fallback_replicas`. Cleanups of replicas already gone (preempted, failed) are
free and never capped. Pure, like the rest of the policy package.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from reconciler.policy.decision import Decision
from reconciler.policy.observation import Market, Observation
from reconciler.spec.model import ServiceSpec


@dataclass(frozen=True)
class Limits:
    max_launches: int = 10
    max_terminations: int = 10


def apply_guardrails(
    decision: Decision, observed: Observation, spec: ServiceSpec, limits: Limits
) -> Decision:
    alive = {r.id: r for r in observed.replicas if r.alive}
    notes: list[str] = []
    launches = decision.launches[: limits.max_launches]
    if len(launches) < len(decision.launches):
        notes.append(f"guardrail: {len(decision.launches) - len(launches)} launches deferred")

    base = spec.service.replica_policy.base_ondemand_fallback_replicas
    od_alive = sum(1 for r in alive.values() if r.market is Market.ON_DEMAND)
    stopping_od = 0
    kept_terms = []
    budget = limits.max_terminations
    for term in decision.terminations:
        if term.replica_id not in alive:  # cleanup of a replica already gone
            kept_terms.append(term)
            continue
        if term.market is Market.ON_DEMAND and od_alive - stopping_od - 1 < base:
            notes.append(f"guardrail: keep {term.replica_id}, on-demand base is {base}")
            continue
        if budget <= 0:
            notes.append(f"guardrail: termination of {term.replica_id} deferred")
            continue
        budget -= 1
        stopping_od += term.market is Market.ON_DEMAND
        kept_terms.append(term)
    if not notes:
        return decision
    dropped = {t.replica_id for t in decision.terminations} - {t.replica_id for t in kept_terms}
    desired = dict(decision.desired)
    for launch in decision.launches[len(launches) :]:
        desired[(launch.zone, launch.market)] -= 1
    for rid in dropped:
        r = alive[rid]
        desired[(r.zone, r.market)] = desired.get((r.zone, r.market), 0) + 1
    members = set(decision.lb_members) | {rid for rid in dropped if alive[rid].ready}
    return replace(
        decision,
        launches=tuple(launches),
        terminations=tuple(kept_terms),
        desired={k: v for k, v in desired.items() if v > 0},
        lb_members=tuple(sorted(members)),
        reasons=(*decision.reasons, *notes),
    )
