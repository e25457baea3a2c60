"""The cloud-specific half of a reconcile, behind one small interface.

`Reconciler.run_pass` is the same loop for every cloud: observe -> decide -> render -> plan ->
apply -> record. What differs is which stacks exist, what each renders, how replicas and
signals are read and how a failed launch is classified; a `CloudBackend` answers those.
`SandboxCloud` (sandbox.py) is the `local` backend, `ProviderCloud` (clouds.py) the one for
AWS, GCP and Azure, `FakeBackend` (fake.py) an in-memory one for tests.

No call hands hidden state to a later one: `observe` returns everything the pass needs as
one `Observed`, and `render` takes all it renders as a `Layout`, so calls can come in any
order. What a backend does keep is what the world would keep for it, each named where it
lives: the replicas' first-seen times on disk (`state/<service>/cloud/first_seen.json`, for
clouds whose state has no launch time), and its API clients' caches (spot prices,
CloudWatch's metric, GCP's seen operations, the replica metrics window: clouds/apis.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from reconciler.clouds.capacity import parse_apply_errors
from reconciler.clouds.registry import CLOUDS
from reconciler.drift_report import DriftedResource, UnknownInstance
from reconciler.policy import FailureKind, Notice, Observation
from reconciler.spec.model import ServiceSpec
from reconciler.stacks import ManagedReplica
from reconciler.terraform.runner import root_config_text

Samples = tuple[tuple[float, int], ...]
PROVIDERS_FILE = "providers.tf.json"


@dataclass(frozen=True)
class StackDef:
    """One Terraform working directory: its name (a plain name, the directory under
    state/<service>/), cloud, region ("" for the front stack) and module."""

    name: str
    cloud: str
    region: str
    module: str


@dataclass(frozen=True)
class RenderedStack:
    """What one stack's plan depends on besides its state: the template and its context,
    and extra root-configuration files (provider blocks) written next to the root config."""

    stack: StackDef
    template: str
    context: Mapping[str, Any]
    root_files: Mapping[str, str] = field(default_factory=dict)


class Look(Enum):
    """How much one `CloudBackend.observe` does, cheapest first."""

    OFFLINE = "offline"  # Terraform state only: no cloud API, nothing started (--render-only)
    STATES = "states"  # each replica's state and the load balancer's members (status, waits)
    PLAN = "plan"  # all a pass needs; notices stay queued, orphans are only reported
    APPLY = "apply"  # all a pass needs; notices are consumed


@dataclass(frozen=True)
class Since:
    """What the last pass recorded that the next observation starts from."""

    notice_cursor: int = 0  # where the notice feed was read up to
    request_samples: Samples = ()  # (unix s, request counter) samples of the load balancer
    preempted: frozenset[str] = frozenset()  # replica ids the policy already saw preempted
    # What each version in use runs (`Version.runs` -> spec/fingerprint.py replica_part), so
    # a replica is probed as its own version asks, not as today's file does.
    version_specs: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Observed:
    """What a backend sees at one moment, as data: the whole input of a pass's decision.

    `managed` is every replica Terraform manages plus the adopted ones; `observation` gives
    each of them a state (SkyServe's ReplicaState) and the zones the spec may place in.
    `orphans` are replicas running without Terraform knowing them that cannot be kept: the
    engine stops them (apply only, `CloudBackend.stop`). `lb_lost_members` says the load
    balancer lost members Terraform set (a restarted HAProxy): the pass sets them again."""

    managed: tuple[ManagedReplica, ...]
    observation: Observation
    notices: tuple[Notice, ...] = ()
    notice_cursor: int = 0  # the cursor to save with this pass
    qps: float | None = None  # requests/s over about the last minute; None: unknown (hold)
    request_samples: Samples = ()  # the counter samples to save with this pass
    orphans: tuple[str, ...] = ()
    adopted: tuple[ManagedReplica, ...] = ()
    lb_members: frozenset[str] | None = None  # replicas the LB serves from now; None: unknown
    lb_lost_members: bool = False


@dataclass(frozen=True)
class ReplicaTraffic:
    """What the load balancer counted for one replica: requests and responses by class,
    cumulative since the replica joined it (a counter that restarts when the replica is
    re-added or the load balancer restarts), and its recent response times.

    `response_time_s` and `total_time_s` are averages, not quantiles: HAProxy's `rtime`
    (to the first response byte) and `ttime` (the whole request) over the server's last
    1024 requests; None before the first one.

    On clouds the load balancer counts per group of targets in a zone, not per replica
    (clouds/lb_stats.py `GroupTraffic`): `zone` is then set, with `accelerator` ("" for a
    group of several types), the totals are sums of settled minutes since the reconciler
    began reading, the times are the newest settled minute's, `response_time_quantiles_s`
    ("0.5" -> s) holds the cloud's own quantiles where it reports them, and a figure the
    cloud has no counterpart for is None."""

    requests: int
    responses: Mapping[str, int]  # "1xx", "2xx", "3xx", "4xx", "5xx", "other" -> count
    connection_errors: int | None  # the balancer could not connect to the replica
    response_errors: int | None  # the replica's response was aborted or refused
    response_time_s: float | None = None
    total_time_s: float | None = None
    zone: str | None = None  # set: counted per group of targets in this zone (clouds)
    accelerator: str = ""
    response_time_quantiles_s: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Layout:
    """What the stacks should hold after this pass: the replicas to keep (launches included),
    the policy's load-balancer members, the front's epoch (bumped to re-add lost members),
    the replicas to keep out of the load balancer (under a preemption warning, or gone), and
    what each service version its replicas carry runs (`Version.runs` -> the spec's replica
    part, spec/fingerprint.py: setup, run, plain envs, resources, probe)."""

    kept: tuple[ManagedReplica, ...]
    members: tuple[str, ...]
    epoch: int = 0
    draining: frozenset[str] = frozenset()
    versions: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class OutsideTerraform:
    """What a backend sees changed outside Terraform that a refresh-only plan cannot
    (`hedgeform drift`): per stack, resources whose real thing differs from the state (the
    sandbox's null resources: Terraform has nothing to refresh there), instances tagged for
    the service that no stack's state holds, and what could not be looked at (one line each)."""

    changed: Mapping[str, tuple[DriftedResource, ...]] = field(default_factory=dict)
    unknown: tuple[UnknownInstance, ...] = ()
    notes: tuple[str, ...] = ()


class CloudBackend(Protocol):
    """The cloud-specific half of a reconcile (see the module docstring): calls that
    take and return data, with no state carried from one call to the next."""

    state_dir: Path  # the loop watches `<state_dir>/notices.jsonl` for early ticks
    poll_s: float  # how often `converge` may re-observe while replicas start
    plan_cache: bool  # equal inputs give an equal plan (no drift to refresh): skip the plan
    # Accelerator names the region stacks run (clouds: the catalog's choice per region); empty
    # when nothing is chosen (the sandbox's are nominal): a per-accelerator target then sizes
    # replicas at the smallest target of the map (ReplicaPolicy.sized_for).
    accelerators_in_use: frozenset[str]
    accelerator_notes: tuple[str, ...]  # which accelerator each region runs, and why (`plan`)
    # Some zone offers several GPU types as pools of their own (stacks.pool_name, issue 15):
    # the policy sizes each type by its own target, so the spec's per-accelerator map stays.
    typed_pools: bool

    @property
    def carries_versions(self) -> bool:
        """Replicas carry their service version (launched with it, observed with it), so a
        changed spec rolls out (policy/rollout.py). Without it every replica counts as the
        current version: a rollout could never see its new replicas and would launch
        without end."""
        ...

    def stacks(self) -> list[StackDef]:
        """Region stacks, sorted, then the front stack if there is one."""
        ...

    def managed(self) -> list[ManagedReplica]:
        """The replicas Terraform manages now, read from each region stack's state."""
        ...

    def observe(
        self, spec: ServiceSpec, since: Since, now: float, look: Look, *, collect: bool = True
    ) -> Observed:
        """What is there now, as much as `look` asks. `collect` False: replicas Terraform does
        not know are neither adopted nor reported (a killed Terraform still holds a lock and
        may be about to record them). Errors: CredentialsError, SandboxError."""
        ...

    def render(self, layout: Layout, now: float) -> list[RenderedStack]:
        """Every stack's template and context for `layout`."""
        ...

    def launch_failures(
        self, stack: str, output: str, zones: Mapping[str, str]
    ) -> tuple[dict[str, tuple[FailureKind, str]], bool]:
        """Per replica id, why its create failed in this apply output (`zones`: replica id ->
        zone); and whether the output also holds errors that belong to no replica."""
        ...

    def stop(self, replica_ids: Sequence[str]) -> None:
        """Stop replicas no Terraform state holds (orphans; adopted ones the policy ends)."""
        ...

    def endpoint(self) -> str:
        """The service's URL(s), comma-separated when there is one load balancer per region."""
        ...

    def replica_traffic(self) -> Mapping[str, ReplicaTraffic] | None:
        """Per replica id in the load balancer, what it counted (cumulative); on clouds per
        target group (backend) and zone instead, keyed by a name of it (`ReplicaTraffic.zone`
        set). None where the load balancer is not running; errors (AdapterError and its
        kin) where its figures cannot be read, the message saying why."""

    def outside_terraform(self) -> OutsideTerraform:
        """What changed outside Terraform that its refresh cannot see, and the instances
        tagged for the service that no stack's state holds (`OutsideTerraform`). Reads only:
        nothing is started, stopped or adopted. Errors: CredentialsError."""
        ...


# The replica resource of every module, `for_each` by replica id: the sandbox's and each
# registered cloud's (`Cloud.replica_type`), so a new cloud's needs no line here.
REPLICA_RESOURCES = (
    "null_resource.replica[",
    *(f"{cloud.replica_type}.replica[" for cloud in CLOUDS.values()),
)


def classify_apply_output(
    cloud: str, output: str, zones: Mapping[str, str]
) -> tuple[dict[str, tuple[FailureKind, str]], bool]:
    """Terraform's apply output -> {replica id: (kind, message)} and whether an error block
    concerned something other than a replica (reconciler.clouds.capacity per cloud)."""
    out: dict[str, tuple[FailureKind, str]] = {}
    other = False
    for failure in parse_apply_errors(cloud, output, zones):
        address = failure.address or ""
        if failure.replica_id and any(marker in address for marker in REPLICA_RESOURCES):
            detail = failure.message.split("Output: ", 1)[-1][:300]
            out[failure.replica_id] = (failure.kind, detail)
        else:
            other = True
    return out, other


def root_config(
    stack: str,
    stack_dir: Path,
    module_dir: Path,
    var_file: Path,
    backend: Mapping[str, Any] | None = None,
) -> str:
    """The root configuration reconciler.terraform.runner writes before `init`, for
    `plan --render-only`: the same function writes both (`backend`: the stack's state
    backend block, None for local state)."""
    try:
        names = sorted(json.loads(var_file.read_text()))
    except (OSError, ValueError) as exc:  # pragma: no cover - we just wrote it
        raise ValueError(f"{var_file}: {exc}") from exc
    return root_config_text(module_dir, stack_dir, names, backend)
