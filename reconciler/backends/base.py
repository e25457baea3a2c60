"""The cloud-specific half of a reconcile, behind one small interface.

`Reconciler.run_pass` is the same loop for every cloud: observe -> decide -> render -> plan ->
apply -> record. What differs is which stacks exist, what each renders, how replicas and
signals are read and how a failed launch is classified; a `CloudBackend` answers those.
`SandboxCloud` (sandbox_cloud.py) is the `local` backend, `ProviderCloud` (provider_cloud.py)
the one for AWS, GCP and Azure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from reconciler.clouds.capacity import parse_apply_errors
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


class CloudBackend(Protocol):
    """Where the cloud-specific parts of a reconcile live (see the module docstring)."""

    state_dir: Path  # the loop watches `<state_dir>/notices.jsonl` for early ticks
    poll_s: float  # how often `converge` may re-observe while replicas start
    plan_cache: bool  # equal inputs give an equal plan (no drift to refresh): skip the plan

    def stacks(self) -> list[StackDef]:
        """Region stacks, sorted, then the front stack if there is one."""
        ...

    def ensure_up(self, now: float) -> None:
        """Before any API call: the sandbox starts its market; clouds check credentials."""
        ...

    def managed(self) -> list[ManagedReplica]:
        """The replicas Terraform manages now, from each region stack's state."""
        ...

    def notices(self, cursor: int, *, consume: bool) -> tuple[list[Notice], int]:
        """Notices new since `cursor`, and the cursor to save. `consume=False` (plan only)
        must leave queued notices for the next pass."""
        ...

    def request_rate(self, samples: Samples, now: float) -> tuple[float | None, Samples]:
        """Requests/s over about the last minute (None: unknown, the policy holds), and the
        counter samples to keep in the record."""
        ...

    def observe(
        self, spec: ServiceSpec, managed: Sequence[ManagedReplica], preempted: set[str], now: float
    ) -> Observation:
        """Each managed replica with its state, and the zones the spec may place in."""
        ...

    def lb_members(self) -> set[str] | None:
        """Replicas the load balancer serves from now; None when unknown."""
        ...

    def applied_members(self) -> set[str] | None:
        """Members Terraform last set, when they can drift from `lb_members` (HAProxy)."""
        ...

    def observe_offline(
        self, spec: ServiceSpec, managed: Sequence[ManagedReplica], now: float
    ) -> Observation:
        """What Terraform state alone says, without any cloud API (`plan --render-only`)."""
        ...

    def render(
        self,
        kept: Sequence[ManagedReplica],
        members: Sequence[str],
        epoch: int,
        now: float,
        warned: set[str],
    ) -> list[RenderedStack]:
        """Every stack's template and context for the replicas to keep and the policy's LB
        members (`warned`: replicas under a preemption warning, to drain)."""
        ...

    def launch_failures(
        self, stack: str, output: str, zones: Mapping[str, str]
    ) -> tuple[dict[str, tuple[FailureKind, str]], bool]:
        """Per replica id, why its create failed in this apply output; and whether the
        output also holds errors that belong to no replica (the stack then failed)."""
        ...

    def orphans(self, managed_ids: set[str]) -> list[str]:
        """Ids of replicas running without Terraform knowing them (a crash between a launch
        and Terraform saving its state, or a lost state file)."""
        ...

    def adoptable(self, orphan_ids: Sequence[str]) -> list[ManagedReplica]:
        """Those of `orphan_ids` that can be kept as they are: running, in a zone of the
        spec, with all the stack needs to manage them (Terraform then records them again,
        and the launch finds them running). The others are stopped."""
        ...

    def stop_replica(self, replica_id: str) -> None: ...

    def endpoint(self) -> str: ...


REPLICA_RESOURCES = ("null_resource.replica[", "_instance.replica[", "_machine.replica[")


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


def root_config(stack: str, stack_dir: Path, module_dir: Path, var_file: Path) -> str:
    """The root configuration reconciler.terraform.runner writes before `init`, for
    `plan --render-only`: the same function writes both."""
    try:
        names = sorted(json.loads(var_file.read_text()))
    except (OSError, ValueError) as exc:  # pragma: no cover - we just wrote it
        raise ValueError(f"{var_file}: {exc}") from exc
    return root_config_text(module_dir, stack_dir, names)
