"""When Hedgeform runs its overprovisioned spare spot replicas (issue 14, docs/policy.md).

SpotHedge always runs `num_overprovision` spot replicas beyond the target. A spare earns most
of its price when a preemption's own warning is too short to field a replacement in time:
with a lead at least as long as the cold start, the replacement launched on the warning is up
when the old replica goes (though the loop sees it READY only at its next decision, so each
such preemption still costs up to one loop interval: a trade of availability for cost that
docs/policy.md measures). So Hedgeform runs the spare only while the service is *at risk*:

- while the cold start is not measured yet (`Memory.cold_start_s`: the longest of the last
  five measured, so one fast start does not drop the spare), or a zone holding our spot
  replicas (any spot zone while none does) belongs to a cloud whose documented notice lead
  (`DOCUMENTED_LEAD_S`, or the zone's own `ZoneOffer.notice_lead_s`) is shorter than the
  measured cold start: the cloud itself says its warnings cannot cover us;
- for `hold_seconds` after a preemption the policy saw whose lead (0 without a warning) was
  shorter than the measured cold start: evidence against the documented lead.

`hold_seconds(shortfall) = shortfall / (1 - AVAILABILITY_GOAL)`, where the shortfall is how
much earlier the replacement had to start (cold start - lead). From first principles: an
uncovered preemption with no spare standing costs about `shortfall` seconds below the target;
holding the spare for `shortfall / (1 - A)` after each means that two such unprotected
losses are at least that far apart, so they cost at most a `1 - A` share of the time. (The
bound covers notices shorter than the cold start, not the one-interval cost above.)
A = 99.9 % is the availability the issue asks of the policy.

Documented leads (seconds between the notice and the reclaim):
- aws 120: "a Spot Instance interruption notice, which is a warning that is issued two
  minutes before Amazon EC2 stops or terminates your Spot Instance" (EC2 User Guide,
  "Spot Instance interruption notices"; best effort, so evidence can contradict it);
- gcp 30: "Compute Engine sends a preemption notice ... you have 30 seconds" (Compute
  Engine docs, "Spot VMs", preemption process);
- azure 30: Scheduled Events announce a Spot eviction (`Preempt`) "with a minimum of 30
  seconds" (Azure docs, "Scheduled Events for Linux VMs");
- any other cloud (the local sandbox, whose market's warning is a runtime setting): none.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from reconciler.policy.observation import ZoneOffer

AVAILABILITY_GOAL = 0.999
DOCUMENTED_LEAD_S = {"aws": 120.0, "gcp": 30.0, "azure": 30.0}


def documented_lead(offer: ZoneOffer) -> float:
    """Seconds of notice the zone's cloud gives before a spot reclaim (0: none documented)."""
    if offer.notice_lead_s is not None:
        return offer.notice_lead_s
    return DOCUMENTED_LEAD_S.get(offer.cloud, 0.0)


def hold_seconds(shortfall_s: float) -> float:
    """How long to keep the spare after a preemption whose replacement started
    `shortfall_s` seconds too late (module docstring)."""
    return max(0.0, shortfall_s) / (1.0 - AVAILABILITY_GOAL)


def extend_hold(
    spare_until: float | None,
    leads: Iterable[tuple[float, float]],
    cold_start_s: float | None,
) -> float | None:
    """`spare_until` after this tick's preemptions, each as (when, lead seconds). Before the
    cold start is measured the spare is kept anyway (`spare_needed`)."""
    if cold_start_s is None:
        return spare_until
    for at, lead in leads:
        if lead < cold_start_s:
            until = at + hold_seconds(cold_start_s - lead)
            spare_until = until if spare_until is None else max(spare_until, until)
    return spare_until


def spare_needed(
    offers: Sequence[ZoneOffer],
    spot_zones: Iterable[str],
    cold_start_s: float | None,
    spare_until: float | None,
    now: float,
    *,
    documented_prior: bool = True,
) -> tuple[bool, str]:
    """Whether to run the spare now, and why (for the decision's reasons). Without
    `documented_prior` (an ablation, docs/policy.md) every lead is trusted until a late
    preemption is seen."""
    if cold_start_s is None:
        return True, "spare kept: cold start not measured yet"
    if spare_until is not None and now < spare_until:
        left = spare_until - now
        more = f"{left / 3600:.1f} h" if left >= 3600 else f"{max(1, round(left / 60))} min"
        return True, (
            f"spare kept {more} more: a recent preemption's notice was shorter than the cold start"
        )
    if not documented_prior:
        return False, "no spare: no late notice seen"
    by_zone = {o.zone: o for o in offers if o.spot_price is not None}
    in_use = sorted(z for z in set(spot_zones) if z in by_zone) or sorted(by_zone)
    for zone in in_use:
        offer = by_zone[zone]
        lead = documented_lead(offer)
        if lead < cold_start_s:
            if lead == 0:
                return True, f"spare kept: {offer.cloud} documents no preemption notice"
            return True, (
                f"spare kept: {offer.cloud} notices ({lead:.0f} s) are shorter than the "
                f"cold start ({cold_start_s:.0f} s)"
            )
    return False, "no spare: notices cover the cold start"
