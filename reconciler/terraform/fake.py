"""An in-memory `TerraformRunner` for tests of the code above the adapter.

It records every call, converges like Terraform (after an apply the next plan has no changes
until `changed` is set again) and fails on request with the same typed errors the real runner
raises, so reconcile logic can be tested for lock contention, capacity errors and cancels.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.errors import ApplyError, CancelledError, InitError, PlanError, TerraformError
from reconciler.terraform.runner import PlanResult, drifted

_DEFAULT_ERRORS: dict[str, type[TerraformError]] = {
    "init": InitError,
    "plan": PlanError,
    "plan -refresh-only": PlanError,
    "apply": ApplyError,
    "destroy": ApplyError,
}


@dataclass
class FakeTerraformRunner:
    name: str = "fake"
    changed: bool = True
    """What the next plan reports; an apply or destroy resets it to False."""
    plan_json: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    resources: list[str] = field(default_factory=list)
    refresh_json: dict[str, Any] = field(default_factory=dict)
    """What `plan_refresh_only` shows (put drift under `resource_drift`)."""
    pulled: bytes = b""
    """What `state_pull` returns (the state a remote backend holds). When it is a JSON
    state, each apply and destroy bumps its `serial`, as Terraform does."""
    plan_dir: Path | None = None
    """Where `plan` writes each saved plan as a small file (None: it writes nothing). A copy
    of one applies like the original; a plan made before the last apply is refused as
    Terraform refuses it ("Saved plan is stale")."""
    on_apply: Callable[[FakeTerraformRunner, Path | None], None] | None = None
    """Called on each successful apply with the var file of the plan, to update outputs."""
    calls: list[tuple[str, Any]] = field(default_factory=list)
    _failures: dict[str, list[TerraformError]] = field(default_factory=dict)
    _plans: dict[Path, Path | None] = field(default_factory=dict)
    _written: dict[bytes, Path] = field(default_factory=dict)  # plan file bytes -> its path
    _cancelled: bool = False

    @property
    def stack(self) -> str:
        return self.name

    def fail(self, command: str, message: str = "Error: injected", times: int = 1) -> None:
        """Make the next `times` calls of `command` raise its typed error with `message`."""
        kind = _DEFAULT_ERRORS.get(command, TerraformError)
        self.fail_with(command, *(kind(self.stack, command, message) for _ in range(times)))

    def fail_with(self, command: str, *errors: TerraformError) -> None:
        self._failures.setdefault(command, []).extend(errors)

    def init(self) -> None:
        self._call("init", None)

    def plan(self, var_file: Path | None = None, *, destroy: bool = False) -> PlanResult:
        self._call("plan", (var_file, destroy))
        path = Path(f"/fake/{self.stack}/plan-{len(self.calls)}.tfplan")
        if self.plan_dir is not None:
            path = self.plan_dir / f"{self.stack}-plan-{len(self.calls)}.tfplan"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(f"fake plan of {self.stack}, call {len(self.calls)}\n".encode())
            self._written[path.read_bytes()] = path
        self._plans[path] = var_file
        return PlanResult(self.changed, path, dict(self.plan_json))

    def plan_refresh_only(self, var_file: Path | None = None) -> PlanResult:
        """A refresh-only plan: `refresh_json`, changed when it holds drift; nothing saved
        (its plan path cannot be applied)."""
        self._call("plan -refresh-only", var_file)
        path = Path(f"/fake/{self.stack}/refresh-{len(self.calls)}.tfplan")
        return PlanResult(bool(drifted(self.refresh_json)), path, dict(self.refresh_json))

    def apply_saved_plan(self, plan_path: Path) -> None:
        self._call("apply", plan_path)
        if self.plan_dir is not None and plan_path.is_file():  # the plan, or a copy of it
            original = self._written.get(plan_path.read_bytes())
            if original is not None and original not in self._plans:
                raise ApplyError(
                    self.stack, "apply", "Error: Saved plan is stale",
                    "Error: Saved plan is stale\n\nThe given plan file can no longer be "
                    "applied because the state was changed by another operation after the "
                    "plan was created.",
                )  # fmt: skip
            plan_path = original or plan_path
        if plan_path not in self._plans:
            raise ApplyError(self.stack, "apply", f"no saved plan at {plan_path}")
        var_file = self._plans.pop(plan_path)
        self._plans.clear()  # like Terraform: other saved plans are now stale
        self.changed = False
        self._bump_serial()
        if self.on_apply is not None:
            self.on_apply(self, var_file)

    def _bump_serial(self) -> None:
        try:
            state = json.loads(self.pulled)
        except ValueError:
            return
        if isinstance(state, dict) and isinstance(state.get("serial"), int):
            state["serial"] += 1
            self.pulled = json.dumps(state).encode()

    def output(self) -> dict[str, Any]:
        self._call("output", None)
        return dict(self.outputs)

    def destroy(self, var_file: Path | None = None) -> None:
        self._call("destroy", var_file)
        self.resources.clear()
        self.outputs.clear()
        self.changed = False
        self._bump_serial()

    def state_list(self) -> list[str]:
        self._call("state list", None)
        return list(self.resources)

    def state_pull(self) -> bytes:
        self._call("state pull", None)
        return self.pulled

    def migrate_state(self) -> None:
        self._call("migrate state", None)

    def force_unlock(self, lock_id: str) -> None:
        self._call("force-unlock", lock_id)

    def cancel(self) -> None:
        self.calls.append(("cancel", None))
        self._cancelled = True

    def _call(self, command: str, arg: Any) -> None:
        self.calls.append((command, arg))
        if self._cancelled:
            self._cancelled = False
            raise CancelledError(self.stack, command, "cancelled; Terraform was stopped")
        queue = self._failures.get(command)
        if queue:
            raise queue.pop(0)

    def commands(self) -> list[str]:
        """The command names called so far, in order."""
        return [command for command, _ in self.calls]
