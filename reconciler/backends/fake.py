"""A CloudBackend in memory, for engine and loop tests: no daemon, no process, no sleep.

Modelled on Karpenter's fake cloud provider: every call is recorded in `calls` (method names,
in order), `fail_next(method, error)` makes the next call of a method raise, and the world is
scripted: `states` (replica id -> ReplicaState; READY when unset), `notices_queue`, `qps`,
`members` (the load balancer's members), `orphan_ids`, `outside` (what `hedgeform drift`
sees). The replicas it reports are those Terraform manages (`managed()` reads nothing by
default: set `managed_replicas`). `calls` names each `observe` with its look
(`observe:apply`).

It renders the sandbox's module (terraform/modules/local, template local.tfvars.json.j2), so
the engine's rendering, planning and applying run unchanged around it with Terraform faked
(reconciler.terraform.fake), and it classifies launch errors with the sandbox's rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.backends.base import (
    Layout,
    Look,
    Observed,
    OutsideTerraform,
    RenderedStack,
    ReplicaTraffic,
    Since,
    StackDef,
    classify_apply_output,
)
from reconciler.backends.sandbox import zone_offers
from reconciler.policy import (
    FailureKind,
    Market,
    Notice,
    NoticeKind,
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
    accelerators_in_use: frozenset[str] = frozenset()
    accelerator_notes: tuple[str, ...] = ()
    typed_pools = False  # its zones offer one type each
    carries_versions: bool = False
    calls: list[str] = field(default_factory=list)
    states: dict[str, ReplicaState] = field(default_factory=dict)
    managed_replicas: list[ManagedReplica] = field(default_factory=list)
    notices_queue: list[Notice] = field(default_factory=list)
    qps: float | None = None
    members: set[str] | None = None
    orphan_ids: list[str] = field(default_factory=list)
    keepable: set[str] = field(default_factory=set)  # orphans it adopts instead of reporting
    stopped: list[str] = field(default_factory=list)
    traffic: dict[str, ReplicaTraffic] | None = None  # what replica_traffic returns
    outside: OutsideTerraform = field(default_factory=OutsideTerraform)  # `outside_terraform`
    _errors: dict[str, BaseException] = field(default_factory=dict)

    def fail_next(self, method: str, error: BaseException) -> None:
        """The next call of `method` raises `error` (once)."""
        self._errors[method] = error

    def _call(self, method: str) -> None:
        """Record the call (`observe:<look>` for observe); raise what `fail_next` queued for
        it, by its full name or its method name (`observe` fails any look)."""
        self.calls.append(method)
        error = self._errors.pop(method, None) or self._errors.pop(method.split(":")[0], None)
        if error is not None:
            raise error

    # -- CloudBackend ------------------------------------------------------------------------

    def stacks(self) -> list[StackDef]:
        regions = sorted({region for _, region in zone_regions(self.spec).values()})
        return [
            *(StackDef(region, "local", region, "local") for region in regions),
            StackDef(FRONT, "local", "", "local"),
        ]

    def managed(self) -> list[ManagedReplica]:
        self._call("managed")
        return list(self.managed_replicas)

    def observe(
        self, spec: ServiceSpec, since: Since, now: float, look: Look, *, collect: bool = True
    ) -> Observed:
        """The scripted world: `managed_replicas` with `states` (READY when unset; PREEMPTED
        when `since` or a queued notice says so), `notices_queue` (cleared on `Look.APPLY`),
        `qps`, `members`, and `orphan_ids` (adopted when in `keepable`, else reported)."""
        self._call(f"observe:{look.value}")
        managed = list(self.managed_replicas)
        if look is Look.OFFLINE:
            replicas = tuple(
                Replica(m.id, m.zone, m.market, ReplicaState.READY, now) for m in managed
            )
            return Observed(
                tuple(managed),
                Observation(replicas, zone_offers(spec)),
                notice_cursor=since.notice_cursor,
                request_samples=since.request_samples,
            )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        online = look in (Look.PLAN, Look.APPLY)
        notices = list(self.notices_queue) if online else []
        if look is Look.APPLY:
            self.notices_queue.clear()
        preempted = set(since.preempted) | {
            n.replica_id for n in notices if n.kind is NoticeKind.PREEMPTED
        }
        known = {m.id for m in managed}
        found = [rid for rid in self.orphan_ids if rid not in known] if online and collect else []
        adopted = [self._adopt(rid) for rid in found if rid in self.keepable]
        orphans = [rid for rid in found if rid not in self.keepable]
        managed += adopted  # observed like the others, as the sandbox does
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
        return Observed(
            tuple(managed),
            Observation(replicas, zone_offers(spec)),
            tuple(notices),
            since.notice_cursor + len(notices),
            self.qps if online else None,
            since.request_samples,
            orphans=tuple(orphans),
            adopted=tuple(adopted),
            lb_members=None if self.members is None else frozenset(self.members),
        )

    def render(self, layout: Layout, now: float) -> list[RenderedStack]:
        self._call("render")
        kept, members, epoch = layout.kept, layout.members, layout.epoch
        stacks = {s.name: s for s in self.stacks()}
        common = {
            "service": self.spec.name,
            "hedgeform_bin": "/fake/hedgeform",
            "sandbox_dir": str(self.state_dir),
            "latency_ms": 0,
        }
        out = [
            RenderedStack(
                stacks[stack.name],
                "local.tfvars.json.j2",
                {
                    **common,
                    "stack": stack.name,
                    "replicas": {
                        r.id: {
                            **replica_map([r])[r.id],
                            "version": str(r.version),
                            "model_name": "fake-model",
                            "cold_start_seconds": 0,
                        }
                        for r in stack.replicas
                    },
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

    def _adopt(self, replica_id: str) -> ManagedReplica:
        """An orphan kept as it is: zone and market from its id (`<zone>-spot-<n>`)."""
        zone = replica_id.rsplit("-", 2)[0]
        market = Market.SPOT if "-spot-" in replica_id else Market.ON_DEMAND
        _, region = zone_regions(self.spec).get(zone, ("local", ""))
        return ManagedReplica(replica_id, zone, market, False, region)

    def stop(self, replica_ids: Sequence[str]) -> None:
        self._call("stop")
        self.stopped.extend(replica_ids)
        self.orphan_ids = [rid for rid in self.orphan_ids if rid not in replica_ids]

    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.lb_port}"

    def replica_traffic(self) -> Mapping[str, ReplicaTraffic] | None:
        self._call("replica_traffic")
        return self.traffic

    def outside_terraform(self) -> OutsideTerraform:
        """`outside`, as scripted."""
        self._call("outside_terraform")
        return self.outside
