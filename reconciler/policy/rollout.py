"""Service versions, rolling and blue-green updates, and automatic rollback.

A **version** is one state of the service file (`Memory.versions`, numbered from 1). The
engine hands the policy two opaque digests of the spec (`register`): one of everything, one
of what a replica runs (setup, run, envs, image, instance type and accelerators, ports,
readiness probe). A change of the first alone (autoscaling, probe timing of the `service:`
section... anything replicas do not run) makes a new version whose replicas are the old ones
(`Version.runs` points at the version that launched them), as `sky serve update` treats a
service-only change. A change of the second makes a version that replaces every replica:
new replicas carry the new `runs` number (`Launch.version`), so Terraform creates them beside
the old ones instead of replacing an instance in place.

**Rolling** (the default, `update_mode: rolling`): the new version's replicas are launched
by the same SpotHedge counts as ever (spot first, placed by the same placer, on-demand cover
while spot is not ready), and an old replica is stopped each time a new one is ready: old
READY replicas are kept while the new version's ready replicas are fewer than the target,
so ready replicas never drop below the target because of the update. All alive replicas stay
within `final + max_surge` (final = target + num_overprovision); `max_surge` defaults to 25%
of the target rounded up, at least 1 (Kubernetes Deployment's default `maxSurge`).

**Blue-green**: every old READY replica keeps serving and the load balancer holds only them
while the new version comes up (`max_surge` defaults to a whole second fleet, `final`); when
the new version alone has the target ready, the load balancer switches to it and the old
replicas are stopped. (If no old replica is ready any more, say all were preempted, the new
ready ones serve rather than nothing.)

**Automatic rollback**: while a version rolls out, each of its replicas that fails for good
(FAILED_INITIAL_DELAY, FAILED_PROBING: policy/lifecycle.py; or FAILED, observed dead without
a preemption: a crash loop) counts, never a launch that failed (FAILED_PROVISION: capacity
and quota are the market's, not the version's); at
`ROLLBACK_AFTER_FAILURES` the version is marked failed and the fleet moves back to the last
version that was ready (`stable_version`), rolling, so the load balancer never loses what
still serves. Two, as lifecycle.py counts a crash loop: one failure may be one bad host; a
second replica of the same version failing is the version. A service with no earlier ready
version has nothing to return to: its failing replicas are replaced under the crash-loop
backoff as before. The spec file still says the failed version; it is not rolled out again
until the file changes (`register` sees the same digest).

Pure, like the rest of the package: the engine calls `register` and `rollback`, the policy
`check_rollback` and `step`.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace

from reconciler.policy.changes import scale_down_key
from reconciler.policy.decision import Launch
from reconciler.policy.lifecycle import FAILED_STATES
from reconciler.policy.memory import Memory, Version
from reconciler.policy.observation import Replica, ReplicaState

ROLLING = "rolling"
BLUE_GREEN = "blue_green"
UPDATE_MODES = (ROLLING, BLUE_GREEN)
ROLLBACK_AFTER_FAILURES = 2
BY_HAND = "rolled back by hand"  # the reason `hedgeform rollback` gives the version it leaves
MAX_HISTORY = 20
DEFAULT_SURGE_FRACTION = 0.25  # Kubernetes Deployment's default maxSurge
# A new replica counts for a rollout (it lets an old one stop, it makes the version ready)
# once it has been READY this long without a break: Kubernetes' minReadySeconds. The
# verification of issue 13 saw replicas crash 4 s after their first ready probe, and a
# rollout that trusted them at once stop every old replica. 15 s is three health checks of
# the sandbox's HAProxy and of the clouds' load balancers at a 5 s interval (the shortest an
# AWS target group allows): a replica that serves through them is not one that dies at
# its first requests. Each rollout step takes this much longer.
MIN_READY_SECONDS = 15.0
# What counts against a rolling version (module docstring).
VERSION_FAILURES = FAILED_STATES | {ReplicaState.FAILED}


def current_version(memory: Memory) -> Version | None:
    """The version the fleet is moving to (None before the first `register`)."""
    return next((v for v in memory.versions if v.number == memory.version), None)


def current_runs(memory: Memory) -> int:
    """The `runs` number new replicas carry now (1 before any version was registered)."""
    version = current_version(memory)
    return version.runs if version is not None else 1


def register(
    memory: Memory,
    fingerprint: str,
    replica_fingerprint: str,
    now: float,
    *,
    mode: str = ROLLING,
    max_surge: int | None = None,
) -> tuple[Memory, str | None]:
    """The memory once the spec with these digests was read, and a line saying what changed
    (None: the same as the latest version, a failed one included: it stays rolled back).
    ValueError for an unknown mode or a negative max_surge."""
    if mode not in UPDATE_MODES:
        raise ValueError(f"update mode {mode!r} is not one of {', '.join(UPDATE_MODES)}")
    if max_surge is not None and max_surge < 0:
        raise ValueError(f"max_surge {max_surge} is negative")
    latest = memory.versions[-1] if memory.versions else None
    if latest is not None and latest.fingerprint == fingerprint:
        return memory, None
    number = latest.number + 1 if latest is not None else 1
    same = [
        v
        for v in memory.versions
        if v.replica_fingerprint == replica_fingerprint and v.state != "failed"
    ]
    runs = same[-1].runs if same else number
    new = Version(number, runs, fingerprint, replica_fingerprint, now, mode, max_surge)
    history = [
        replace(v, state="superseded") if v.state == "rolling" else v for v in memory.versions
    ]
    memory = replace(
        memory,
        versions=_trim((*history, new), keep={memory.stable_version}),
        version=number,
        rollout_failures=0,
    )
    if latest is None:
        return memory, f"version {number}"
    what = "the same replicas" if runs != number else f"replaces the replicas of v{latest.runs}"
    return memory, f"version {number} ({mode}): {what}"


def previous_ready(memory: Memory) -> Version | None:
    """The latest version before the current one that was ready and runs other replicas:
    what a rollback returns to (the current one may be ready too, and found wanting)."""
    runs = current_runs(memory)
    earlier = [
        v
        for v in memory.versions
        if v.state == "ready" and v.number != memory.version and v.runs != runs
    ]
    return earlier[-1] if earlier else None


def rollback(memory: Memory, to: int | None, reason: str) -> Memory:
    """Move the fleet to version `to` (default: `previous_ready`) and mark the current one
    failed with `reason`; a ready version returned to is the stable one again. ValueError
    when there is no such version or it is the current."""
    previous = previous_ready(memory)
    target = (previous.number if previous is not None else None) if to is None else to
    known = {v.number for v in memory.versions}
    if target is None:
        raise ValueError("no earlier version was ready: there is nothing to roll back to")
    if target not in known:
        raise ValueError(f"version {target} is not in the history ({_span(known)})")
    if target == memory.version:
        raise ValueError(f"version {target} is the current version")
    versions = tuple(
        replace(v, state="failed", reason=reason)
        if v.number == memory.version
        # A version left by hand earlier (it had not failed) rolls out again.
        else replace(v, state="rolling", reason="")
        if v.number == target and v.state == "failed" and v.reason == BY_HAND
        else v
        for v in memory.versions
    )
    back = next(v for v in versions if v.number == target)
    stable = target if back.state == "ready" else memory.stable_version
    # The crash loops were the failed version's: the version returned to starts afresh.
    return replace(
        memory,
        versions=versions,
        version=target,
        stable_version=stable,
        rollout_failures=0,
        crash_backoff={},
    )


def check_rollback(
    memory: Memory, judged: Sequence[Replica], failed_before: Collection[str]
) -> tuple[Memory, list[str]]:
    """Count this tick's new failures (VERSION_FAILURES) of the rolling version's replicas; at
    ROLLBACK_AFTER_FAILURES roll back to the stable version (module docstring)."""
    version = current_version(memory)
    if version is None or version.state != "rolling":
        return memory, []
    new_failures = sum(
        1
        for r in judged
        if r.state in VERSION_FAILURES and r.id not in failed_before and r.version == version.runs
    )
    if not new_failures:
        return memory, []
    count = memory.rollout_failures + new_failures
    memory = replace(memory, rollout_failures=count)
    stable = next((v for v in memory.versions if v.number == memory.stable_version), None)
    if count < ROLLBACK_AFTER_FAILURES:
        return memory, [f"v{version.number}: {count} replica(s) failed during its rollout"]
    if stable is None or stable.runs == version.runs:
        return memory, [
            f"v{version.number}: {count} replicas failed and no earlier version was ready: "
            "replacing them under the crash-loop backoff"
        ]
    why = f"{count} of its replicas failed during the rollout"
    memory = rollback(memory, stable.number, why)
    return memory, [f"rollback: v{version.number} failed ({why}); back to v{stable.number}"]


def progress(memory: Memory, replicas: Sequence[Replica], target: int, service: str) -> str | None:
    """The rollout step for people reviewing a plan: `rolling llama v3 → v4: 1 of 3
    replaced`, or None when every alive replica runs the current version."""
    version = current_version(memory)
    alive = [r for r in replicas if r.alive]
    old = sorted({r.version for r in alive if version is None or r.version != version.runs})
    if version is None or not old:
        return None
    # Back: the replicas being replaced run a later version than the one the fleet moves to.
    mode = f"{ROLLING} back" if max(old) > version.runs else version.mode
    done = sum(1 for r in alive if r.version == version.runs and r.ready)
    olds = ", ".join(f"v{_named(memory, runs, version.number)}" for runs in old)
    return f"{mode} {service} {olds} → v{version.number}: {min(done, target)} of {target} replaced"


def surge_refusal(mode: str, max_surge: int | None, num_overprovision: int) -> str | None:
    """Why `max_surge` could never let a rollout start, or None. A rollout launches new
    replicas before it stops old ones: with no room above the target it would wait forever
    (Kubernetes refuses maxSurge 0 with maxUnavailable 0 for the same reason). Rolling has
    the overprovisioned replicas' room; blue-green needs a second fleet beside the first."""
    if max_surge != 0:
        return None
    if mode == BLUE_GREEN:
        return "--max-surge 0 with blue_green: the new fleet could never start beside the old"
    if num_overprovision == 0:
        return (
            "--max-surge 0 with num_overprovision 0: no replica could start before an old one "
            "stops, so the rollout would never begin; give --max-surge 1 or more"
        )
    return None


