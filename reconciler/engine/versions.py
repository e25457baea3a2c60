"""`hedgeform history SERVICE` and `hedgeform rollback SERVICE [VERSION]`: the service's
versions (policy/rollout.py) as the record holds them, and going back to one by hand."""

from __future__ import annotations

import datetime
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from reconciler.engine.commands import _fail, _reconciler, root_opt, service_arg, version_line
from reconciler.engine.reconcile import KEEP_READY_SPECS, service_lock
from reconciler.errors import HedgeformError, ReconcileError
from reconciler.policy.rollout import BY_HAND, current_version
from reconciler.policy.rollout import rollback as rollback_memory


def _when(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@click.command("history")
@service_arg
@root_opt
def history(service: str, root: Path | None) -> None:
    """List SERVICE's versions, oldest first: number, when it appeared, how it rolls out,
    whose replicas it runs, whether `hedgeform rollback` can return to it (what its replicas
    run is still kept), and its state (rolling, ready, failed with why, superseded).

    A version is made each time the service file changes; one that changes only the
    `service:` section keeps the replicas it had (`runs vN`)."""
    try:
        rec = _reconciler(service, "hedgeform", None, root, check_env=False)
        record = rec.records.load()
    except HedgeformError as exc:
        raise _fail(exc) from None
    memory, specs = record.memory, record.version_specs
    if not memory.versions:
        click.echo(f"{service} has no versions yet: `hedgeform apply {service}` makes v1")
        return
    click.echo(f"{'version':<8} {'since':<21} {'mode':<11} {'runs':<6} {'rollback':<9} state")
    for v in memory.versions:
        mark = "*" if v.number == memory.version else " "
        state = f"{v.state}: {v.reason}" if v.reason else v.state
        # Whether `rollback` can return to it: what its replicas run is still kept.
        back = "yes" if v.runs in specs and (v.state != "failed" or v.reason == BY_HAND) else "-"
        click.echo(
            f"{mark}v{v.number:<6} {_when(v.since):<21} {v.mode:<11} v{v.runs:<5} {back:<9} {state}"
        )
    click.echo(version_line(memory))


class VersionNumber(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.5 only
    """A version as `history` and `status` write it (`v6`) or as a number (`6`), 1 to 10**9."""

    name = "version"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        text = str(value)
        digits = text[1:] if text[:1] in ("v", "V") else text
        if not (digits.isascii() and digits.isdigit() and len(digits) <= 10) or not (
            1 <= int(digits) <= 10**9
        ):
            self.fail(f"{text!r} is not a version (write it as 6 or v6)", param, ctx)
        return int(digits)


@click.command("rollback")
@service_arg
@click.argument("version", required=False, type=VersionNumber())
@root_opt
@click.option("--wait-lock", is_flag=True, help="Wait for a running reconcile instead of exiting.")
def rollback(service: str, version: int | None, root: Path | None, wait_lock: bool) -> None:
    """Move SERVICE back to VERSION (default: the last version before the current one that
    was ready), rolling: the
    current version is marked failed and the next reconcile (`apply`, or the running loop's
    next tick) brings the old version's replicas back before it stops the current ones.

    The service file still holds the failed version; it is not rolled out again until the
    file changes."""
    try:
        rec = _reconciler(service, "hedgeform", None, root, check_env=False)
        with service_lock(rec.paths, wait=wait_lock):
            record = rec.records.load()
            current = record.memory.version
            try:
                memory = rollback_memory(record.memory, version, BY_HAND)
            except ValueError as exc:
                raise ReconcileError(f"{service}: {exc}") from None
            back = current_version(memory)
            if back is not None and back.runs not in record.version_specs:
                was = next(v for v in record.memory.versions if v.number == back.number)
                if was.state == "failed" and was.reason != BY_HAND:
                    raise ReconcileError(
                        f"{service}: v{back.number} failed ({was.reason}); to try it again, "
                        "edit the service file (any change makes a new version)"
                    )
                raise ReconcileError(
                    f"{service}: what v{back.number}'s replicas ran is no longer kept (the "
                    f"record keeps the versions in use and the last {KEEP_READY_SPECS} that "
                    f"were ready; `hedgeform history {service}` marks them); put its settings "
                    "back in the service file instead"
                )
            rec.records.save(replace(record, memory=memory))
    except HedgeformError as exc:
        raise _fail(exc) from None
    click.echo(
        f"{service}: v{current} marked failed; rolling back to v{memory.version} at the next "
        f"reconcile (`hedgeform apply {service}`, or the running loop's next tick)"
    )
