"""The policy's output: the desired layout, the changes that get there, and new memory."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from reconciler.policy.memory import Memory
from reconciler.policy.observation import Market, Observation
from reconciler.policy.signals import Signals
from reconciler.spec.model import ServiceSpec


@dataclass(frozen=True, slots=True)
class Launch:
    replica_id: str
    zone: str
    market: Market
    reason: str
    version: int = 1  # the service version it will run (policy/rollout.py: Version.runs)


@dataclass(frozen=True, slots=True)
class Termination:
    replica_id: str
    zone: str
    market: Market
    reason: str


@dataclass(frozen=True)
class Decision:
    target: int  # replicas the load needs (before overprovisioning)
    desired: Mapping[tuple[str, Market], int]  # alive replicas per (zone, market) afterwards
    launches: tuple[Launch, ...]
    terminations: tuple[Termination, ...]
    lb_members: tuple[str, ...]  # replica ids the load balancer should send traffic to
    memory: Memory
    held: bool = False  # True when the policy refused to act (incomplete observation)
    reasons: tuple[str, ...] = ()

    def count(self, market: Market) -> int:
        return sum(n for (_, m), n in self.desired.items() if m is market)


PolicyFn = Callable[[ServiceSpec, Observation, Signals, Memory, float], "Decision"]
"""Every policy's signature: (spec, observed, signals, memory, now) -> Decision."""
