"""Plans as review artefacts (issue 16): `hedgeform plan SERVICE --out DIR` keeps what a
reviewer approves, and `hedgeform apply SERVICE --plan DIR` applies exactly that, or
nothing.

DIR holds (written by `write_plan_dir`, read by `apply_plan_dir`):

    plan.md            the review document (plan_summary.review_markdown): deterministic, no
                       secret, no absolute path, no timestamp; what CI posts as one comment
    manifest.json      per stack: the state's lineage and serial at plan time, whether the
                       plan changes anything, the saved plan's sha256; the sha256 of the
                       service file and of its settings and sidecar files (`input_hashes`),
                       the service version, the policy, Terraform's version
    record.json        the reconciler's memory the plan was decided with (the placer's zone
                       states, the version registered, the launch counter), saved when the
                       plan is applied, as the pass that made the plan would have
    <stack>/tfplan     the saved binary plan. Terraform keeps variable values in it in clear:
                       keep DIR as private as the state; post plan.md, not DIR
    <stack>/plan.json  its `terraform show -json`, resource changes only, sensitive values
                       masked (plan_summary.redacted_plan)

Applying checks every stack before it applies any: a state whose lineage or serial moved, a
changed service, settings or sidecar file, or a service version that moved (a rollback,
another plan applied) makes the plan stale, refused in one line (`StalePlanError`, exit
code 4) with nothing applied. Terraform's own check ("Saved plan is stale") is mapped to
the same refusal.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.engine.reconcile import NOOP_MARKER, PassResult, Reconciler
from reconciler.engine.state_store import Record, clear_destroyed
from reconciler.errors import InputError, StalePlanError, TerraformError
from reconciler.files import write_atomic
from reconciler.paths import check_name, ensure_private_dir
from reconciler.plan_summary import redacted_plan, review_markdown
from reconciler.spec.sidecar import SIDECAR_SUFFIX
from reconciler.stacks import FRONT
from reconciler.terraform.state import REMOTE

MANIFEST = "manifest.json"
PLAN_DOC = "plan.md"
RECORD = "record.json"
TFPLAN = "tfplan"
APPLIED_COPY = "hedgeform.reviewed.tfplan"  # in the stack directory, while it is applied
PLAN_JSON = "plan.json"
MANIFEST_VERSION = 1
TERRAFORM_STALE = "Saved plan is stale"


@dataclass(frozen=True)
class StateId:
    """Which state a plan was made against: Terraform's lineage and serial (None, None
    before the stack's first apply)."""

    lineage: str | None
    serial: int | None

    @classmethod
    def of(cls, pulled: bytes) -> StateId:
        if not pulled.strip():
            return cls(None, None)
        try:
            state = json.loads(pulled)
            return cls(str(state["lineage"]), int(state["serial"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"cannot read a Terraform state's lineage and serial: {exc}") from None

    def show(self) -> str:
        return (
            "no state" if self.lineage is None else f"lineage {self.lineage} serial {self.serial}"
        )

    def moved_from(self, then: StateId) -> str:
        """How this state differs from `then`, briefly (the lineage only when it changed)."""
        if then.lineage == self.lineage and self.lineage is not None:
            return f"serial {then.serial} -> {self.serial}"
        return f"{then.show()} -> {self.show()}"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def input_hashes(rec: Reconciler) -> dict[str, str | None]:
    """sha256 of each file the service's plan is decided from, by name: the service file,
    its cloud settings (`<name>.settings.yaml`) and its Hedgeform sidecar
    (`<name>.hedgeform.yaml`); None for an optional one that is absent. A plan reviewed
    before any of them changed is stale."""
    spec = rec.paths.spec_file
    files = (spec, rec.paths.settings_file, spec.with_name(f"{spec.stem}{SIDECAR_SUFFIX}"))
    return {f.name: sha256(f.read_bytes()) if f.is_file() else None for f in files}


def out_dir(path: Path, state_root: Path | None = None) -> Path:
    """DIR for `plan --out`: created (0700, parents too) when missing, an existing one used
    as it is (its mode left alone); a file there is refused, and so is a DIR inside
    `state_root` (the project's `state/`: its stack directories are Terraform's working
    directories, where a kept plan would mix with the live ones)."""
    if path.exists() and not path.is_dir():
        raise InputError(f"--out {path}: not a directory (give a directory to write the plan to)")
    if state_root is not None:
        inside = path.resolve()
        if inside == state_root.resolve() or state_root.resolve() in inside.parents:
            raise InputError(
                f"--out {path}: inside {state_root}, where Terraform works: give a directory "
                "outside it (e.g. review/)"
            )
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path
    except OSError as exc:
        raise InputError(f"--out {path}: cannot create it ({exc.strerror or exc})") from None


def write_plan_dir(rec: Reconciler, result: PassResult, out: Path, fmt: str) -> list[Path]:
    """Keep the plans of `result` (a plan-only pass of `rec` with the no-op cache off) in
    `out` as the module docstring says; returns the files written, plan.md first. Stacks a
    previous `--out` left there are removed."""
    if result.failed or result.record_after is None or result.record_before is None:
        raise InputError("the plan failed: nothing was written to --out")
    out = out_dir(out)
    _clear_previous(out)
    stacks: dict[str, Any] = {}
    written: list[Path] = []
    versions = sorted({str(p["terraform_version"]) for p in result.plans.values()
                       if isinstance(p, dict) and p.get("terraform_version")})  # fmt: skip
    for outcome in sorted(result.outcomes, key=lambda o: o.stack):
        stack = check_name(outcome.stack, "stack")
        if outcome.plan_path is None or not outcome.plan_path.is_file():
            raise InputError(f"stack {stack}: Terraform wrote no saved plan to keep")
        target = ensure_private_dir(out / stack)
        data = outcome.plan_path.read_bytes()
        write_atomic(target / TFPLAN, data)
        plan = result.plans.get(stack, {"resource_changes": []})
        write_atomic(target / PLAN_JSON, _json(redacted_plan(plan)))
        state = StateId.of(rec.runner(stack).state_pull())
        stacks[stack] = {
            "changed": outcome.changed,
            "lineage": state.lineage,
            "serial": state.serial,
            "tfplan_sha256": sha256(data),
        }
        written += [target / TFPLAN, target / PLAN_JSON]
    text = review_markdown(
        rec.paths.service,
        [o.summary for o in result.outcomes if o.summary is not None],
        {s: result.plans.get(s, {"resource_changes": []}) for s in stacks},
        fmt=fmt,
        notes=result.notes,
        rollout=result.rollout,
        reasons=result.decision.reasons,
        aliases=rec.path_aliases(),
    )
    before = result.record_before.memory.version
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "service": rec.paths.service,
        "spec_sha256": sha256(rec.paths.spec_file.read_bytes()),
        "inputs_sha256": input_hashes(rec),
        "version_before": before,
        "version": result.record_after.memory.version,
        "policy": rec.policy,
        "terraform_version": versions[0] if versions else None,
        "summary": result.summary_line,
        "plan_md_sha256": sha256(text.encode()),
        "planned_at": datetime.fromtimestamp(rec.clock(), UTC).isoformat(),
        "stacks": stacks,
    }
    record_text = _json(result.record_after.to_json())
    manifest["record_sha256"] = sha256(record_text.encode())
    write_atomic(out / RECORD, record_text)
    write_atomic(out / MANIFEST, _json(manifest))
    write_atomic(out / PLAN_DOC, text)
    return [out / PLAN_DOC, out / MANIFEST, out / RECORD, *written]


def _json(data: Any) -> str:
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def _clear_previous(out: Path) -> None:
    """Remove the stack files an earlier `--out` into the same directory wrote (the stacks
    its manifest names), so DIR holds only this plan's stacks."""
    try:
        old = json.loads((out / MANIFEST).read_text())
        names = list(old.get("stacks", {}))
    except (OSError, ValueError, AttributeError):
        return
    for name in names:
        try:
            target = out / check_name(str(name), "stack")
        except InputError:
            continue
        if not target.is_dir() or target.is_symlink():
            continue
        for name in (TFPLAN, PLAN_JSON):  # only what it wrote: nothing else is removed
            (target / name).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            target.rmdir()  # when empty


# -- applying -----------------------------------------------------------------------------


def read_manifest(plan_dir: Path, service: str) -> dict[str, Any]:
    """DIR's manifest, checked: written by `plan --out` for `service`."""
    if not plan_dir.is_dir():
        raise InputError(f"--plan {plan_dir}: not a directory written by `hedgeform plan --out`")
    try:
        manifest = json.loads((plan_dir / MANIFEST).read_text())
    except OSError:
        raise InputError(
            f"--plan {plan_dir}: no {MANIFEST} (not a directory written by `hedgeform plan --out`)"
        ) from None
    except ValueError as exc:
        raise InputError(f"--plan {plan_dir}/{MANIFEST}: not JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("manifest_version") != MANIFEST_VERSION:
        raise InputError(f"--plan {plan_dir}/{MANIFEST}: not a version-{MANIFEST_VERSION} manifest")
    if manifest.get("service") != service:
        raise InputError(
            f"--plan {plan_dir}: a plan of service {manifest.get('service')!r}, not {service!r}"
        )
    if not isinstance(manifest.get("stacks"), dict):
        raise InputError(f"--plan {plan_dir}/{MANIFEST}: no stacks")
    for name, seen in manifest["stacks"].items():
        check_name(str(name), "stack")
        if not isinstance(seen, dict):
            raise InputError(f"--plan {plan_dir}/{MANIFEST}: stack {name}: not an object")
    return manifest


def stale_reasons(rec: Reconciler, manifest: dict[str, Any]) -> list[str]:
    """Why the saved plans no longer apply to what is there now (empty: they do)."""
    reasons: list[str] = []
    for stack, seen in sorted(manifest["stacks"].items()):
        if stack not in rec.stacks:
            reasons.append(f"stack {stack} is no longer one of {rec.paths.service}'s")
            continue
        then = StateId(seen.get("lineage"), seen.get("serial"))
        now = StateId.of(rec.runner(stack).state_pull())
        if now != then:
            reasons.append(f"stack {stack}'s state moved ({now.moved_from(then)})")
    if sha256(rec.paths.spec_file.read_bytes()) != manifest.get("spec_sha256"):
        reasons.append(f"{rec.paths.spec_file.name} changed")
    then_inputs = manifest.get("inputs_sha256")
    then_inputs = then_inputs if isinstance(then_inputs, dict) else {}
    for name, digest in sorted(input_hashes(rec).items()):
        said = f"{name} changed" in reasons  # the service file, by spec_sha256 above
        if digest != then_inputs.get(name) and not said:
            reasons.append(f"{name} {'changed' if digest else 'was removed'}")
    version = rec.records.load().memory.version
    if version != manifest.get("version_before"):
        reasons.append(
            f"the service version moved (v{manifest.get('version_before')} -> v{version})"
        )
    return reasons


def _refusal(service: str, why: Sequence[str], applied: Sequence[str]) -> StalePlanError:
    done = f"applied before it: {', '.join(applied)}" if applied else "nothing was applied"
    return StalePlanError(
        f"stale plan: {'; '.join(why)} since `hedgeform plan {service} --out`; {done}; plan "
        "again and review the new plan"
    )


@dataclass
class Applied:
    """What `apply_plan_dir` did: the stacks applied, and each failed stack's error."""

    stacks: list[str]
    errors: list[TerraformError]


def apply_plan_dir(rec: Reconciler, plan_dir: Path, manifest: dict[str, Any]) -> Applied:
    """Apply the saved plans in `plan_dir` (front first), after checking that none is
    stale (StalePlanError, nothing applied); then save the record the plan was decided
    with. A stack whose apply fails is reported and the others go on, as in a pass."""
    rec.forget_pulled_states()
    why = stale_reasons(rec, manifest)
    if why:
        raise _refusal(rec.paths.service, why, [])
    todo = sorted(
        (s for s, seen in manifest["stacks"].items() if seen.get("changed")),
        key=lambda s: (s != FRONT, s),
    )
    saved: dict[str, bytes] = {}
    for stack in todo:
        path = plan_dir / stack / TFPLAN
        if not path.is_file() or path.is_symlink():
            raise InputError(f"--plan {plan_dir}: no saved plan {stack}/{TFPLAN}")
        saved[stack] = path.read_bytes()
        if sha256(saved[stack]) != manifest["stacks"][stack].get("tfplan_sha256"):
            raise InputError(
                f"--plan {plan_dir}: {stack}/{TFPLAN} is not the plan the manifest names "
                "(changed after the plan)"
            )
    for stack in sorted(set(manifest["stacks"]) - set(todo)):  # kept though they change nothing
        path = plan_dir / stack / TFPLAN
        digest = manifest["stacks"][stack].get("tfplan_sha256")
        if path.is_file() and digest is not None and sha256(path.read_bytes()) != digest:
            raise InputError(
                f"--plan {plan_dir}: {stack}/{TFPLAN} is not the plan the manifest names "
                "(changed after the plan)"
            )
    try:
        record_bytes = (plan_dir / RECORD).read_bytes()
    except OSError as exc:
        raise InputError(f"--plan {plan_dir}/{RECORD}: cannot read it ({exc})") from None
    if sha256(record_bytes) != manifest.get("record_sha256", sha256(record_bytes)):
        raise InputError(
            f"--plan {plan_dir}: {RECORD} is not the record the manifest names (changed after "
            "the plan)"
        )
    try:
        record = Record.from_json(json.loads(record_bytes))
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"--plan {plan_dir}/{RECORD}: cannot read it ({exc})") from None
    applied: list[str] = []
    errors: list[TerraformError] = []
    if todo:
        clear_destroyed(rec.paths.state_dir)  # it exists again: status stops saying so
    for stack in todo:
        stack_dir = rec.paths.stack_dir(stack)
        (stack_dir / NOOP_MARKER).unlink(missing_ok=True)  # its state changes now
        # A copy is applied (the runner removes a plan it applied): DIR stays as reviewed.
        copy = stack_dir / APPLIED_COPY
        write_atomic(copy, saved[stack])
        try:
            rec.runner(stack).apply_saved_plan(copy)
            applied.append(stack)
        except TerraformError as exc:
            if TERRAFORM_STALE in f"{exc.message}\n{exc.detail}":
                raise _refusal(
                    rec.paths.service, [f"Terraform says stack {stack}'s saved plan is stale"],
                    applied,
                ) from None  # fmt: skip
            errors.append(exc)
        finally:
            copy.unlink(missing_ok=True)
            REMOTE.forget([stack_dir])
    if applied or not todo:  # a reviewed change Terraform needs nothing for is recorded too
        now = rec.records.load()
        rec.records.save(
            replace(
                now,
                memory=record.memory,
                version_specs=record.version_specs,
                approved=record.approved,  # the reviewed texts: what a `review` loop runs
                lb_epoch=record.lb_epoch,
                launch_results=(),
            )
        )
    return Applied(applied, errors)
