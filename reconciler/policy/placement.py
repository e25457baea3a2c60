"""The dynamic fallback spot placer, as pure functions over zone statuses.

Every candidate zone starts ACTIVE. A preemption or a capacity failure marks a zone PREEMPTED,
a successful launch marks it ACTIVE again, and when fewer than two zones remain ACTIVE all reset
to ACTIVE (there is nowhere better to go). A new spot replica goes to an ACTIVE zone that hosts
none yet if there is one, else to any ACTIVE zone; cheapest first.

The reset shares a deadlock with SkyServe (issue 14): reset zones without capacity are
retried first because they host nothing, so the one zone with capacity never gets a second
replica. Hedgeform's placer (`reset=False`, `queue=True`) keeps PREEMPTED zones at the back
of the queue instead: they are used, fewest replicas first, when no ACTIVE zone is free to
ask, and a zone refusing capacity sits out its retry delay (capacity_backoff.py).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

from reconciler.policy.memory import ZoneStatus
from reconciler.policy.observation import ZoneOffer

MIN_ACTIVE_ZONES = 2


def update_status(
    status: Mapping[str, ZoneStatus],
    zones: Sequence[str],
    preempted: Iterable[str],
    launched: Iterable[str],
    *,
    reset: bool = True,
) -> dict[str, ZoneStatus]:
    """New statuses after this tick's preemptions (and capacity failures) and launches;
    `reset`: SkyServe's rule, all ACTIVE again when fewer than two are."""
    new = {z: status.get(z, ZoneStatus.ACTIVE) for z in zones}
    for zone in launched:
        if zone in new:
            new[zone] = ZoneStatus.ACTIVE
    for zone in preempted:
        if zone in new:
            new[zone] = ZoneStatus.PREEMPTED
    if reset and sum(1 for s in new.values() if s is ZoneStatus.ACTIVE) < MIN_ACTIVE_ZONES:
        new = dict.fromkeys(new, ZoneStatus.ACTIVE)
    return new


def choose_spot_zone(
    offers: Sequence[ZoneOffer],
    status: Mapping[str, ZoneStatus],
    counts: Mapping[str, int],
    seq: int,
    *,
    spread_by_count: bool,
    waiting: Collection[str] = frozenset(),
    queue: bool = False,
    avoid: Collection[str] = frozenset(),
) -> str | None:
    """The zone for the next spot replica, or None when no zone offers spot.

    `spread_by_count` (hedgeform) prefers the zone with the fewest replicas among ACTIVE zones;
    without it (SkyServe) an occupied ACTIVE zone is as good as any other occupied one. Ties are
    broken by rotating with `seq`, which the caller advances per launch. Zones in `waiting`
    (retry delays, hedgeform) are skipped; while all ACTIVE zones wait, None, unless `queue`
    (Hedgeform): then the PREEMPTED zones not waiting are asked. Zones in `avoid` are never
    chosen (a spare's diversity rule, policy/spothedge.py).
    """
    spot = [o for o in offers if o.spot_price is not None and o.zone not in avoid]
    active = [o for o in spot if status.get(o.zone, ZoneStatus.ACTIVE) is ZoneStatus.ACTIVE]
    if waiting:
        # A zone waiting out a retry delay is not asked; while every ACTIVE zone waits, wait
        # too (on-demand covers) rather than fall back to zones marked PREEMPTED.
        if not queue and active and all(o.zone in waiting for o in active):
            return None
        spot = [o for o in spot if o.zone not in waiting]
        active = [o for o in active if o.zone not in waiting]
    if not spot:
        return None
    pool = active or spot
    if spread_by_count:
        fewest = min(counts.get(o.zone, 0) for o in pool)
        pool = [o for o in pool if counts.get(o.zone, 0) == fewest]
    else:
        unused = [o for o in pool if counts.get(o.zone, 0) == 0]
        pool = unused or pool
    cheapest = min(o.spot_price for o in pool if o.spot_price is not None)
    tied = sorted(o.zone for o in pool if o.spot_price == cheapest)
    return tied[seq % len(tied)]


def choose_on_demand_zone(
    offers: Sequence[ZoneOffer], counts: Mapping[str, int], seq: int
) -> str | None:
    """Cheapest on-demand zone, spreading ties by count then rotation; None without offers."""
    if not offers:
        return None
    cheapest = min(o.on_demand_price for o in offers)
    pool = [o for o in offers if o.on_demand_price == cheapest]
    fewest = min(counts.get(o.zone, 0) for o in pool)
    tied = sorted(o.zone for o in pool if counts.get(o.zone, 0) == fewest)
    return tied[seq % len(tied)]
