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

   While the replicas ready now fall short of the rate (`ready`: a preemption without
   warning took them), there is nothing to run beside: keep and the switch both start
   their missing replicas, and SpotHedge's fallback runs an on-demand replica beside each
   spot one while it starts (`cover`: the type's on-demand $/h). The switch must then
   repay the difference of the two start costs, `start(best) - start(keep)`, where

       start(mix) = sum_t max(0, mix_t - ready_t) * (price_t + cover_t if at spot) * cold_start_s

   (plus its spare), since the cover of a small type costs more per request than a large
   type's on-demand replica.

Prices are the *effective* ones (`effective_prices`): a type's spot price while some zone
offers its spot, else its on-demand price, so a type whose spot vanished everywhere is priced
out and the mix re-solves away from it once the saving repays the move. `stepped_prices`
refines that for pools that are full rather than empty: spot as far as they hold, on-demand
beyond.

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
    spare_type: str = ""  # the type its spare is of (`Mix.spare_type`)


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


def stepped_prices(
    on_demand: Mapping[str, float],
    open_spot: Mapping[str, Iterable[float]],
    held_spot: Mapping[str, Iterable[tuple[float, int]]],
    use_spot: bool,
) -> tuple[dict[str, float], dict[str, tuple[int, float]]]:
    """Per type, its $/h and, when its spot is known to be limited, the step past which it
    costs on-demand (`solve_mix`'s `beyond`). `open_spot`: spot prices of the type's pools
    that may offer spot now; `held_spot`: (spot price, replicas it holds) of its pools that
    refused or lost spot lately. While a pool is open the type is priced at spot without a
    limit (the effective price); with none open, spot as far as the held pools hold and
    on-demand beyond; with nothing held, on-demand."""
    held = {t: [(p, n) for p, n in held_spot.get(t, ()) if n > 0 and p >= 0] for t in on_demand}
    prices = effective_prices(
        on_demand, {t: [*open_spot.get(t, ()), *(p for p, _ in held[t])] for t in on_demand},
        use_spot,
    )  # fmt: skip
    beyond: dict[str, tuple[int, float]] = {}
    for name, od in on_demand.items():
        if not use_spot or any(p >= 0 for p in open_spot.get(name, ())):
            continue
        limit = sum(n for _, n in held[name])
        if limit and prices[name] < od:
            beyond[name] = (limit, od)
    return prices, beyond


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
    beyond: Mapping[str, tuple[int, float]] | None = None,
    spare: Mapping[str, float] | None = None,
    ready: Mapping[str, int] | None = None,
    cover: Mapping[str, float] | None = None,
) -> MixChoice:
    """The mix to run for `rate_rps` given what runs (module docstring). `running` counts
    per type (types missing count 0); `caps`: per-type limits; `max_total`: at most this
    many replicas in all; `beyond`: per type, the price past a number of replicas
    (`solve_mix`'s stepped price: spot as far as the type's pools were seen to hold);
    `spare`: per type, the $/h of the spare when it is the mix's largest type (`solve_mix`),
    so every mix compared is priced with its spare; `ready`: per type, the replicas ready
    now, given only while they fall short of the rate, with `cover` the per-type on-demand
    $/h of SpotHedge's fallback (module docstring, rule 3). MixError (one line) when no mix
    serves the rate."""

    def solve(caps: Mapping[str, int], floors: Mapping[str, int] | None = None) -> Mix:
        return solve_mix(
            profile,
            rate_rps,
            size_aware=size_aware,
            max_utilization=max_utilization,
            prices=prices,
            max_total=max_total,
            beyond=beyond,
            spare=spare,
            caps=caps,
            floors=floors,
        )

    names = [g.name for g in profile.gpus]
    unknown = sorted(set(running) - set(names))
    if unknown:
        raise MixError(f"{unknown[0]!r} is not a GPU type of the profile ({', '.join(names)})")
    now = {n: int(running.get(n, 0)) for n in names}
    best = solve(caps=dict(caps or {}))
    if not any(now.values()):
        return MixChoice(
            best.counts, best.usd_per_hour, "nothing runs: the cheapest mix",
            spare_type=best.spare_type,
        )  # fmt: skip
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
                spare_type=best.spare_type,
            )
    saving = (keep.usd_per_hour - best.usd_per_hour) * hold_s
    price = {n: prices.get(n, _price(profile, n)) for n in names}
    if ready is not None:  # nothing to run beside: both start what is not ready
        overlap = (
            _start(best, ready, price, beyond or {}, cover or {}, spare or {})
            - _start(keep, ready, price, beyond or {}, cover or {}, spare or {})
        ) * cold_start_s
    else:
        new_spare = best.spare_type != keep.spare_type
        overlap = (
            sum(_added(keep.counts[n], best.counts[n], price[n], (beyond or {}).get(n))
                for n in names)
            + ((spare or {}).get(best.spare_type, 0.0) if new_spare else 0.0)
        ) * cold_start_s  # fmt: skip
    if best.counts != keep.counts and saving > overlap:
        return MixChoice(
            best.counts,
            best.usd_per_hour,
            f"switch: saves ${keep.usd_per_hour - best.usd_per_hour:.2f}/h, repaying the "
            f"${overlap / 3600:.2f} of starting {_shown(best.counts)} within {hold_s:g} s",
            switched=_types(best.counts) != _types(now),
            spare_type=best.spare_type,
        )
    return MixChoice(keep.counts, keep.usd_per_hour, how, spare_type=keep.spare_type)


def _added(have: int, want: int, price: float, step: tuple[int, float] | None) -> float:
    """$/h of the replicas of a type a switch starts beside what runs (`want - have` when
    positive): at `price` up to the step's limit, at the step's price beyond it."""
    if want <= have:
        return 0.0
    if step is None:
        return (want - have) * price
    limit, dearer = step
    cheap = max(0, min(want, limit) - have)
    return cheap * price + (want - have - cheap) * dearer


def _start(
    mix: Mix,
    ready: Mapping[str, int],
    price: Mapping[str, float],
    beyond: Mapping[str, tuple[int, float]],
    cover: Mapping[str, float],
    spare: Mapping[str, float],
) -> float:
    """$/h a mix runs while its replicas that are not ready start (module docstring, rule
    3): each at its price, a spot-priced one with its on-demand cover beside it, and its
    spare (spot, no cover)."""
    total = spare.get(mix.spare_type, 0.0)
    for name, want in mix.counts.items():
        have = ready.get(name, 0)
        if want <= have:
            continue
        od = cover.get(name, price[name])
        limit, dearer = beyond.get(name, (want, od))
        cheap = max(0, min(want, limit) - have)  # at its price, spot when below on-demand
        total += cheap * (price[name] + (od if price[name] < od else 0.0))
        total += (want - have - cheap) * dearer
    return total


def _price(profile: Profile, name: str) -> float:
    return next(g.usd_per_hour for g in profile.gpus if g.name == name)


def _types(counts: Mapping[str, int]) -> frozenset[str]:
    return frozenset(n for n, c in counts.items() if c > 0)


def _shown(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{c} × {n}" for n, c in counts.items() if c) or "nothing"
