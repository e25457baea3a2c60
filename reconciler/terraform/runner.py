"""The Terraform adapter: one working directory and one local state per stack.

`TerraformRunner` is the whole interface the reconciler sees (`FakeTerraformRunner` in
`reconciler.terraform.fake` implements it in memory for other tests). `CliTerraformRunner`
runs the real CLI.

Choices, and why:
- python-terraform 0.10.1 builds the command lines (its `plan`/`apply`/`destroy`/`init`
  defaults: `-input=false -no-color -detailed-exitcode -reconfigure`), but it cannot run them
  the way we need: its `cmd` calls `Popen` with a fixed set of arguments (no
  `start_new_session`, no timeout) and the process environment (`os.environ`, so no per-stack
  environment without mutating globals), and `synchronous=False` is broken. So `_Argv`
  overrides `cmd` to return the argv, and `reconciler.terraform.process` runs it in a new
  session that cancel can stop as a group.
- Its 2019 defaults that Terraform 1.x rejects are overridden here, each covered by a test:
  `destroy` gets `force=None` (`-force` is gone) and `-auto-approve`; every call passes
  `var=None` (an empty `variables` dict becomes a temp `-var-file`, and "Can't set variables
  when applying a saved plan"); outputs come from `terraform output -json` in full
  (`output(name)` raises KeyError); the stack is the working directory, never a positional
  directory argument; `plan`'s `-detailed-exitcode` means 0 = no changes, 2 = changes.
- The stack directory holds a generated root `main.tf.json` that calls the module by a
  relative path (`module "stack" { source = "../../..." }`) and passes every variable of the
  stack's tfvars through, plus state, lock file and plan. The module is referenced, not
  copied: nothing goes stale, `path.module` and `../` sources inside modules keep working,
  and the same module serves every stack. The module's outputs come back as one object.
- `init` runs once per stack and again only when the module, the binary or the CLI config
  changes (a fingerprint in `.terraform/`); concurrent inits of one directory are not locked
  by Terraform, so a `flock` on `<stack>/.hedgeform.lock` serialises them.
- Only a saved plan is ever applied (`plan -out` then `apply <planfile>`); every locking
  command gets `-lock-timeout`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from python_terraform import IsFlagged, Terraform

from reconciler.errors import (
    ApplyError,
    CancelledError,
    InitError,
    LockError,
    PlanError,
    TerraformError,
    TerraformMissingError,
)
from reconciler.files import write_if_changed
from reconciler.terraform.backend import LOCAL, StateBackend
from reconciler.terraform.binaries import ToolPaths, resolve_tools, terraform_env
from reconciler.terraform.errors import LOCK_MARKER, from_output
from reconciler.terraform.process import Completed, GroupProcess

ROOT_CONFIG = "main.tf.json"
PLAN_FILE = "hedgeform.tfplan"
REFRESH_PLAN_FILE = "hedgeform-refresh.tfplan"  # `plan_refresh_only`'s: never applied
DEFAULT_VARS = "terraform.tfvars.json"
MODULE_NAME = "stack"
_LOCK_FILE = ".hedgeform.lock"
_INIT_STAMP = ".terraform/hedgeform-init.sha256"
_BACKEND_STAMP = ".terraform/hedgeform-backend.json"  # the backend block the last init used


@dataclass(frozen=True)
class PlanResult:
    changed: bool
    plan_path: Path
    json: dict[str, Any]


class TerraformRunner(Protocol):
    """What the reconciler needs from Terraform for one stack."""

    @property
    def stack(self) -> str: ...

    def init(self) -> None: ...

    def plan(self, var_file: Path | None = None, *, destroy: bool = False) -> PlanResult: ...

    def apply_saved_plan(self, plan_path: Path) -> None: ...

    def plan_refresh_only(self, var_file: Path | None = None) -> PlanResult: ...

    def output(self) -> dict[str, Any]: ...

    def destroy(self, var_file: Path | None = None) -> None: ...

    def state_list(self) -> list[str]: ...

    def state_pull(self) -> bytes: ...

    def migrate_state(self) -> None: ...

    def force_unlock(self, lock_id: str) -> None: ...

    def cancel(self) -> None: ...


@dataclass(frozen=True)
class RunnerConfig:
    lock_timeout_s: int = 30
    """How long a command waits for another run's state lock before failing with LockError."""
    command_timeout_s: float | None = None
    """Stop a command (like cancel) after this long; None waits for ever."""
    sigint_grace_s: float = 60.0
    """After SIGINT, how long Terraform may take to finish in-flight operations and save
    state before SIGTERM (its hard stop). Real clouds need a generous value."""
    sigterm_grace_s: float = 10.0
    state_backend: StateBackend = LOCAL
    """Where each stack's state lives (terraform/backend.py); local: its stack directory."""
    service: str = ""
    """The service the stacks belong to: part of each stack's remote state key."""


