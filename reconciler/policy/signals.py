"""Signals that arrive between ticks: request rate, preemption notices, launch outcomes."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from reconciler.policy.observation import Market


class NoticeKind(StrEnum):
    WARNING = "warning"  # the cloud will reclaim this replica soon (AWS 2 min, GCP/Azure 30 s)
    PREEMPTED = "preempted"  # the replica is gone


class FailureKind(StrEnum):
    """Why a launch failed. Only CAPACITY says something about the zone's spot market."""

    CAPACITY = "capacity"
    QUOTA = "quota"
    CONFIG = "config"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Notice:
    kind: NoticeKind
    replica_id: str
    zone: str
    at: float


@dataclass(frozen=True, slots=True)
class LaunchResult:
    """Outcome of one launch the last apply attempted."""

    zone: str
    market: Market
    ok: bool
    failure: FailureKind | None = None
    message: str = ""


@dataclass(frozen=True, slots=True)
class Signals:
    qps: float | None = None  # requests per second over the last 60 s; None: no metrics
    qps_at: float | None = None  # when the rate was measured
    notices: tuple[Notice, ...] = ()
    launch_results: tuple[LaunchResult, ...] = ()