def _named(memory: Memory, runs: int, current: int) -> int:
    """The version to name for replicas that carry `runs`: the stable version when they are
    its (the one the fleet is leaving), else the latest other version running them that did
    not fail (several may, when only the `service:` section changed), else the latest other
    one, else `runs` itself."""
    others = [v for v in memory.versions if v.runs == runs and v.number != current]
    if any(v.number == memory.stable_version for v in others):
        return int(memory.stable_version)  # type: ignore[arg-type]
    good = [v.number for v in others if v.state != "failed"]
    return max(good or [v.number for v in others] or [runs])


def default_surge(mode: str, target: int, final: int) -> int:
    if mode == BLUE_GREEN:
        return final
    return max(1, math.ceil(target * DEFAULT_SURGE_FRACTION))


@dataclass(frozen=True)
class Step:
    """What a rollout adds to a tick's changes: the launches that fit under the surge, the
    old replicas to stop, the replicas to keep out of the load balancer, the memory."""

    launches: tuple[Launch, ...]
    stopping: tuple[tuple[Replica, str], ...]
    lb_excluded: frozenset[str]
    memory: Memory
    reasons: tuple[str, ...]


def step(
    memory: Memory,
    *,
    target: int,
    final: int,
    current: Sequence[Replica],
    old: Sequence[Replica],
    launches: Sequence[Launch],
    stopping_current: Collection[str],
    warned: Collection[str],
    now: float,
) -> Step:
    """One tick of the rollout (module docstring). `current` and `old` are the alive replicas
    of the current and other versions; `launches` and `stopping_current` what SpotHedge's
    counts chose for the current version alone. While old replicas run, a current replica
    counts as ready once it has been READY for MIN_READY_SECONDS (`memory.ready_since`)."""
    version = current_version(memory)
    serving = [
        r for r in current if r.ready and r.id not in warned and r.id not in stopping_current
    ]
    if not old:  # nothing to stop: a first version, or the last old replica went earlier
        memory, notes = _ready_if_done(memory, version, len(serving) >= target)
        return Step(tuple(launches), (), frozenset(), memory, notes)
    ready_now = [r for r in serving if now - memory.ready_since.get(r.id, now) >= MIN_READY_SECONDS]
    # A version already ready that has old replicas beside it is one the fleet returns to
    # (a rollback): always rolling, so what serves keeps serving.
    mode = version.mode if version is not None and version.state == "rolling" else ROLLING
    surge = default_surge(mode, target, final)
    if version is not None and version.max_surge is not None:
        surge = version.max_surge
    old_ready = sorted(
        (r for r in old if r.ready and r.id not in warned), key=scale_down_key, reverse=True
    )
    excluded: frozenset[str] = frozenset()
    if mode == BLUE_GREEN:
        switched = len(ready_now) >= target
        keep = [] if switched else old_ready
        if not switched and old_ready:
            excluded = frozenset(r.id for r in current)
    else:
        keep = old_ready[: max(0, target - len(ready_now))]
    kept = {r.id for r in keep} | {r.id for r in old if r.id in warned}  # the cloud takes those
    number = version.number if version is not None else 1
    why = f"{mode} update to v{number}: {len(ready_now)} of {target} ready"
    stopping = tuple((r, why) for r in old if r.id not in kept)
    alive_after = len(current) - len(set(stopping_current)) + len(kept)
    room = max(0, final + surge - alive_after)
    allowed = tuple(launches[:room])
    reasons = [f"{why}, {len(keep)} old replica(s) serving (max_surge {surge})"]
    if len(allowed) < len(launches):
        reasons.append(f"{len(launches) - len(allowed)} launch(es) wait for max_surge {surge}")
    # The last old replicas stop in this tick's apply: the version is reached.
    memory, notes = _ready_if_done(memory, version, len(ready_now) >= target and not kept)
    return Step(allowed, stopping, excluded, memory, (*reasons, *notes))


def _ready_if_done(
    memory: Memory, version: Version | None, done: bool
) -> tuple[Memory, tuple[str, ...]]:
    """Mark a rolling version ready (and stable) once the fleet reached it."""
    if version is None or version.state != "rolling" or not done:
        return memory, ()
    versions = tuple(
        replace(v, state="ready") if v.number == version.number else v for v in memory.versions
    )
    memory = replace(memory, versions=versions, stable_version=version.number, rollout_failures=0)
    return memory, (f"v{version.number} ready",)


def _trim(versions: Sequence[Version], keep: Collection[int | None]) -> tuple[Version, ...]:
    """The last MAX_HISTORY versions, and any older one still in use (the stable one)."""
    recent = versions[-MAX_HISTORY:]
    older = [v for v in versions[:-MAX_HISTORY] if v.number in keep]
    return (*older, *recent)


def _span(numbers: Collection[int]) -> str:
    return f"v{min(numbers)}-v{max(numbers)}" if numbers else "empty"