class _Argv(Terraform):  # type: ignore[misc]
    """python-terraform as a command-line builder only: `cmd` returns the argv."""

    def read_state_file(self, file_path: str | None = None) -> None:
        self.tfstate = None  # the constructor would parse terraform.tfstate; not needed

    def cmd(self, cmd: str, *args: str, **kwargs: Any) -> list[str]:
        for key in ("capture_output", "raise_on_error", "synchronous"):
            kwargs.pop(key, None)
        argv: list[str] = self.generate_cmd_string(cmd, *args, **kwargs)
        self.temp_var_files.clean_up()  # none are made: every call passes var=None
        return argv


class CliTerraformRunner:
    """Runs the real Terraform CLI for one stack directory."""

    def __init__(
        self,
        stack_dir: Path,
        module_dir: Path,
        tools: ToolPaths,
        *,
        name: str | None = None,
        config: RunnerConfig | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.stack_dir = stack_dir.absolute()
        self.module_dir = module_dir.absolute()
        self.tools = tools
        self._name = name or self.stack_dir.name
        self.config = config or RunnerConfig()
        self.env = terraform_env(tools, env)
        self._argv = _Argv(working_dir=str(self.stack_dir), terraform_bin_path=str(tools.terraform))
        self._process = GroupProcess(self.config.sigint_grace_s, self.config.sigterm_grace_s)

    @property
    def stack(self) -> str:
        return self._name

    # -- commands -------------------------------------------------------------------------

    def init(self) -> None:
        self._prepare(self._var_file(None))

    def plan(self, var_file: Path | None = None, *, destroy: bool = False) -> PlanResult:
        var_file = self._var_file(var_file)
        self._prepare(var_file)
        plan_path = self.stack_dir / PLAN_FILE
        plan_path.unlink(missing_ok=True)
        argv = self._argv.plan(
            out=str(plan_path),
            destroy=IsFlagged if destroy else None,
            **self._common(var_file),
        )
        result = self._run("plan", argv)
        if result.returncode not in (0, 2):
            raise self._error(PlanError, "plan", result)
        if result.returncode == 0:  # nothing to change: skip `show` (a process per stack)
            return PlanResult(False, plan_path, {"resource_changes": []})
        shown = self._run("show", self._argv.cmd("show", str(plan_path), json=IsFlagged))
        if shown.returncode != 0:
            raise self._error(PlanError, "show", shown)
        return PlanResult(result.returncode == 2, plan_path, json.loads(shown.stdout))

    def plan_refresh_only(self, var_file: Path | None = None) -> PlanResult:
        """`plan -refresh-only` and its `show -json`, for `hedgeform drift`: what changed
        outside Terraform is in the JSON's `resource_drift` (Terraform >= 0.15.4). Its saved
        plan is deleted at once: it is read, never applied. `changed`: `resource_drift`
        holds a change (Terraform 1.0.3 exits 2 under `-detailed-exitcode` for any
        refresh-only plan, drift or not, so the exit code says nothing here)."""
        var_file = self._var_file(var_file)
        self._prepare(var_file)
        plan_path = self.stack_dir / REFRESH_PLAN_FILE
        plan_path.unlink(missing_ok=True)
        argv = self._argv.plan(out=str(plan_path), refresh_only=IsFlagged, **self._common(var_file))
        try:
            result = self._run("plan -refresh-only", argv)
            if result.returncode not in (0, 2):
                raise self._error(PlanError, "plan -refresh-only", result)
            shown = self._run("show", self._argv.cmd("show", str(plan_path), json=IsFlagged))
            if shown.returncode != 0:
                raise self._error(PlanError, "show", shown)
        finally:
            plan_path.unlink(missing_ok=True)
        data = json.loads(shown.stdout)
        return PlanResult(bool(drifted(data)), plan_path, data)

    def apply_saved_plan(self, plan_path: Path) -> None:
        if not plan_path.is_file():  # else Terraform 1.0 would take it for a config directory
            raise ApplyError(self.stack, "apply", f"no saved plan at {plan_path}")
        common = self._common(None)
        argv = self._argv.apply(str(plan_path), skip_plan=False, **common)
        self._stamp_backend()  # from here on this backend may hold the stack's state
        result = self._run("apply", argv)
        if result.returncode != 0:
            raise self._error(ApplyError, "apply", result)
        plan_path.unlink(missing_ok=True)  # a saved plan is single-use

    def destroy(self, var_file: Path | None = None) -> None:
        var_file = self._var_file(var_file)
        self._prepare(var_file)
        argv = self._argv.destroy(force=None, auto_approve=IsFlagged, **self._common(var_file))
        self._stamp_backend()
        result = self._run("destroy", argv)
        if result.returncode != 0:
            raise self._error(ApplyError, "destroy", result)

    def output(self) -> dict[str, Any]:
        """The module's outputs, name -> value (`{}` before the first apply)."""
        result = self._run("output", self._argv.cmd("output", json=IsFlagged, no_color=IsFlagged))
        if result.returncode != 0:
            raise self._error(TerraformError, "output", result)
        data = json.loads(result.stdout or "{}")
        value = data.get(MODULE_NAME, {}).get("value") or {}
        return dict(value)

    def state_pull(self) -> bytes:
        """The stack's state as its backend holds it (`terraform state pull`), b"" when there
        is none yet. The one way the reconciler reads a remote state."""
        self._prepare(self._var_file(None), keep_config=True)
        result = self._run("state pull", self._argv.cmd("state pull"))
        if result.returncode != 0:
            raise self._error(TerraformError, "state pull", result)
        return result.stdout.encode()

    def migrate_state(self) -> None:
        """Move the stack's state from the backend its last `init` used to the configured one
        (`init -migrate-state -force-copy`); nothing to move is fine."""
        self.stack_dir.mkdir(parents=True, exist_ok=True)
        with self._stack_lock():
            if (self.stack_dir / ROOT_CONFIG).is_file():
                write_if_changed(
                    self.stack_dir / ROOT_CONFIG, self._root_config(self._var_file(None))
                )
            argv = [str(self.tools.terraform), "init", "-input=false", "-no-color",
                    "-migrate-state", "-force-copy"]  # fmt: skip
            result = self._run("init", argv)
            if result.returncode != 0:
                raise self._error(InitError, "init -migrate-state", result)
            self._stamp_backend()
            (self.stack_dir / _INIT_STAMP).write_text(self._fingerprint())

    def force_unlock(self, lock_id: str) -> None:
        """Release the stack's state lock `lock_id` (`terraform force-unlock -force`): for a
        lock whose Terraform is gone. ValueError for an id that is not a lock id."""
        if not _LOCK_ID.fullmatch(lock_id):
            raise ValueError(f"{lock_id!r} is not a Terraform lock id (a UUID)")
        self._prepare(self._var_file(None), keep_config=True)
        argv = [str(self.tools.terraform), "force-unlock", "-force", lock_id]
        result = self._run("force-unlock", argv)
        if result.returncode != 0:
            output = result.stderr + result.stdout
            if "unexpected end of JSON input" in output or "lock ID" in output:
                # What Terraform's S3 backend says of an id no lock has (any more).
                raise TerraformError(
                    self.stack,
                    "force-unlock",
                    f"no lock {lock_id} on this stack (already released?); a plan names the "
                    "lock it waits for",
                )
            raise self._error(TerraformError, "force-unlock", result)

    def state_list(self) -> list[str]:
        if (
            not self.config.state_backend.remote
            and not (self.stack_dir / "terraform.tfstate").is_file()
        ):
            return []  # Terraform exits 1 with "No state file was found!"
        result = self._run("state list", self._argv.cmd("state list"))
        if result.returncode != 0:
            raise self._error(TerraformError, "state list", result)
        return [line for line in result.stdout.splitlines() if line.strip()]

    def cancel(self) -> None:
        """Stop the running command's whole process group (SIGINT, SIGTERM, SIGKILL)."""
        self._process.cancel()

    # -- helpers --------------------------------------------------------------------------

    def _common(self, var_file: Path | None) -> dict[str, Any]:
        options: dict[str, Any] = {
            "var": None,
            "var_file": str(var_file) if var_file else None,
            "lock_timeout": f"{self.config.lock_timeout_s}s",
        }
        return options

    def _var_file(self, var_file: Path | None) -> Path | None:
        if var_file is not None:
            return var_file.absolute()
        default = self.stack_dir / DEFAULT_VARS
        return default if default.is_file() else None

    def _run(self, command: str, argv: Sequence[str]) -> Completed:
        try:
            result = self._process.run(
                argv, self.stack_dir, self.env, self.config.command_timeout_s
            )
        except (FileNotFoundError, PermissionError) as exc:
            raise TerraformMissingError(f"cannot run {self.tools.terraform}: {exc}") from exc
        if result.cancelled or result.timed_out:
            why = (
                f"timed out after {self.config.command_timeout_s}s"
                if result.timed_out
                else "cancelled"
            )
            raise CancelledError(self.stack, command, f"{why}; Terraform was stopped")
        return result

    def _error(self, kind: type[TerraformError], command: str, result: Completed) -> TerraformError:
        output = result.stderr if result.stderr.strip() else result.stdout
        backend = self.config.state_backend
        if backend.kind == "s3" and "S3 bucket does not exist" in output:
            return kind(
                self.stack,
                command,
                f"the state backend's S3 bucket {backend.container} does not exist in "
                f'{backend.region}: create it once (docs/clouds.md, "Remote state"), or fix '
                "HEDGEFORM_STATE_BACKEND / state_backend",
            )
        if LOCK_MARKER in output:
            error = from_output(LockError, self.stack, command, output)
            info = lock_info(output)
            if info.get("ID") and self.config.state_backend.remote:
                # A remote lock outlives a Terraform killed mid-apply (the local one does
                # not: the kernel drops it with the process), so say how to release it.
                error.message += (
                    f" (lock {info['ID']}, held by {info.get('Who', '?')} since "
                    f"{info.get('Created', '?')}; if that Terraform is gone, release it with "
                    f"`hedgeform state unlock {self.config.service or 'SERVICE'} {self.stack} "
                    f"{info['ID']}`)"
                )
            return error
        return from_output(kind, self.stack, command, output)

    def _prepare(self, var_file: Path | None, *, keep_config: bool = False) -> None:
        """Write the root config and `init` when needed, one process at a time per stack.
        `keep_config` leaves an existing root config as it is (reading state needs no
        variables). InitError, one line, when the configured state backend is not the one
        the stack's state is in: `init -reconfigure` would start an empty state there and
        the next plan would launch a second fleet; `migrate_state` moves it."""
        self.stack_dir.mkdir(parents=True, exist_ok=True)
        with self._stack_lock():
            root = self.stack_dir / ROOT_CONFIG
            if not (keep_config and root.is_file()):
                write_if_changed(root, self._root_config(var_file))
            fingerprint = self._fingerprint()
            stamp = self.stack_dir / _INIT_STAMP
            lock_file = self.stack_dir / ".terraform.lock.hcl"
            if lock_file.is_file() and stamp.is_file() and stamp.read_text() == fingerprint:
                return
            self._check_backend_unchanged()
            argv = self._argv.init(var=None, input=False)
            result = self._run("init", argv)
            if result.returncode != 0:
                raise self._error(InitError, "init", result)
            # The backend is stamped when state is first written there (apply, destroy,
            # migrate), not here: a read-only `status` or `plan` under a URL that was then
            # corrected must not make the corrected one look like a move.
            stamp.write_text(fingerprint)

    def _backend_text(self) -> str:
        block = self.config.state_backend.block(self.config.service, self.stack)
        return json.dumps(block, sort_keys=True)

    def _stamp_backend(self) -> None:
        path = self.stack_dir / _BACKEND_STAMP
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self._backend_text())

    def _check_backend_unchanged(self) -> None:
        """InitError when the stack's state is in another backend than the configured one:
        the one its last apply, destroy or migration recorded, or (before any record) a
        local state file."""
        stamp = self.stack_dir / _BACKEND_STAMP
        wanted = self._backend_text()
        if stamp.is_file():
            if stamp.read_text() == wanted:
                return
        else:
            local = self.stack_dir / "terraform.tfstate"
            if not self.config.state_backend.remote or not local.is_file():
                return
            if not local.stat().st_size:
                return
        raise InitError(
            self.stack,
            "init",
            f"the state backend is now {self.config.state_backend.describe()}, but this "
            f"stack's state is still in the one it used before; move it with "
            f"`hedgeform state migrate {self.config.service or 'SERVICE'}` first",
        )

    @contextlib.contextmanager
    def _stack_lock(self) -> Iterator[None]:
        with (self.stack_dir / _LOCK_FILE).open("w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _root_config(self, var_file: Path | None) -> str:
        names = sorted(_var_names(self.stack, var_file)) if var_file else []
        backend = self.config.state_backend.block(self.config.service, self.stack)
        return root_config_text(self.module_dir, self.stack_dir, names, backend)

    def _fingerprint(self) -> str:
        """Changes when init must run again: module files, binary or CLI config."""
        digest = hashlib.sha256()
        digest.update(str(self.tools.terraform).encode())
        digest.update(
            self.tools.cli_config.read_bytes() if self.tools.cli_config.is_file() else b""
        )
        digest.update(os.path.relpath(self.module_dir, self.stack_dir).encode())
        digest.update(self._backend_text().encode())
        for path in sorted(self.module_dir.rglob("*")):
            if (
                path.is_file()
                and path.suffix in {".tf", ".json"}
                and ".terraform" not in path.parts
            ):
                digest.update(str(path.relative_to(self.module_dir)).encode())
                digest.update(path.read_bytes())
        return digest.hexdigest()


_LOCK_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_LOCK_FIELD = re.compile(r"^\s+(ID|Path|Operation|Who|Version|Created):\s*(.*?)\s*$")


def drifted(plan_json: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The `resource_drift` entries of a plan's `show -json` that change something (not
    `no-op`): resources changed or deleted outside Terraform."""
    return [
        dict(rc)
        for rc in plan_json.get("resource_drift") or []
        if (rc.get("change") or {}).get("actions", ["no-op"]) != ["no-op"]
    ]


def lock_info(output: str) -> dict[str, str]:
    """The `Lock Info:` fields of Terraform's "Error acquiring the state lock" message."""
    _, _, rest = output.partition("Lock Info:")
    fields: dict[str, str] = {}
    for line in rest.splitlines()[1:]:
        match = _LOCK_FIELD.match(line)
        if match is None:
            if fields:
                break
            continue
        fields[match.group(1)] = match.group(2)
    return fields


def _var_names(stack: str, var_file: Path) -> list[str]:
    try:
        data = json.loads(var_file.read_text())
    except (OSError, ValueError) as exc:
        raise PlanError(stack, "plan", f"cannot read {var_file}: {exc}") from exc
    if not isinstance(data, dict):
        raise PlanError(stack, "plan", f"{var_file} is not a JSON object")
    return [str(name) for name in data]


def root_config_text(
    module_dir: Path,
    stack_dir: Path,
    names: Sequence[str],
    backend: Mapping[str, Any] | None = None,
) -> str:
    """The stack's generated root configuration: the module by relative path, every variable
    of the stack's tfvars passed through, the module's outputs as one object, and the state
    backend block when the state is not local (`StateBackend.block`)."""
    source = os.path.relpath(module_dir.absolute(), stack_dir.absolute())
    if not source.startswith("../"):
        source = f"./{source}"  # Terraform takes only ./ and ../ as local module paths
    module: dict[str, Any] = {"source": source}
    module.update({name: f"${{var.{name}}}" for name in sorted(names)})
    config: dict[str, Any] = {
        "//": "Generated by hedgeform (reconciler/terraform/runner.py); do not edit.",
        "module": {MODULE_NAME: module},
        "output": {MODULE_NAME: {"value": f"${{module.{MODULE_NAME}}}", "sensitive": True}},
    }
    if names:
        config["variable"] = {name: {} for name in sorted(names)}  # typed in the module
    if backend:
        config["terraform"] = {"backend": dict(backend)}
    return json.dumps(config, indent=2, sort_keys=True) + "\n"


def runner_for(
    project_root: Path,
    stack_dir: Path,
    module_dir: Path,
    *,
    name: str | None = None,
    config: RunnerConfig | None = None,
) -> CliTerraformRunner:
    """A runner using the project's tools (or `TERRAFORM_BIN`)."""
    return CliTerraformRunner(
        stack_dir, module_dir, resolve_tools(project_root), name=name, config=config
    )
