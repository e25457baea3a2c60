"""Shared steps of every policy: choosing whom to stop, and assembling a Decision."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace

from reconciler.policy.decision import Decision, Launch, Termination
from reconciler.policy.memory import Memory
from reconciler.policy.observation import SCALE_DOWN_ORDER, Market, Observation, Replica


def replica_id(zone: str, market: Market, seq: int) -> str:
    """A new replica's name: unique (seq only grows) and safe as a resource or file name
    (lower-case letters, digits and `-`): a pool `<zone>/<GPU type>` (issue 15) names it
    `<zone>-<type>-...` (`local-1a/A100-80GB` -> `local-1a-a100-80gb-spot-7`)."""
    place = _NOT_IN_ID.sub("-", zone.lower())
    return f"{place}-{'spot' if market is Market.SPOT else 'od'}-{seq}"


_NOT_IN_ID = re.compile(r"[^a-z0-9-]")


def scale_down_key(replica: Replica) -> tuple[int, float]:
    """Furthest from serving first; among equals the newest (SkyServe's order)."""
    return (SCALE_DOWN_ORDER.get(replica.state, -1), -replica.launched_at)


def pick_by_order(replicas: Sequence[Replica], n: int) -> list[Replica]:
    return sorted(replicas, key=scale_down_key)[:n] if n > 0 else []


def pick_keeping_spread(replicas: Sequence[Replica], n: int) -> list[Replica]:
    """Stop `n` replicas, each from the zone that holds the most, so the spread survives."""
    by_zone: dict[str, list[Replica]] = {}
    for r in sorted(replicas, key=scale_down_key, reverse=True):
        by_zone.setdefault(r.zone, []).append(r)  # per zone: most valuable first, pop() worst
    chosen: list[Replica] = []
    for _ in range(min(n, len(replicas))):
        zone = max(sorted(by_zone), key=lambda z: len(by_zone[z]))
        chosen.append(by_zone[zone].pop())
        if not by_zone[zone]:
            del by_zone[zone]
    return chosen


def pick_ready_aware(replicas: Sequence[Replica], n: int) -> list[Replica]:
    """Stop `n` replicas furthest from serving first across every zone (a replica still
    starting goes before a READY one wherever it is); among equals, from the zone that holds
    the most, so the spread survives; then the newest."""
    left = list(replicas)
    chosen: list[Replica] = []
    for _ in range(min(max(n, 0), len(left))):
        counts: dict[str, int] = {}
        for r in left:
            counts[r.zone] = counts.get(r.zone, 0) + 1
        worst = min(
            left,
            key=lambda r: (scale_down_key(r)[0], -counts[r.zone], -r.launched_at, r.zone),
        )
        chosen.append(worst)
        left.remove(worst)
    return chosen


def hold(observed: Observation, memory: Memory, reason: str) -> Decision:
    """Keep everything as it is: used when the policy must not act on what it saw."""
    alive = [r for r in observed.replicas if r.alive]
    desired: dict[tuple[str, Market], int] = {}
    for r in alive:
        desired[(r.zone, r.market)] = desired.get((r.zone, r.market), 0) + 1
    return Decision(
        target=memory.target or 0,
        desired=desired,
        launches=(),
        terminations=(),
        lb_members=tuple(sorted(r.id for r in alive if r.ready)),
        memory=memory,
        held=True,
        reasons=(reason,),
    )


def assemble(
    *,
    target: int,
    observed: Observation,
    launches: Sequence[Launch],
    stopping: Sequence[tuple[Replica, str]],
    memory: Memory,
    reasons: Sequence[str],
    excluded_from_lb: Collection[str] = (),
) -> Decision:
    """Turn chosen launches and terminations into a Decision (desired counts, LB members)."""
    stop_ids = {r.id for r, _ in stopping}
    terminations = [Termination(r.id, r.zone, r.market, why) for r, why in stopping]
    # Terminal replicas are cleaned up: they hold no capacity, but their resources still exist.
    for r in observed.replicas:
        if not r.alive and r.id not in stop_ids:
            terminations.append(Termination(r.id, r.zone, r.market, f"clean up {r.state.value}"))
    desired: dict[tuple[str, Market], int] = {}
    members: list[str] = []
    for r in observed.replicas:
        if r.alive and r.id not in stop_ids:
            desired[(r.zone, r.market)] = desired.get((r.zone, r.market), 0) + 1
            if r.ready and r.id not in excluded_from_lb:
                members.append(r.id)
    for launch in launches:
        key = (launch.zone, launch.market)
        desired[key] = desired.get(key, 0) + 1
    runs = next((v.runs for v in memory.versions if v.number == memory.version), 1)
    return Decision(
        target=target,
        desired=desired,
        launches=tuple(replace(launch, version=runs) for launch in launches),
        terminations=tuple(terminations),
        lb_members=tuple(sorted(members)),
        memory=memory,
        reasons=tuple(reasons),
    )


def launch_many(
    n: int,
    market: Market,
    seq: int,
    counts: dict[str, int],
    choose: Callable[[dict[str, int], int], str | None],
    reason: str,
) -> tuple[list[Launch], int]:
    """Launch `n` replicas one at a time, each placement seeing the ones before it."""
    launches: list[Launch] = []
    for _ in range(n):
        zone = choose(counts, seq)
        if zone is None:
            break
        launches.append(Launch(replica_id(zone, market, seq), zone, market, reason))
        counts[zone] = counts.get(zone, 0) + 1
        seq += 1
    return launches, seq
