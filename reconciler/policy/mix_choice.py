"""Which GPU mix to run now, without flapping between mixes (issue 15, item 4).

`solve_mix` (policy/mix.py) gives the cheapest mix for a rate; running it blindly would move
replicas between types on every small change of rate or price. `choose_mix` starts from what
runs now and changes type only when the change pays for itself:

1. **Nothing runs**: the cheapest mix.
2. **Keep**: if what runs carries the rate, the cheapest part of it that still does (caps =
   the running counts: only scale-downs, no new type); else what runs plus the cheapest
   capacity added to it (floors = the running counts).
3. **Switch** to the cheapest mix overall only when its saving over *keep*, held for
   `hold_s`, repays running the new replicas beside the old while they start:

       (keep $/h - best $/h) * hold_s  >  sum_t max(0, best_t - keep_t) * price_t * cold_start_s

   `hold_s` is how long a decision stands before the autoscaler sheds capacity again (its
   `downscale_delay_seconds`, SkyServe's 1200 s by default): a saving that cannot repay the
   overlap within that window is noise. `cold_start_s` is the measured time from launch to
   ready (memory's `cold_start_s`). No threshold is tuned: both come from the service.

Prices are the *effective* ones (`effective_prices`): a type's spot price while some zone
offers its spot, else its on-demand price, so a type whose spot vanished everywhere is priced
out and the mix re-solves away from it once the saving repays the move.

The rate is the one the autoscaler settled on (policy/autoscaling.py applies the upscale and
downscale delays), so time hysteresis is not repeated here. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from reconciler.errors import MixError
from reconciler.policy.mix import Mix, solve_mix
from reconciler.spec.profile import Profile


@dataclass(frozen=True)
class MixChoice:
    """The counts to run per GPU type, their $/h at the effective prices, and why."""

    counts: dict[str, int]
    usd_per_hour: float
    reason: str
    switched: bool = False  # the type mix changed for price (rule 3), not just the counts


def effective_prices(
    on_demand: Mapping[str, float], spot: Mapping[str, Iterable[float]], use_spot: bool
) -> dict[str, float]:
    """Per type, $/h: the cheapest spot price among the zones that offer its spot now, else
    its on-demand price (also for every type when `use_spot` is False)."""
    prices: dict[str, float] = {}
    for name, od in on_demand.items():
        offered = [p for p in spot.get(name, ()) if p >= 0] if use_spot else []
        prices[name] = min([od, *offered])
    return prices


def choose_mix(
    profile: Profile,
    rate_rps: float,
    prices: Mapping[str, float],
    running: Mapping[str, int],
    *,
    cold_start_s: float,
    hold_s: float,
    size_aware: bool = False,
    max_utilization: float = 1.0,
    caps: Mapping[str, int] | None = None,
    max_total: int | None = None,
) -> MixChoice:
    """The mix to run for `rate_rps` given what runs (module docstring). `running` counts
    per type (types missing count 0); `caps`: per-type limits; `max_total`: at most this
    many replicas in all. MixError (one line) when no mix serves the rate."""

    def solve(**bounds: Mapping[str, int]) -> Mix:
        return solve_mix(
            profile,
            rate_rps,
            size_aware=size_aware,
            max_utilization=max_utilization,
            prices=prices,
            max_total=max_total,
            **bounds,
        )

    names = [g.name for g in profile.gpus]
    unknown = sorted(set(running) - set(names))
    if unknown:
        raise MixError(f"{unknown[0]!r} is not a GPU type of the profile ({', '.join(names)})")
    now = {n: int(running.get(n, 0)) for n in names}
    best = solve(caps=dict(caps or {}))
    if not any(now.values()):
        return MixChoice(best.counts, best.usd_per_hour, "nothing runs: the cheapest mix")
    limited = {n: min(now[n], (caps or {}).get(n, now[n])) for n in names}
    try:
        keep = solve(caps=limited)
        how = "what runs carries the rate: the cheapest part of it"
    except MixError:
        try:
            keep = solve(caps=dict(caps or {}), floors=limited)
            how = "what runs falls short: it plus the cheapest capacity added"
        except MixError:  # what runs plus more would pass max_total: only a switch serves
            return MixChoice(
                best.counts,
                best.usd_per_hour,
                f"what runs cannot grow to the rate within {max_total} replicas: the "
                "cheapest mix that can",
                switched=_types(best.counts) != _types(now),
            )
    saving = (keep.usd_per_hour - best.usd_per_hour) * hold_s
    overlap = (
        sum(max(0, best.counts[n] - keep.counts[n]) * prices.get(n, _price(profile, n))
            for n in names) * cold_start_s
    )  # fmt: skip
    if best.counts != keep.counts and saving > overlap:
        return MixChoice(
            best.counts,
            best.usd_per_hour,
            f"switch: saves ${keep.usd_per_hour - best.usd_per_hour:.2f}/h, repaying the "
            f"${overlap / 3600:.2f} of starting {_shown(best.counts)} within {hold_s:g} s",
            switched=_types(best.counts) != _types(now),
        )
    return MixChoice(keep.counts, keep.usd_per_hour, how)


def _price(profile: Profile, name: str) -> float:
    return next(g.usd_per_hour for g in profile.gpus if g.name == name)


def _types(counts: Mapping[str, int]) -> frozenset[str]:
    return frozenset(n for n, c in counts.items() if c > 0)


def _shown(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{c} × {n}" for n, c in counts.items() if c) or "nothing"
