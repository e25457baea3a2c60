"""What `hedgeform drift` reports, as data, and its two forms (markdown and JSON). Pure: no
I/O; the engine (engine/drift.py) gathers, this module reads and writes.

Drift is what changed outside Terraform since it last applied:
- `changed`: per stack, resources whose real object differs from Terraform's state. From a
  refresh-only plan's `resource_drift` (`terraform show -json`: the same change object as
  `resource_changes`, actions `update` or `delete`), plus what the backend sees that
  Terraform cannot refresh (the sandbox's null resources: a replica process gone, the load
  balancer's members changed by hand).
- `unknown_instances`: instances tagged for the service that no stack's state holds (on the
  sandbox, replica processes Terraform does not know: the pass adopts or stops them).

Values Terraform marks sensitive are masked as in plan diffs (plan_summary.mask_sensitive);
everything is sorted, so two checks of the same world print the same text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler.plan_summary import SENSITIVE_MARK, mask_sensitive

VALUE_WIDTH = 80  # a value longer than this, as JSON, is cut in the markdown (never in JSON)


@dataclass(frozen=True)
class AttributeChange:
    """One top-level attribute that changed outside Terraform: its value in Terraform's
    state (`before`) and in the real object (`after`), sensitive parts masked."""

    name: str
    before: Any
    after: Any


@dataclass(frozen=True)
class DriftedResource:
    """A resource whose real object differs from Terraform's state: `action` `update`
    (changed) or `delete` (gone); `note` says what was seen, when not Terraform."""

    address: str
    action: str
    attributes: tuple[AttributeChange, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class UnknownInstance:
    """An instance tagged for the service that no stack's Terraform state holds."""

    stack: str  # the stack (region) it is in
    id: str  # the cloud's instance id (the sandbox: the replica id)
    zone: str = ""
    name: str = ""  # its replica tag / name, when it has one
    state: str = ""  # the cloud's state of it (running, stopped, ...)
    note: str = ""


@dataclass(frozen=True)
class StackDrift:
    """One stack's drift; `error` when its refresh failed, `skipped` when there was nothing
    to refresh (never applied on this host)."""

    stack: str
    changed: tuple[DriftedResource, ...] = ()
    error: str | None = None
    skipped: str | None = None


@dataclass(frozen=True)
class DriftReport:
    service: str
    stacks: tuple[StackDrift, ...]
    unknown_instances: tuple[UnknownInstance, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)  # what could not be looked at

    @property
    def drift(self) -> bool:
        return bool(self.unknown_instances) or any(s.changed for s in self.stacks)

    @property
    def errors(self) -> list[str]:
        return [f"{s.stack}: {s.error}" for s in self.stacks if s.error is not None]

    @property
    def changed_count(self) -> int:
        return sum(len(s.changed) for s in self.stacks)

    def one_line(self) -> str:
        """`no drift` or what drifted, in one line (the loop's warning)."""
        if not self.drift:
            return f"{self.service}: no drift"
        parts = [
            f"{s.stack}: {', '.join(r.address for r in s.changed)}"
            for s in self.stacks
            if s.changed
        ]
        if self.unknown_instances:
            ids = ", ".join(f"{u.id} ({u.stack})" for u in self.unknown_instances)
            parts.append(f"unknown instances: {ids}")
        return f"{self.service}: drift: {'; '.join(parts)}"


def resource_drift(plan_json: Mapping[str, Any]) -> list[DriftedResource]:
    """The resources a refresh-only plan's `show -json` says changed outside Terraform,
    sorted by address: each `resource_drift` entry whose actions are not `no-op`, with the
    top-level attributes that differ (none for a deleted one). Null, `[]` and `{}` count as
    the same value, and an update that differs in nothing else is no drift."""
    out: list[DriftedResource] = []
    for rc in plan_json.get("resource_drift") or []:
        change = rc.get("change") or {}
        actions = [str(a) for a in change.get("actions") or ["no-op"]]
        if actions == ["no-op"]:
            continue
        raw_before, raw_after = change.get("before"), change.get("after")
        before = mask_sensitive(raw_before, change.get("before_sensitive"))
        after = mask_sensitive(raw_after, change.get("after_sensitive"))
        attributes: tuple[AttributeChange, ...] = ()
        if isinstance(raw_before, Mapping) and isinstance(raw_after, Mapping):
            # Compared unmasked (a changed secret is named), shown masked.
            attributes = tuple(
                AttributeChange(name, _part(before, name), _part(after, name))
                for name in sorted(set(raw_before) | set(raw_after))
                if _normal(raw_before.get(name)) != _normal(raw_after.get(name))
            )
            if actions == ["update"] and not attributes:
                continue  # only null <-> empty: the provider reading back, not a change
        out.append(DriftedResource(str(rc.get("address", "?")), "-".join(actions), attributes))
    return sorted(out, key=lambda r: r.address)


