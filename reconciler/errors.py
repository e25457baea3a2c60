"""Every error a user of Hedgeform can see, under one root.

A command catches `HedgeformError` and prints `str(error)`: one line (a spec may list one
problem per line), never a traceback. Anything else that escapes is a bug. Callers that must
tell errors apart catch the subclass; the tree:

    HedgeformError
    ├── InputError (ValueError) ........... something the user wrote or typed
    │   ├── SpecError ..................... a service file (spec/)
    │   ├── BadNameError .................. a service, stack or zone name (paths)
    │   ├── CloudConfigError .............. a cloud, region, zone or accelerator (clouds/)
    │   │   └── SettingsError ............. a missing or malformed cloud setting
    │   ├── UnitValueError ................ a value a systemd unit or crontab cannot hold
    │   ├── TraceError .................... a spot trace file or directory
    │   ├── BacktestError ................. backtest arguments
    │   ├── ProfileError .................. a GPU throughput profile (spec/profile)
    │   ├── UnreadableFileError ........... a file that cannot be read as text (spec/reading)
    │   ├── UnparsableFileError ........... YAML or JSON that does not load (spec/reading)
    │   └── MixError ...................... no GPU mix serves the rate (policy/mix)
    ├── StoredStateError .................. a file Hedgeform keeps that it cannot use
    │   ├── StateError .................... reconciler.json (engine/state_store)
    │   │   └── WrittenMeanwhile .......... a conditional write lost (clouds/objects)
    │   ├── TfStateError .................. a Terraform state file
    │   └── MemoryFormatError (ValueError)  the policy's memory in reconciler.json
    ├── RenderError (ValueError) .......... a template that does not give valid JSON
    ├── ReconcileError .................... a pass that cannot run at all
    │   ├── BusyError ..................... another pass holds the service lock
    │   │   └── LoopBusyError ............. another `hedgeform run` holds the loop lock
    │   └── StalePlanError ................ a reviewed plan that no longer applies (exit 4)
    ├── TerraformError .................... a Terraform command failed for one stack
    │   ├── LockError, InitError, PlanError, ApplyError, CancelledError
    │   ├── PlanRefusedError .............. a plan Hedgeform will not apply (every replica)
    │   └── TerraformMissingError ......... no usable Terraform binary
    ├── InstallError ...................... the pinned tools could not be installed
    ├── CloudApiError ..................... a cloud API (clouds/<cloud>/)
    │   ├── CredentialsError .............. no usable credentials
    │   ├── ThrottledError ................ throttled after every retry
    │   └── NotProvisionedError ........... the cloud side does not exist yet
    ├── SandboxError ...................... the local sandbox cloud (exit code 1)
    │   └── CapacityError ................. no spot capacity in the zone (exit code 3)
    ├── OptimalError ...................... the backtest's ILP solver found no plan
    └── SoakError ......................... a soak that cannot run

`AdapterError` is the former name of CloudApiError and stays an alias.
"""

from __future__ import annotations

from collections.abc import Iterable


class HedgeformError(Exception):
    """The root: a message for the user, one line."""


# -- input --------------------------------------------------------------------------------


class InputError(HedgeformError, ValueError):
    """Something the user wrote or typed cannot be used."""


class SpecError(InputError):
    """A service file that cannot be used; one problem per line, never a traceback.

    `problems` holds the lines without the file name (each starts with the field path); the
    message prefixes each with `source` so it reads like compiler output.
    """

    def __init__(self, problems: Iterable[str], *, source: str = "") -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__("\n".join(prefix + problem for problem in self.problems))


class BadNameError(InputError):
    """A service or stack name that is not a plain name."""


class CloudConfigError(InputError):
    """A cloud setting the catalog does not know (region, zone, accelerator); one line."""


class SettingsError(CloudConfigError):
    """A setting that is missing or malformed; the message names it and where to put it."""


class UnitValueError(InputError):
    """A value that cannot be written into a unit file or crontab safely."""


class TraceError(InputError):
    """A trace file or directory that cannot be used; the message is one line for the user."""


class BacktestError(InputError):
    """Bad backtest input; the message is one line for the user."""


class ProfileError(InputError):
    """A throughput profile that cannot be used; one line naming the field path."""


class UnreadableFileError(InputError):
    """A file the user named that cannot be read as text: missing, a directory, a device,
    FIFO or socket, over its size limit, unreadable, not UTF-8; one line naming it."""


class UnparsableFileError(InputError):
    """A file whose text does not load as YAML or JSON within bounds (syntax, nesting, the
    number of values); one line naming it."""


