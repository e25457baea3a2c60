"""`hedgeform drift SERVICE`: what changed outside Terraform, and instances tagged for the
service that Terraform does not know (issue 16). Reads only: a refresh-only plan per stack
(never applied; no state written), and the backend's own look (`outside_terraform`).

Exit codes as `terraform plan -detailed-exitcode`: 0 no drift, 2 drift, 1 an error (a stack
that could not be refreshed, bad input). Click's usage errors also exit 2: they print
`Error: ...` on stderr and nothing on stdout, where a drift report always prints its heading
(or its JSON object).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import click

from reconciler.drift_report import (
    DriftReport,
    StackDrift,
    merged,
    resource_drift,
    to_json,
    to_markdown,
)
from reconciler.engine.commands import _fail, _reconciler, root_opt, service_arg
from reconciler.engine.reconcile import Reconciler, service_lock
from reconciler.errors import HedgeformError, TerraformError
from reconciler.stacks import FRONT
from reconciler.terraform.runner import DEFAULT_VARS
from reconciler.terraform.state import STATE_FILE

EXIT_DRIFT = 2  # as `terraform plan -detailed-exitcode` says "changes"


def check_drift(rec: Reconciler) -> DriftReport:
    """Refresh every stack of `rec` (in parallel) and ask its backend what else changed
    outside Terraform. A stack never planned on this host (no tfvars) or, with a local
    state, never applied is skipped with why; a stack whose refresh fails carries the error
    and the others go on. The caller holds the service lock."""

    def refresh(stack: str) -> StackDrift:
        stack_dir = rec.paths.stack_dir(stack)
        var_file = stack_dir / DEFAULT_VARS
        if not var_file.is_file():
            return StackDrift(stack, skipped="never planned on this host (no tfvars)")
        if not rec.state_backend.remote and not (stack_dir / STATE_FILE).is_file():
            return StackDrift(stack, skipped="nothing applied yet")
        try:
            result = rec.runner(stack).plan_refresh_only(var_file)
        except TerraformError as exc:
            return StackDrift(stack, error=str(exc))
        return StackDrift(stack, tuple(resource_drift(result.json)))

    stacks = sorted(rec.stack_names, key=lambda s: (s == FRONT, s))
    with ThreadPoolExecutor(max_workers=max(1, len(stacks))) as pool:
        refreshed = list(pool.map(refresh, stacks))
    rec.forget_pulled_states()
    outside = rec.cloud.outside_terraform()
    out = [replace(s, changed=merged(s.changed, outside.changed.get(s.stack, ())))
           for s in refreshed]  # fmt: skip
    known = {s.stack for s in out}
    out += [StackDrift(stack, merged(seen)) for stack, seen in outside.changed.items()
            if stack not in known and seen]  # fmt: skip
    return DriftReport(
        rec.paths.service,
        tuple(sorted(out, key=lambda s: s.stack)),
        tuple(outside.unknown),
        tuple(outside.notes),
    )


@click.command("drift")
@service_arg
@root_opt
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of markdown.")
@click.option("--wait-lock", is_flag=True, help="Wait for a running reconcile instead of exiting.")
def drift(service: str, root: Path | None, as_json: bool, wait_lock: bool) -> None:
    """Report what changed outside Terraform in SERVICE's stacks, changing nothing.

    Runs a refresh-only plan (`terraform plan -refresh-only`, never applied) in every stack
    and lists each resource whose real object differs from Terraform's state: changed
    (attribute names with before -> after, sensitive values masked) or deleted. On the
    sandbox, whose null resources Terraform cannot refresh, the sandbox itself is compared
    with the state (a replica process gone, HAProxy's members). Then instances tagged for
    the service that no stack's state holds: on AWS and GCP listed through the cloud's API
    by the service's tag or label, on the sandbox replica processes Terraform does not know
    (which the next apply adopts or stops).

    Markdown by default, grouped by stack; --json prints one object (docs/drift.md).

    Exit codes, as `terraform plan -detailed-exitcode`: 0 no drift, 2 drift found, 1 an
    error (a stack could not be refreshed; the report still prints). A usage error also
    exits 2 (click's code): it prints only an `Error:` line on stderr, never a report.
    """
    try:
        rec = _reconciler(service, "hedgeform", None, root, check_env=False)
        with service_lock(rec.paths, wait=wait_lock):
            report = check_drift(rec)
    except HedgeformError as exc:
        raise _fail(exc) from None
    if as_json:
        click.echo(json.dumps(to_json(report), indent=2, sort_keys=True))
    else:
        click.echo(to_markdown(report), nl=False)
    for line in report.errors:
        click.echo(f"error: {line}", err=True)
    if report.errors:
        raise SystemExit(1)
    if report.drift:
        raise SystemExit(EXIT_DRIFT)
