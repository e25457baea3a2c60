"""Rolling and blue-green updates and automatic rollback (policy/rollout.py): the version
history, whole rollouts played tick by tick on a small simulated cloud, and invariants on
arbitrary observations (hypothesis)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.policy import (
    Decision,
    Market,
    Memory,
    Observation,
    Replica,
    ReplicaState,
    Signals,
)
from reconciler.policy.memory import Version
from reconciler.policy.rollout import (
    BLUE_GREEN,
    BY_HAND,
    MAX_HISTORY,
    ROLLING,
    current_version,
    default_surge,
    progress,
    register,
    rollback,
)
from reconciler.policy.spothedge import hedgeform
from reconciler.spec.model import ServiceSpec
from tests.policy.builders import ZONES, make_spec, offers

T0 = 10_000.0


def registered(*fingerprints: tuple[str, str], mode: str = ROLLING) -> Memory:
    memory = Memory()
    for i, (fp, rfp) in enumerate(fingerprints):
        memory, _ = register(memory, fp, rfp, T0 + i, mode=mode)
    return memory


def test_a_version_per_spec_change_and_new_replicas_only_when_what_they_run_changed() -> None:
    memory, note = register(Memory(), "a", "run-1", T0)
    assert note == "version 1" and memory.version == 1
    assert register(memory, "a", "run-1", T0 + 1) == (memory, None)  # unchanged
    memory, note = register(memory, "b", "run-1", T0 + 2)  # the service section alone
    assert memory.version == 2 and current_version(memory).runs == 1  # type: ignore[union-attr]
    assert note == "version 2 (rolling): the same replicas"
    memory, note = register(memory, "c", "run-2", T0 + 3, mode=BLUE_GREEN)
    version = current_version(memory)
    assert version is not None and (version.number, version.runs, version.mode) == (
        3,
        3,
        BLUE_GREEN,
    )
    assert note == "version 3 (blue_green): replaces the replicas of v1"
    assert [v.state for v in memory.versions] == ["superseded", "superseded", "rolling"]
    with pytest.raises(ValueError, match="update mode 'canary'"):
        register(memory, "d", "run-3", T0, mode="canary")


def test_the_history_is_bounded_but_keeps_the_stable_version() -> None:
    memory = replace(registered(("a", "r0")), stable_version=1)
    for i in range(1, MAX_HISTORY + 5):
        memory, _ = register(memory, f"fp{i}", f"r{i}", T0 + i)
    numbers = [v.number for v in memory.versions]
    assert len(numbers) == MAX_HISTORY + 1 and numbers[0] == 1 and numbers[-1] == MAX_HISTORY + 5
    assert Memory.from_json(memory.to_json()) == memory  # and it round-trips


def test_rollback_by_hand_and_what_it_refuses() -> None:
    memory = registered(("a", "r1"), ("b", "r2"))
    with pytest.raises(ValueError, match="nothing to roll back to"):
        rollback(memory, None, "by hand")
    v1_ready = (replace(memory.versions[0], state="ready"), memory.versions[1])
    memory = replace(memory, versions=v1_ready, stable_version=1)
    with pytest.raises(ValueError, match="version 7 is not in the history"):
        rollback(memory, 7, "by hand")
    with pytest.raises(ValueError, match="is the current version"):
        rollback(memory, 2, "by hand")
    back = rollback(memory, None, "by hand")
    assert back.version == 1 and back.versions[1].state == "failed"
    assert back.versions[1].reason == "by hand"
    # The spec file still says version 2: it is not rolled out again until it changes.
    assert register(back, "b", "r2", T0 + 9) == (back, None)


def test_rollback_by_hand_returns_from_a_ready_version_to_the_one_before() -> None:
    """The common case (skypilot#4348): v2 rolled out fine, then turned out worse; the
    default target is the last ready version before it, not v2 itself."""
    memory = registered(("a", "r1"), ("b", "r2"))
    ready = tuple(replace(v, state="ready") for v in memory.versions)
    memory = replace(memory, versions=ready, stable_version=2)
    back = rollback(memory, None, "worse answers")
    assert back.version == 1 and back.stable_version == 1
    assert back.versions[1].state == "failed" and back.versions[1].reason == "worse answers"


class Cloud:
    """A tiny cloud for whole rollouts: launches start STARTING and are READY `boot` ticks
    later unless their version is `broken` (then they never are); replicas of a `crashing`
    version die (FAILED) one tick after they were READY; launches of a `refused` version
    fail (FAILED_PROVISION)."""

    def __init__(
        self,
        replicas: list[Replica],
        boot: int = 1,
        broken: int | None = None,
        crashing: int | None = None,
        refused: int | None = None,
        crash_after: int = 1,
    ):
        self.replicas = {r.id: r for r in replicas}
        self.age: dict[str, int] = {r.id: boot for r in replicas}
        self.boot = boot
        self.broken = broken
        self.crashing = crashing
        self.refused = refused
        self.crash_after = crash_after  # ticks a crashing replica stays READY
        self.ready_for: dict[str, int] = {}

    def observe(self) -> Observation:
        return Observation(tuple(self.replicas.values()), offers())

    def apply(self, decision: Decision, now: float) -> None:
        for t in decision.terminations:
            self.replicas.pop(t.replica_id, None)
        for x in decision.launches:
            self.replicas[x.replica_id] = Replica(
                x.replica_id, x.zone, x.market, ReplicaState.STARTING, now, x.version
            )
            self.age[x.replica_id] = 0
        for rid, r in list(self.replicas.items()):
            self.age[rid] = self.age.get(rid, 0) + 1
            if r.version == self.refused and r.state is ReplicaState.STARTING:
                self.replicas[rid] = replace(r, state=ReplicaState.FAILED_PROVISION)
                continue
            if r.version == self.crashing and r.state is ReplicaState.READY:
                self.ready_for[rid] = self.ready_for.get(rid, 0) + 1
                if self.ready_for[rid] >= self.crash_after:
                    self.replicas[rid] = replace(r, state=ReplicaState.FAILED)
                continue
            if (
                r.state is ReplicaState.STARTING
                and self.age[rid] > self.boot
                and r.version != self.broken
            ):
                self.replicas[rid] = replace(r, state=ReplicaState.READY)


def fleet(n: int, version: int = 1) -> list[Replica]:
    return [
        Replica(f"old-{i}", ZONES[i % 3], Market.SPOT, ReplicaState.READY, 0.0, version)
        for i in range(n)
    ]


def converge_first(
    spec: ServiceSpec, cloud: Cloud, memory: Memory, now: float
) -> tuple[Memory, float]:
    for _ in range(10):
        decision = hedgeform(spec, cloud.observe(), Signals(), memory, now)
        memory = decision.memory
        cloud.apply(decision, now)
        now += 30
    assert memory.stable_version == 1
    return memory, now


def play(
    spec: ServiceSpec, cloud: Cloud, memory: Memory, now: float, ticks: int, dt: float = 30
) -> tuple[Memory, list[Decision]]:
    decisions = []
    for _ in range(ticks):
        observed = cloud.observe()
        decision = hedgeform(spec, observed, Signals(), memory, now)
        decisions.append(decision)
        check_step(spec, observed, decision)
        memory = decision.memory
        cloud.apply(decision, now)
        now += dt
    return memory, decisions


def check_step(spec: ServiceSpec, observed: Observation, decision: Decision) -> None:
    """The two invariants of issue 13, for one decision."""
    before = decision.memory  # the version this tick moved to
    runs = next((v.runs for v in before.versions if v.number == before.version), 1)
    ready = [r for r in observed.replicas if r.ready]
    stopped = {t.replica_id for t in decision.terminations}
    kept_ready = [r for r in ready if r.id not in stopped]
    if any(r.version != runs for r in ready):
        assert len(kept_ready) >= min(decision.target, len(ready)), decision.reasons
    alive_after = sum(1 for r in observed.replicas if r.alive and r.id not in stopped)
    alive_after += len(decision.launches)
    judged_gone = {t.replica_id for t in decision.terminations if t.reason.startswith("clean up")}
    version = current_version(decision.memory)
    final = decision.target + spec.service.replica_policy.num_overprovision
    mode = version.mode if version is not None else ROLLING
    surge = default_surge(mode, decision.target, final)
    old_alive = [
        r for r in observed.replicas if r.alive and r.version != runs and r.id not in judged_gone
    ]
    if decision.launches and old_alive:
        assert alive_after <= final + surge, (alive_after, final, surge, decision.reasons)


def test_a_rolling_update_replaces_every_replica_without_dropping_below_the_target() -> None:
    spec = make_spec(min_replicas=3, overprovision=0)
    cloud = Cloud(fleet(3))
    memory, now = converge_first(spec, cloud, registered(("a", "r1")), T0)
    memory, _ = register(memory, "b", "r2", now)
    memory, decisions = play(spec, cloud, memory, now, 12)
    assert {r.version for r in cloud.replicas.values()} == {2}
    assert sum(r.ready for r in cloud.replicas.values()) == 3
    assert memory.stable_version == 2 and current_version(memory).state == "ready"  # type: ignore[union-attr]
    peak = max(len([r for r in d.memory.versions]) and sum(d.desired.values()) for d in decisions)
    assert peak <= 3 + default_surge(ROLLING, 3, 3)
    assert any("rolling update to v2" in line for d in decisions for line in d.reasons)


def test_a_service_only_change_replaces_nothing() -> None:
    spec = make_spec(min_replicas=3, overprovision=0)
    cloud = Cloud(fleet(3))
    memory, now = converge_first(spec, cloud, registered(("a", "r1")), T0)
    before = set(cloud.replicas)
    memory, _ = register(memory, "b", "r1", now)
    memory, decisions = play(spec, cloud, memory, now, 3)
    assert set(cloud.replicas) == before
    assert all(not d.launches and not d.terminations for d in decisions)
    assert memory.stable_version == 2


def test_blue_green_serves_only_the_old_version_until_the_new_one_carries_the_target() -> None:
    spec = make_spec(min_replicas=3, overprovision=0)
    cloud = Cloud(fleet(3), boot=2)
    memory, now = converge_first(spec, cloud, registered(("a", "r1"), mode=BLUE_GREEN), T0)
    memory, _ = register(memory, "b", "r2", now, mode=BLUE_GREEN)
    old = set(cloud.replicas)
    memory, decisions = play(spec, cloud, memory, now, 10)
    switch = next(i for i, d in enumerate(decisions) if not set(d.lb_members) & old)
    for d in decisions[:switch]:
        assert set(d.lb_members) == old  # blue only, all of it
    assert len(decisions[switch].lb_members) == 3
    assert not old & set(cloud.replicas) and memory.stable_version == 2


def test_a_broken_version_rolls_back_automatically_and_the_old_one_keeps_serving() -> None:
    spec = make_spec(min_replicas=3, overprovision=0, initial_delay=60)
    cloud = Cloud(fleet(3), broken=2)
    memory, now = converge_first(spec, cloud, registered(("a", "r1")), T0)
    memory, _ = register(memory, "b", "r2", now)
    memory, decisions = play(spec, cloud, memory, now, 12)
    assert memory.version == 1 and memory.versions[-1].state == "failed"
    assert "2 of its replicas failed" in memory.versions[-1].reason
    assert any(line.startswith("rollback: v2 failed") for d in decisions for line in d.reasons)
    assert all(len(d.lb_members) >= 3 for d in decisions)  # the old version never stopped
    assert {r.version for r in cloud.replicas.values()} == {1}
    # The spec file still says v2: it is not tried again.
    memory, again = register(memory, "b", "r2", now + 1000)
    assert again is None and memory.version == 1


def test_a_crash_looping_version_rolls_back_automatically() -> None:
    """Replicas that pass readiness and then die (the process crashes, the sandbox reports
    them FAILED) are a crash loop: two of them fail the version (skypilot#4349). Before,
    only FAILED_* verdicts counted, the version rolled forever, and each short-lived ready
    replica let an old one stop."""
    spec = make_spec(min_replicas=3, overprovision=0)
    cloud = Cloud(fleet(3), crashing=2)
    memory, now = converge_first(spec, cloud, registered(("a", "r1")), T0)
    memory, _ = register(memory, "b", "r2", now)
    memory, decisions = play(spec, cloud, memory, now, 12)
    assert memory.version == 1 and memory.versions[-1].state == "failed"
    assert any(line.startswith("rollback: v2 failed") for d in decisions for line in d.reasons)
    assert {r.version for r in cloud.replicas.values() if r.alive} == {1}
    assert sum(r.ready for r in cloud.replicas.values()) == 3


def test_replicas_that_crash_seconds_after_ready_never_finish_a_rollout() -> None:
    """Second verification of issue 13: with a loop ticking every 2 s, new replicas killed
    4 s after their first ready probe made the version ready, every old replica stopped, and
    the service went down (828 of 1283 requests failed) with no rollback: the crashes came
    after the version counted as ready. A new replica now counts only once it has been READY
    for MIN_READY_SECONDS, so these crashes fail the version while the old one serves."""
    spec = make_spec(min_replicas=2, overprovision=0)
    cloud = Cloud(fleet(2), crashing=2, crash_after=2)
    memory, now = converge_first(spec, cloud, registered(("a", "r1")), T0)
    memory, _ = register(memory, "b", "r2", now)
    memory, decisions = play(spec, cloud, memory, now, 40, dt=2)
    assert memory.version == 1 and memory.versions[-1].state == "failed"
    assert not any("v2 ready" in line for d in decisions for line in d.reasons)
    assert all(len([m for m in d.lb_members if m.startswith("old")]) >= 2 for d in decisions)


def test_launches_the_market_refuses_do_not_fail_the_version() -> None:
    """FAILED_PROVISION is the market's (capacity, quota), not the version's."""
    spec = make_spec(min_replicas=3, overprovision=0)
    cloud = Cloud(fleet(3), refused=2)
    memory, now = converge_first(spec, cloud, registered(("a", "r1")), T0)
    memory, _ = register(memory, "b", "r2", now)
    memory, decisions = play(spec, cloud, memory, now, 8)
    assert memory.version == 2 and current_version(memory).state == "rolling"  # type: ignore[union-attr]
    assert memory.rollout_failures == 0
    assert all(len(d.lb_members) >= 3 for d in decisions)  # the old version keeps serving


@st.composite
def rollouts(draw: st.DrawFn) -> tuple[ServiceSpec, Observation, Memory]:
    spec = make_spec(
        min_replicas=draw(st.integers(0, 4)),
        overprovision=draw(st.integers(0, 2)),
        base_od=0,
        initial_delay=draw(st.sampled_from([60, 86_400])),
    )
    mode = draw(st.sampled_from([ROLLING, BLUE_GREEN]))
    surge = draw(st.sampled_from([None, 0, 1, 3]))
    memory = Memory(
        versions=(
            Version(1, 1, "a", "r1", T0, state="ready"),
            Version(2, 2, "b", "r2", T0 + 1, mode=mode, max_surge=surge),
        ),
        version=2,
        stable_version=1,
    )
    n = draw(st.integers(0, 9))
    states = [
        ReplicaState.READY,
        ReplicaState.STARTING,
        ReplicaState.PREEMPTED,
        ReplicaState.NOT_READY,
    ]
    replicas = tuple(
        Replica(
            f"r{i}",
            draw(st.sampled_from(ZONES)),
            draw(st.sampled_from(list(Market))),
            draw(st.sampled_from(states)),
            T0 + draw(st.integers(0, 200)),
            draw(st.sampled_from([1, 2])),
        )
        for i in range(n)
    )
    return spec, Observation(replicas, offers()), memory


@settings(max_examples=400, deadline=None)
@given(rollouts())
def test_no_rollout_step_drops_ready_below_the_target_or_launches_past_the_surge(
    case: tuple[ServiceSpec, Observation, Memory],
) -> None:
    spec, observed, memory = case
    decision = hedgeform(spec, observed, Signals(), memory, T0 + 300)
    ready = [r for r in observed.replicas if r.ready]
    stopped = {t.replica_id for t in decision.terminations}
    runs = next(v.runs for v in decision.memory.versions if v.number == decision.memory.version)
    if any(r.version != runs for r in ready):
        assert sum(r.id not in stopped for r in ready) >= min(decision.target, len(ready))
    version = current_version(decision.memory)
    assert version is not None
    final = decision.target + spec.service.replica_policy.num_overprovision
    # The mode the tick rolled out with: the input's version, unless it rolled back (then
    # rolling, to the stable version).
    before = current_version(memory)
    assert before is not None
    rolled_back = decision.memory.version != memory.version
    mode = ROLLING if rolled_back else before.mode
    configured = version.max_surge if rolled_back else before.max_surge
    surge = configured if configured is not None else default_surge(mode, decision.target, final)
    alive_after = sum(1 for r in observed.replicas if r.alive and r.id not in stopped)
    # Replicas the lifecycle judged failed this tick are cleaned up: not alive to the policy.
    judged_gone = {t.replica_id for t in decision.terminations if t.reason.startswith("clean up")}
    old_alive = [
        r for r in observed.replicas if r.alive and r.version != runs and r.id not in judged_gone
    ]
    if decision.launches and old_alive:
        assert alive_after + len(decision.launches) <= final + surge
    assert all(x.version == runs for x in decision.launches)


def test_progress_names_the_step_for_review() -> None:
    memory = registered(("a", "r1"), ("b", "r2"))
    replicas = [*fleet(2), *fleet(1, version=2)]
    replicas[-1] = replace(replicas[-1], id="new-0")
    assert progress(memory, replicas, 3, "llama") == "rolling llama v1 → v2: 1 of 3 replaced"
    assert progress(memory, fleet(3, version=2), 3, "llama") is None
    # A finished rollout whose old replicas are still being stopped is not a rollback.
    done = replace(
        memory, versions=(memory.versions[0], replace(memory.versions[1], state="ready"))
    )
    assert progress(done, replicas, 3, "llama") == "rolling llama v1 → v2: 1 of 3 replaced"
    back = rollback(replace(memory, stable_version=1), 1, "by hand")
    assert progress(back, [*fleet(2), *fleet(1, version=2)], 3, "llama") == (
        "rolling back llama v2 → v1: 2 of 3 replaced"
    )


def test_second_verification_rough_edges_of_rollback_and_progress() -> None:
    """The second verification of issue 13 found: the Update line named the replicas' run
    number (v1 → v4 while the current version was v3); leaving a good version by hand made
    it impossible to return to; the failed version's crash-loop backoff kept delaying the
    version rolled back to."""
    memory = registered(("a", "r1"), ("b", "r1"), ("c", "r3"))  # v2 only changed `service:`
    memory = replace(memory, versions=tuple(replace(v, state="ready") for v in memory.versions[:2])
                     + memory.versions[2:])  # fmt: skip
    assert progress(memory, [*fleet(2), *fleet(1, version=3)], 3, "llama").startswith(
        "rolling llama v2 → v3"
    )
    from reconciler.policy.memory import Backoff

    crashed = replace(memory, crash_backoff={"z/spot": Backoff("FAILED", 3, 1.0, 99.0)})
    back = rollback(crashed, 2, BY_HAND)
    assert back.crash_backoff == {} and back.version == 2
    assert back.versions[2].state == "failed" and back.versions[2].reason == BY_HAND
    forward = rollback(back, 3, BY_HAND)  # v3 was left by hand: it may roll out again
    assert forward.version == 3 and forward.versions[2].state == "rolling"
    assert forward.versions[1].state == "failed"
    failed = rollback(replace(back, versions=(*back.versions[:2], replace(back.versions[2],
                      reason="2 of its replicas failed"))), 3, BY_HAND)  # fmt: skip
    assert failed.versions[2].state == "failed"  # a version that failed on its own stays so


def test_the_update_line_names_the_version_the_fleet_leaves() -> None:
    """Third verification: rolling forward by hand (`rollback llama 6`) from v5, which runs
    v1's replicas like v3 and was marked failed by the earlier rollback, the Update line
    said v3 → v6. It names the stable version, the one the fleet leaves."""
    memory = registered(("a", "r1"), ("b", "r1"), ("c", "r3"))  # v2 runs v1's replicas
    v1, v2, v3 = memory.versions
    memory = replace(
        memory,
        versions=(replace(v1, state="ready"), replace(v2, state="failed", reason=BY_HAND), v3),
        stable_version=2,
        version=3,
    )
    replicas = [*fleet(2), *fleet(1, version=3)]
    replicas[-1] = replace(replicas[-1], id="new-0")
    assert progress(memory, replicas, 3, "llama") == "rolling llama v2 → v3: 1 of 3 replaced"
