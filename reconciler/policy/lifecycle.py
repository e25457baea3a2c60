"""Replica lifecycle: which replicas have failed for good, as SkyServe defines it.

Observation only reports what a probe saw (READY, or STARTING / NOT_READY when the readiness
probe failed); this module decides, from that and memory, that a replica has failed:

- FAILED_INITIAL_DELAY: it never passed readiness and `initial_delay_seconds` have passed
  since its launch (SkyServe's default 1200 s).
- FAILED_PROBING: it passed readiness once, and its probes have been failing continuously for
  `consecutive_failure_threshold_timeout` seconds (SkyServe's default 180 s) - a crashed,
  stopped or hung model server.

A failed replica is terminal: it leaves the load balancer, it is terminated, and the policy
launches a replacement. Verdicts are sticky (a FAILED_* replica that answers again before its
termination applied stays failed). A replacement that fails the same way in the same zone and
market is a crash loop: further launches there back off (`crash_backoff`), so a broken image
or model is not relaunched every tick; the placer goes to another zone meanwhile.

Pure: `now` is passed in; the verdicts, first-failure times and backoffs live in Memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from reconciler.policy.memory import Backoff, Memory
from reconciler.policy.observation import Market, Replica, ReplicaState
from reconciler.spec.model import ReadinessProbe

FAILED_STATES = frozenset({ReplicaState.FAILED_INITIAL_DELAY, ReplicaState.FAILED_PROBING})
_PROBED = frozenset({ReplicaState.STARTING, ReplicaState.NOT_READY})

# Crash-loop backoff, as Kubernetes restarts a crashing container (CrashLoopBackOff: 10 s,
# doubling, capped at five minutes, reset after ten minutes without a crash; Kubernetes docs,
# "Pod Lifecycle: container restarts"). Counted from the second consecutive failure: one
# failure is not a loop, and its replacement goes out at once.
CRASH_BACKOFF_BASE_S = 10.0
CRASH_BACKOFF_CAP_S = 300.0
CRASH_BACKOFF_RESET_S = 600.0


@dataclass(frozen=True)
class Judged:
    """The replicas with the verdicts applied, the updated memory, and why."""

    replicas: tuple[Replica, ...]
    memory: Memory
    reasons: tuple[str, ...]


def crash_key(zone: str, market: Market) -> str:
    """Memory key of a crash-loop backoff: `<zone>/<market>`."""
    return f"{zone}/{market.value}"


def crash_delay(count: int) -> float:
    """Seconds to wait before launching again after `count` consecutive failures."""
    if count < 2:
        return 0.0
    doublings = min(count - 2, 32)  # the cap is reached long before; no float overflow
    return min(CRASH_BACKOFF_CAP_S, CRASH_BACKOFF_BASE_S * 2.0**doublings)


def judge(probe: ReadinessProbe, replicas: Sequence[Replica], memory: Memory, now: float) -> Judged:
    """Apply the lifecycle rules (module docstring) to this tick's replicas."""
    ready_once = set(memory.ready_once)
    failing_since = dict(memory.failing_since)
    ready_since = {
        r.id: memory.ready_since.get(r.id, now) for r in replicas if r.state is ReplicaState.READY
    }
    failed = dict(memory.failed)
    backoffs = {
        k: b
        for k, b in memory.crash_backoff.items()
        if now - b.last_at < CRASH_BACKOFF_RESET_S or b.blocks(now)
    }
    reasons: list[str] = []
    out: list[Replica] = []
    present = {r.id for r in replicas}
    for r in replicas:
        if r.state is ReplicaState.FAILED:
            # Observed dead without a preemption: it crashed (or was stopped by hand). One
            # event, counted once, as a FAILED_* verdict is.
            out.append(r)
            state, why = ReplicaState.FAILED, "it ran and died without a preemption"
        else:
            verdict = _verdict(probe, r, ready_once, failing_since, failed, now)
            if verdict is None:
                out.append(r)
                continue
            state, why = verdict
            out.append(replace(r, state=state))
        if r.id in failed:
            continue  # judged on an earlier tick, still being terminated
        failed[r.id] = state.value
        reasons.append(f"{r.id} {state.value}: {why}")
        key = crash_key(r.zone, r.market)
        backoff = _count(backoffs.get(key), state.value, r.launched_at, now)
        backoffs[key] = backoff
        if backoff.count >= 2:
            reasons.append(
                f"crash loop in {r.zone} ({r.market.value}): {backoff.count} replicas "
                f"{state.value} in a row; next launch there in {backoff.retry_at - now:.0f} s"
            )
    new_memory = replace(
        memory,
        ready_once=frozenset(rid for rid in ready_once if rid in present),
        failing_since={rid: t for rid, t in failing_since.items() if rid in present},
        ready_since=ready_since,
        failed={rid: s for rid, s in failed.items() if rid in present},
        crash_backoff=backoffs,
    )
    return Judged(tuple(out), new_memory, tuple(reasons))


def _verdict(
    probe: ReadinessProbe,
    r: Replica,
    ready_once: set[str],
    failing_since: dict[str, float],
    failed: dict[str, str],
    now: float,
) -> tuple[ReplicaState, str] | None:
    """A FAILED_* state and why, or None; updates the readiness bookkeeping in place."""
    if not r.alive:
        return None
    if r.id in failed:
        return ReplicaState(failed[r.id]), "failed earlier, being replaced"
    if r.state is ReplicaState.READY:
        ready_once.add(r.id)
        failing_since.pop(r.id, None)
        return None
    if r.state not in _PROBED:
        return None  # PENDING / PROVISIONING: no probe has run yet
    if r.id in ready_once:
        since = failing_since.setdefault(r.id, now)
        threshold = probe.consecutive_failure_threshold_timeout
        if now - since >= threshold:
            return (
                ReplicaState.FAILED_PROBING,
                f"probes failing for {now - since:.0f} s after it was ready "
                f"(consecutive_failure_threshold_timeout {threshold} s)",
            )
        return None
    if now - r.launched_at >= probe.initial_delay_seconds:
        return (
            ReplicaState.FAILED_INITIAL_DELAY,
            f"not ready {now - r.launched_at:.0f} s after launch "
            f"(initial_delay_seconds {probe.initial_delay_seconds})",
        )
    return None


def _count(previous: Backoff | None, kind: str, launched_at: float, now: float) -> Backoff:
    """The backoff after one more failure of `kind` by a replica launched at `launched_at`.

    Only a replica launched after the previous failure continues the streak: replicas that
    fail together in one tick (say, a bad host took two down) are one event, not a loop.
    """
    if previous is None or previous.kind != kind:
        count = 1
    elif launched_at >= previous.last_at:
        count = previous.count + 1
    else:
        return replace(previous, last_at=max(previous.last_at, now))
    return Backoff(kind, count, now, now + crash_delay(count))


def crash_blocked(memory: Memory, market: Market, now: float) -> frozenset[str]:
    """Zones where `market` launches wait out a crash-loop backoff now."""
    suffix = f"/{market.value}"
    return frozenset(
        key.removesuffix(suffix)
        for key, b in memory.crash_backoff.items()
        if key.endswith(suffix) and b.blocks(now)
    )
