"""A CloudBackend in memory, for engine and loop tests: no daemon, no process, no sleep.

Modelled on Karpenter's fake cloud provider: every call is recorded in `calls` (method names,
in order), `fail_next(method, error)` makes the next call of a method raise, and the world is
scripted: `states` (replica id -> ReplicaState; READY when unset), `notices_queue`, `qps`,
`members` (the load balancer's members), `orphan_ids`. The replicas it reports are those
Terraform manages (`managed()` reads nothing by default: set `managed_replicas`).

It renders the sandbox's module (terraform/modules/local, template local.tfvars.json.j2), so
the engine's rendering, planning and applying run unchanged around it with Terraform faked
(reconciler.terraform.fake), and it classifies launch errors with the sandbox's rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.backends.base import RenderedStack, Samples, StackDef, classify_apply_output
from reconciler.backends.sandbox import zone_offers
from reconciler.policy import (
    FailureKind,
    Notice,
    Observation,
    Replica,
    ReplicaState,
)
from reconciler.spec.model import ServiceSpec
from reconciler.stacks import FRONT, ManagedReplica, region_stacks, replica_map, zone_regions


@dataclass
class FakeBackend:
    """See the module docstring. `spec` gives the zones and regions; `state_dir` is where the
    loop looks for `notices.jsonl` (a test may append to it to bring a tick forward)."""

    spec: ServiceSpec
    state_dir: Path
    lb_port: int = 1
    poll_s: float = 0.0
    plan_cache: bool = False
    calls: list[str] = field(default_factory=list)
    states: dict[str, ReplicaState] = field(default_factory=dict)
    managed_replicas: list[ManagedReplica] = field(default_factory=list)
    notices_queue: list[Notice] = field(default_factory=list)
    qps: float | None = None
    members: set[str] | None = None
    orphan_ids: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    _errors: dict[str, BaseException] = field(default_factory=dict)

    def fail_next(self, method: str, error: BaseException) -> None:
        """The next call of `method` raises `error` (once)."""
        self._errors[method] = error

    def _call(self, method: str) -> None:
        self.calls.append(method)
        error = self._errors.pop(method, None)
        if error is not None:
            raise error

    # -- CloudBackend ------------------------------------------------------------------------

    def stacks(self) -> list[StackDef]:
        regions = sorted({region for _, region in zone_regions(self.spec).values()})
        return [
            *(StackDef(region, "local", region, "local") for region in regions),
            StackDef(FRONT, "local", "", "local"),
        ]

    def ensure_up(self, now: float) -> None:
        self._call("ensure_up")
        self.state_dir.mkdir(parents=True, exist_ok=True)

    def managed(self) -> list[ManagedReplica]:
        self._call("managed")
        return list(self.managed_replicas)

    def notices(self, cursor: int, *, consume: bool) -> tuple[list[Notice], int]:
        self._call("notices")
        out = list(self.notices_queue)
        if consume:
            self.notices_queue.clear()
        return out, cursor + len(out)

    def request_rate(self, samples: Samples, now: float) -> tuple[float | None, Samples]:
        self._call("request_rate")
        return self.qps, samples

    def observe(
        self, spec: ServiceSpec, managed: Sequence[ManagedReplica], preempted: set[str], now: float
    ) -> Observation:
        self._call("observe")
        replicas = tuple(
            Replica(
                m.id,
                m.zone,
                m.market,
                ReplicaState.PREEMPTED
                if m.id in preempted
                else self.states.get(m.id, ReplicaState.READY),
                now,
            )
            for m in managed
        )
        return Observation(replicas, zone_offers(spec))

    def observe_offline(
        self, spec: ServiceSpec, managed: Sequence[ManagedReplica], now: float
    ) -> Observation:
        self._call("observe_offline")
        return Observation(
            tuple(Replica(m.id, m.zone, m.market, ReplicaState.READY, now) for m in managed),
            zone_offers(spec),
        )

    def lb_members(self) -> set[str] | None:
        self._call("lb_members")
        return None if self.members is None else set(self.members)

    def applied_members(self) -> set[str] | None:
        return None

    def render(
        self,
        kept: Sequence[ManagedReplica],
        members: Sequence[str],
        epoch: int,
        now: float,
        warned: set[str],
    ) -> list[RenderedStack]:
        self._call("render")
        stacks = {s.name: s for s in self.stacks()}
        common = {
            "service": self.spec.name,
            "hedgeform_bin": "/fake/hedgeform",
            "sandbox_dir": str(self.state_dir),
            "cold_start_seconds": 0,
            "latency_ms": 0,
            "model_name": "fake-model",
        }
        out = [
            RenderedStack(
                stacks[stack.name],
                "local.tfvars.json.j2",
                {
                    **common,
                    "stack": stack.name,
                    "replicas": replica_map(stack.replicas),
                    "load_balancer": None,
                },
            )
            for stack in region_stacks(zone_regions(self.spec), kept)
        ]
        lb = {"port": self.lb_port, "members": list(members), "epoch": str(epoch),
              "check_path": "/health", "check_timeout_seconds": 2}  # fmt: skip
        front = {**common, "stack": FRONT, "replicas": {}, "load_balancer": lb}
        out.append(RenderedStack(stacks[FRONT], "local.tfvars.json.j2", front))
        return out

    def launch_failures(
        self, stack: str, output: str, zones: Mapping[str, str]
    ) -> tuple[dict[str, tuple[FailureKind, str]], bool]:
        self._call("launch_failures")
        return classify_apply_output("local", output, zones)

    def orphans(self, managed_ids: set[str]) -> list[str]:
        self._call("orphans")
        return [rid for rid in self.orphan_ids if rid not in managed_ids]

    def adoptable(self, orphan_ids: Sequence[str]) -> list[ManagedReplica]:
        return []

    def stop_replica(self, replica_id: str) -> None:
        self._call("stop_replica")
        self.stopped.append(replica_id)
        self.orphan_ids = [rid for rid in self.orphan_ids if rid != replica_id]

    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.lb_port}"
