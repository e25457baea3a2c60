"""The policy core: pure functions from (spec, observation, signals, memory, now) to a Decision.

No I/O, no clock (`now` is passed in), no randomness: the backtest simulator and the live loop
call the very same functions, so a figure measured in backtest is a figure about production
code. `make layering` checks that this package imports nothing that does I/O.
"""

from __future__ import annotations

from reconciler.errors import MemoryFormatError
from reconciler.policy.baselines import even_spread, ondemand, round_robin, static
from reconciler.policy.decision import Decision, Launch, PolicyFn, Termination
from reconciler.policy.memory import Memory, ZoneStatus
from reconciler.policy.mixed import hedgeform_mix
from reconciler.policy.observation import Market, Observation, Replica, ReplicaState, ZoneOffer
from reconciler.policy.signals import FailureKind, LaunchResult, Notice, NoticeKind, Signals
from reconciler.policy.spothedge import hedgeform, hedgeform_v1, spothedge
from reconciler.spec.model import ServiceSpec

POLICIES: dict[str, PolicyFn] = {
    # SpotHedge with Hedgeform's fixes; with several GPU types offered, the cheapest mix of
    # them hedged per type (policy/mixed.py), which with one type is exactly the former.
    "hedgeform": hedgeform_mix,
    "spothedge": spothedge,
    "hedgeform_v1": hedgeform_v1,
    "ondemand": ondemand,
    "even_spread": even_spread,
    "round_robin": round_robin,
    "static": static,
}
DEFAULT_POLICY = "hedgeform"
# The policies that place in (zone, GPU type) pools when a zone offers several types (issue 15);
# the others place by zone, on one type per region.
MIXING_POLICIES = frozenset({"hedgeform"})


def decide(
    spec: ServiceSpec,
    observed: Observation,
    signals: Signals,
    memory: Memory,
    now: float,
    policy: str = DEFAULT_POLICY,
) -> Decision:
    """One tick of the chosen policy (default: hedgeform)."""
    try:
        fn = POLICIES[policy]
    except KeyError:
        raise ValueError(f"unknown policy {policy!r}; choose from {', '.join(POLICIES)}") from None
    return fn(spec, observed, signals, memory, now)


__all__ = [
    "DEFAULT_POLICY",
    "MIXING_POLICIES",
    "POLICIES",
    "Decision",
    "FailureKind",
    "Launch",
    "LaunchResult",
    "Market",
    "Memory",
    "MemoryFormatError",
    "Notice",
    "NoticeKind",
    "Observation",
    "PolicyFn",
    "Replica",
    "ReplicaState",
    "Signals",
    "Termination",
    "ZoneOffer",
    "ZoneStatus",
    "decide",
    "hedgeform",
    "hedgeform_mix",
]