class MixError(InputError):
    """No GPU mix can serve the asked rate (or the question is malformed); one line."""


# -- stored state -------------------------------------------------------------------------


class StoredStateError(HedgeformError):
    """A file Hedgeform keeps that it cannot use; the message names it and how to recover."""


class StateError(StoredStateError):
    """A state file that cannot be used; the message says which and how to recover."""


class WrittenMeanwhile(StateError):
    """Another writer changed (or created, or removed) an object since it was read: a
    conditional write (GCS generation, Azure ETag) lost. Callers that race on purpose (the
    leader lease, the record) catch it; the message names the object."""


class TfStateError(StoredStateError):
    """A Terraform state file we cannot read; the message names it."""


class MemoryFormatError(StoredStateError, ValueError):
    """Memory JSON that this version cannot read."""


class RenderError(HedgeformError, ValueError):
    """A template could not be rendered into valid JSON; one line for the user."""


# -- a reconcile --------------------------------------------------------------------------


class ReconcileError(HedgeformError):
    """A reconcile that could not run at all; one line for the user."""


class BusyError(ReconcileError):
    """Another reconcile of the same service holds the lock."""


class LoopBusyError(BusyError):
    """Another loop for this service is running."""


class StalePlanError(ReconcileError):
    """A saved plan (`apply --plan DIR`) made against a state, service file or version that
    has moved since: refused in one line, with exit code 4."""

    exit_code = 4


# -- Terraform ----------------------------------------------------------------------------


class TerraformError(HedgeformError):
    """A Terraform command failed for one stack: `stack local-1: apply failed: Error: ...`.
    The full cleaned output is kept in `detail` for logs (terraform/errors.py builds it)."""

    verb = "terraform"

    def __init__(self, stack: str, command: str, message: str, detail: str = "") -> None:
        super().__init__(stack, command, message)
        self.stack = stack
        self.command = command
        self.message = message
        self.detail = detail

    def __str__(self) -> str:
        return f"stack {self.stack}: {self.command} failed: {self.message}"


class LockError(TerraformError):
    """The state is locked by another Terraform run; retry later."""


class InitError(TerraformError):
    """`terraform init` failed (configuration syntax, missing provider in the mirror)."""


class PlanError(TerraformError):
    """`terraform plan` failed (invalid configuration or variables, provider error)."""


class ApplyError(TerraformError):
    """`terraform apply`/`destroy` failed; resources may be partly changed."""


class PlanRefusedError(TerraformError):
    """A plan that would replace every replica of a stack at once (their image, instance type
    or scripts changed): applying it would leave the region without a replica."""


class CancelledError(TerraformError):
    """The run was cancelled (or timed out) and its process group was stopped."""


class TerraformMissingError(TerraformError):
    """No usable Terraform binary (not installed, or `TERRAFORM_BIN` is wrong)."""

    def __init__(self, message: str) -> None:
        super().__init__("-", "resolve", message)

    def __str__(self) -> str:
        return self.message


class InstallError(HedgeformError):
    """The tools could not be installed; the message is one line for the user."""


# -- clouds -------------------------------------------------------------------------------


class CloudApiError(HedgeformError):
    """A cloud API failed in a way the operator must see: always a one-line message."""

    def __init__(self, message: str) -> None:
        # One line, so the CLI can print it without a traceback and logs stay greppable.
        super().__init__(" ".join(str(message).split()))


AdapterError = CloudApiError


class CredentialsError(CloudApiError):
    """No usable credentials; the message names the env vars / login command to fix it."""


class ThrottledError(CloudApiError):
    """The API kept throttling after the retries with backoff were spent."""


class NotProvisionedError(CloudApiError):
    """The cloud side of a signal (queue, load balancer) does not exist yet: normal before
    the first apply, so callers may report it as a note rather than fail."""


# -- the sandbox, the backtest, the soak --------------------------------------------------


class SandboxError(HedgeformError):
    """Anything the user must fix or know about; the CLI prints it and exits with code 1."""

    exit_code = 1


class CapacityError(SandboxError):
    """A spot launch into a zone with no spare capacity; exit code 3 so callers can classify it
    as a capacity failure (the placer marks the zone preempted) rather than a config error."""

    exit_code = 3


class OptimalError(HedgeformError):
    """The solver failed, hit its time limit or found no plan; the message is one line."""


class SoakError(HedgeformError):
    """The soak cannot run (missing tool, bad trace directory, no convergence)."""
