"""Plan diffs for review: `terraform show -json` of each stack, summarised as markdown.

Counts of create/update/delete with replacements (`["delete","create"]` or
`["create","delete"]`) counted and listed separately with why, grouped by stack and by market
(spot/on-demand), plus load-balancer membership changes; the raw plan collapsed at the end.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

REPLACE = (["delete", "create"], ["create", "delete"])
SENSITIVE_MARK = "(sensitive)"
ACTIONS = ("create", "update", "delete", "replace")


@dataclass
class StackSummary:
    stack: str
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # market -> action -> n
    replacements: list[str] = field(default_factory=list)
    lb_added: list[str] = field(default_factory=list)
    lb_removed: list[str] = field(default_factory=list)
    changed: bool = False
    replicas_before: int = 0  # replica resources that exist now (every action but create)
    replicas_replaced: list[str] = field(default_factory=list)  # their ids, replaced in place

    @property
    def replaces_every_replica(self) -> bool:
        """Every replica that exists would be destroyed and created again under the same id:
        what a changed image, instance type or script does to a module's replicas (the
        policy's own changes always use new ids, or delete)."""
        return self.replicas_before > 0 and len(self.replicas_replaced) == self.replicas_before

    def total(self, action: str) -> int:
        return sum(c.get(action, 0) for c in self.counts.values())


def _kind(actions: list[str]) -> str | None:
    if actions in REPLACE:
        return "replace"
    if actions in (["create"], ["update"], ["delete"]):
        return actions[0]
    return None  # no-op / read


def _market(change: Mapping[str, Any]) -> str:
    for side in ("after", "before"):
        values = change.get(side) or {}
        triggers = values.get("triggers") if isinstance(values, Mapping) else None
        if isinstance(triggers, Mapping) and triggers.get("market"):
            return str(triggers["market"])
    return "infra"


def _members(values: Any) -> set[str]:
    if not isinstance(values, Mapping):
        return set()
    triggers = values.get("triggers")
    if not isinstance(triggers, Mapping) or not triggers.get("members"):
        return set()
    return set(str(triggers["members"]).split(","))


def summarize_stack(stack: str, plan: Mapping[str, Any]) -> StackSummary:
    summary = StackSummary(stack)
    for rc in plan.get("resource_changes", []):
        change = rc.get("change", {})
        actions = list(change.get("actions", []))
        kind = _kind(actions)
        if rc.get("name") == "replica" and rc.get("mode", "managed") == "managed":
            if actions != ["create"]:
                summary.replicas_before += 1
            if kind == "replace":
                summary.replicas_replaced.append(str(rc.get("index", rc.get("address", "?"))))
        if kind is None:
            continue
        summary.changed = True
        market = _market(change)
        per_market = summary.counts.setdefault(market, {})
        per_market[kind] = per_market.get(kind, 0) + 1
        address = rc.get("address", "?")
        if kind == "replace":
            why = rc.get("action_reason") or ", ".join(
                ".".join(str(p) for p in path) for path in change.get("replace_paths", [])
            )
            summary.replacements.append(f"`{address}` ({why or 'forced by a changed input'})")
        if rc.get("type") == "null_resource" and rc.get("name") == "target_group":
            before, after = _members(change.get("before")), _members(change.get("after"))
            summary.lb_added.extend(sorted(after - before))
            summary.lb_removed.extend(sorted(before - after))
    return summary


def one_line(summaries: Iterable[StackSummary]) -> str:
    items = list(summaries)
    parts = [f"{sum(s.total(a) for s in items)} to {a}" for a in ("create", "update", "delete")]
    parts.append(f"{sum(s.total('replace') for s in items)} to replace")
    added = sum(len(s.lb_added) for s in items)
    removed = sum(len(s.lb_removed) for s in items)
    lb = f"; load balancer +{added}/-{removed}" if added or removed else ""
    changed = [s.stack for s in items if s.changed]
    where = f" in {', '.join(changed)}" if changed else " (no changes)"
    return "Plan: " + ", ".join(parts) + lb + where


def to_markdown(
    service: str,
    created_at: str,
    summaries: list[StackSummary],
    plans: Mapping[str, Any],
    rollout: str | None = None,
) -> str:
    """The plan diff for review; `rollout` is the update's step when one is under way
    (policy/rollout.progress)."""
    out = [f"# Plan for `{service}` at {created_at}", "", one_line(summaries), ""]
    if rollout:
        out += [f"Update: {rollout}", ""]
    for s in summaries:
        out.append(f"## Stack `{s.stack}`" + ("" if s.changed else " (no changes)"))
        if s.counts:
            out += ["", "| market | create | update | delete | replace |", "|---|---|---|---|---|"]
            for market, c in sorted(s.counts.items()):
                row = " | ".join(
                    str(c.get(a, 0)) for a in ("create", "update", "delete", "replace")
                )
                out.append(f"| {market} | {row} |")
        if s.replacements:
            out += ["", "Replacements:"] + [f"- {r}" for r in s.replacements]
        if s.lb_added or s.lb_removed:
            out += ["", "Load balancer membership:"]
            out += [f"- + `{m}`" for m in s.lb_added] + [f"- - `{m}`" for m in s.lb_removed]
        out.append("")
    out += ["<details><summary>Raw plans (terraform show -json)</summary>", ""]
    for stack, plan in plans.items():
        out += [f"### {stack}", "", "```json", json.dumps(_redacted(plan), indent=1), "```", ""]
    out.append("</details>")
    return "\n".join(out) + "\n"


def _redacted(plan: Mapping[str, Any]) -> dict[str, Any]:
    """Only resource changes go into the document, with values Terraform marks sensitive
    replaced, so a plan diff committed for review never carries a secret."""
    changes = []
    for rc in plan.get("resource_changes", []):
        change = dict(rc.get("change", {}))
        for side, mask in (("before", "before_sensitive"), ("after", "after_sensitive")):
            change[side] = _mask(change.get(side), change.get(mask))
        changes.append({**rc, "change": change})
    return {"format_version": plan.get("format_version"), "resource_changes": changes}


def _mask(value: Any, sensitive: Any) -> Any:
    if sensitive is True:
        return SENSITIVE_MARK
    if isinstance(value, Mapping) and isinstance(sensitive, Mapping):
        return {k: _mask(v, sensitive.get(k)) for k, v in value.items()}
    if isinstance(value, list) and isinstance(sensitive, list):
        return [_mask(v, sensitive[i] if i < len(sensitive) else None) for i, v in enumerate(value)]
    return value