def merged(*groups: Sequence[DriftedResource]) -> tuple[DriftedResource, ...]:
    """Drifted resources of several sources, one per address (the first source's wins),
    sorted by address."""
    seen: dict[str, DriftedResource] = {}
    for group in groups:
        for resource in group:
            seen.setdefault(resource.address, resource)
    return tuple(sorted(seen.values(), key=lambda r: r.address))


def to_json(report: DriftReport) -> dict[str, Any]:
    """The `--json` object (docs/drift.md documents every field)."""
    return {
        "service": report.service,
        "drift": report.drift,
        "stacks": [
            {
                "stack": s.stack,
                "changed": [
                    {
                        "address": r.address,
                        "action": r.action,
                        "attributes": [
                            {"name": a.name, "before": a.before, "after": a.after}
                            for a in r.attributes
                        ],
                        "note": r.note,
                    }
                    for r in s.changed
                ],
                "error": s.error,
                "skipped": s.skipped,
            }
            for s in sorted(report.stacks, key=lambda s: s.stack)
        ],
        "unknown_instances": [
            {
                "stack": u.stack,
                "id": u.id,
                "zone": u.zone,
                "name": u.name,
                "state": u.state,
                "note": u.note,
            }
            for u in _sorted_unknown(report.unknown_instances)
        ],
        "notes": sorted(report.notes),
    }


def to_markdown(report: DriftReport) -> str:
    """The default output: a heading, then per stack what changed outside Terraform
    (address, action, each attribute's before -> after), then the unknown instances."""
    verdict = "drift found" if report.drift else "no drift"
    if report.errors:
        verdict += f"; {len(report.errors)} stack(s) could not be checked"
    out = [f"# Drift of {report.service}: {verdict}", ""]
    for s in sorted(report.stacks, key=lambda s: s.stack):
        out.append(f"## Stack {s.stack}")
        out.append("")
        if s.error is not None:
            out.append(f"error: {s.error}")
        elif s.skipped is not None:
            out.append(f"not checked: {s.skipped}")
        elif not s.changed:
            out.append("nothing changed outside Terraform")
        for r in s.changed:  # the backend's, when Terraform's refresh failed or was skipped
            what = {"delete": "deleted outside Terraform", "update": "changed outside Terraform"}
            line = f"- `{r.address}`: {what.get(r.action, r.action)}"
            out.append(line + (f" ({r.note})" if r.note else ""))
            for a in r.attributes:
                out.append(f"  - `{a.name}`: {_shown(a.before)} -> {_shown(a.after)}")
        out.append("")
    out.append("## Unknown instances")
    out.append("")
    if not report.unknown_instances:
        out += ["none: every instance tagged for the service is in a stack's state", ""]
    for u in _sorted_unknown(report.unknown_instances):
        details = ", ".join(
            part
            for part in (
                f"zone {u.zone}" if u.zone else "",
                f"name {u.name}" if u.name and u.name != u.id else "",
                u.state,
            )
            if part
        )
        line = f"- `{u.id}` in {u.stack}" + (f" ({details})" if details else "")
        out.append(line + (f": {u.note}" if u.note else ""))
    if report.unknown_instances:
        out.append("")
    if report.notes:
        out += ["## Notes", ""]
        out += [f"- {note}" for note in sorted(report.notes)]
        out.append("")
    return "\n".join(out)


def _normal(value: Any) -> Any:
    """`value` with null, empty lists and empty objects made one (None), at every depth:
    providers read back `[]` where the state they wrote holds null (the AWS provider's
    Route 53 records and health checks, measured on the emulator), which is no change."""
    if isinstance(value, Mapping):
        kept = {k: n for k, v in value.items() if (n := _normal(v)) is not None}
        return kept or None
    if isinstance(value, list):
        return [_normal(v) for v in value] or None
    return value


def _part(value: Any, name: str) -> Any:
    """Attribute `name` of a masked object; the mark itself when the whole is sensitive."""
    return value.get(name) if isinstance(value, Mapping) else value


def _sorted_unknown(unknown: Sequence[UnknownInstance]) -> list[UnknownInstance]:
    return sorted(unknown, key=lambda u: (u.stack, u.id))


def _shown(value: Any) -> str:
    if value == SENSITIVE_MARK:
        return SENSITIVE_MARK
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= VALUE_WIDTH else text[: VALUE_WIDTH - 3] + "..."
