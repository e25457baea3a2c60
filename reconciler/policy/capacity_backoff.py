"""Per-zone retry delays after spot capacity refusals (Hedgeform's policy only).

A zone that just refused spot capacity is not asked again at every tick: it is retried after
an exponential, jittered, capped delay kept in memory (`Memory.zone_backoff`), while
on-demand cover serves (the fallback counts ready spot, so it never waits for this). Without
it a loop ticking every 30 s asks every stocked-out zone twice a minute (the 10-minute
stock-out measurement in docs/operations.md).

The numbers, and where they come from:
- 60 s first delay, doubling: AWS's advice for InsufficientInstanceCapacity is to "wait a few
  minutes and then submit your request again" (EC2 User Guide, "Troubleshoot instance launch
  issues"); one minute is the least of "a few", and doubling finds longer stock-outs fast.
- 600 s cap: the longest a zone whose capacity came back can stay unused; on-demand costs
  about three times spot, so the cap bounds the premium paid after a stock-out ends.
- Equal jitter (half the delay fixed, half spread): "Exponential Backoff And Jitter" (AWS
  Architecture Blog) - zones refused in the same tick are not all retried in the same tick.
  The spread is a hash of (zone, count, seed), so the policy stays deterministic.
- Forgotten an hour after the last refusal (the placer's preemption memory is an hour too):
  a stock-out hours later starts again at 60 s.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence

from reconciler.policy.memory import Backoff
from reconciler.policy.observation import Market
from reconciler.policy.signals import FailureKind, LaunchResult

CAPACITY_RETRY_BASE_S = 60.0
CAPACITY_RETRY_CAP_S = 600.0
CAPACITY_RETRY_RESET_S = 3600.0
KIND = "capacity"


def capacity_delay(zone: str, count: int, seed: int) -> float:
    """Seconds before a zone refused `count` times in a row is asked again (>= 1 refusal)."""
    doublings = min(max(count, 1) - 1, 32)  # the cap is reached long before; no overflow
    full = min(CAPACITY_RETRY_CAP_S, CAPACITY_RETRY_BASE_S * 2.0**doublings)
    spread = zlib.crc32(f"{zone}/{count}/{seed}".encode()) / 2.0**32  # in [0, 1)
    return full / 2 + full / 2 * spread


def update_zone_backoff(
    backoffs: Mapping[str, Backoff],
    results: Sequence[LaunchResult],
    now: float,
    seed: int,
) -> dict[str, Backoff]:
    """Backoffs after the last apply's spot launches: a capacity refusal counts once per zone
    and apply; a spot launch that succeeded clears its zone."""
    new = {
        zone: b
        for zone, b in backoffs.items()
        if now - b.last_at < CAPACITY_RETRY_RESET_S or b.blocks(now)
    }
    refused: set[str] = set()
    for result in results:
        if result.market is not Market.SPOT:
            continue
        if result.ok:
            new.pop(result.zone, None)
        elif result.failure is FailureKind.CAPACITY and result.zone not in refused:
            refused.add(result.zone)
            previous = new.get(result.zone)
            count = previous.count + 1 if previous is not None else 1
            delay = capacity_delay(result.zone, count, seed)
            new[result.zone] = Backoff(KIND, count, now, now + delay)
    return new


def capacity_blocked(backoffs: Mapping[str, Backoff], now: float) -> frozenset[str]:
    """Zones whose spot retry delay has not yet passed."""
    return frozenset(zone for zone, b in backoffs.items() if b.blocks(now))
