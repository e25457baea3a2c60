"""Plan diffs for review: `terraform show -json` of each stack, summarised as markdown.

Counts of create/update/delete with replacements (`["delete","create"]` or
`["create","delete"]`) counted and listed separately with why, grouped by stack and by market
(spot/on-demand), plus load-balancer membership changes; the raw plan collapsed at the end.

`review_markdown` is the document a pull request shows (`hedgeform plan --out`, and every
plan's `state/<service>/plans/<time>.md`): a loud warning block exactly when something is
destroyed or replaced, counts grouped by stack, market, accelerator and version, each
replica's change with the policy's reason (`ReplicaNote`), for GitHub, GitLab or plain
text. It is a pure function of its inputs, sorted throughout, with no clock and no absolute
path (`aliases` replaces them), so the same plan gives the same bytes and a CI job can
update one comment in place.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

REPLACE = (["delete", "create"], ["create", "delete"])
SENSITIVE_MARK = "(sensitive)"
ACTIONS = ("create", "update", "delete", "replace")
FORMATS = ("github", "gitlab", "plain")
DESTRUCTIVE = ("delete", "replace")


@dataclass(frozen=True)
class Change:
    """One resource change of a plan, as the review document shows it."""

    address: str
    action: str  # one of ACTIONS
    name: str  # the resource's name in the module (`replica`, `target_group`, ...)
    key: str | None  # its `for_each` key (a replica id for per-replica resources)
    market_before: str | None = None
    market_after: str | None = None
    zone: str | None = None
    accelerator: str | None = None
    why: str = ""  # Terraform's reason for a replacement

    @property
    def market(self) -> str | None:
        return self.market_after or self.market_before


@dataclass(frozen=True)
class ReplicaNote:
    """What the policy says of one replica a plan changes: where it runs, and why."""

    zone: str = ""
    market: str = ""
    accelerator: str = ""  # "" when the service runs one GPU type
    version: int | None = None  # the service version it runs (`runs`)
    reason: str = ""


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
    changes: list[Change] = field(default_factory=list)  # every create/update/delete/replace

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


def _trigger(change: Mapping[str, Any], side: str, name: str) -> str | None:
    values = change.get(side)
    triggers = values.get("triggers") if isinstance(values, Mapping) else None
    if isinstance(triggers, Mapping) and triggers.get(name):
        return str(triggers[name])
    return None


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
        why = ""
        if kind == "replace":
            why = rc.get("action_reason") or ", ".join(
                ".".join(str(p) for p in path) for path in change.get("replace_paths", [])
            )
            summary.replacements.append(f"`{address}` ({why or 'forced by a changed input'})")
        index = rc.get("index")
        summary.changes.append(
            Change(
                str(address),
                kind,
                str(rc.get("name", "")),
                index if isinstance(index, str) else None,
                _trigger(change, "before", "market"),
                _trigger(change, "after", "market"),
                _trigger(change, "after", "zone") or _trigger(change, "before", "zone"),
                _trigger(change, "after", "accelerator")
                or _trigger(change, "before", "accelerator"),
                str(why),
            )
        )
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
    *,
    notes: Mapping[str, ReplicaNote] | None = None,
    reasons: Sequence[str] = (),
    aliases: Mapping[str, str] | None = None,
) -> str:
    """The plan diff kept in `state/<service>/plans/`: the review document for GitHub, its
    title saying when the plan was made; `rollout` is the update's step when one is under
    way (policy/rollout.progress)."""
    return review_markdown(
        service,
        summaries,
        plans,
        notes=notes,
        rollout=rollout,
        reasons=reasons,
        aliases=aliases,
        made_at=created_at,
    )


def review_markdown(
    service: str,
    summaries: Sequence[StackSummary],
    plans: Mapping[str, Any],
    *,
    fmt: str = "github",
    notes: Mapping[str, ReplicaNote] | None = None,
    rollout: str | None = None,
    reasons: Sequence[str] = (),
    aliases: Mapping[str, str] | None = None,
    made_at: str | None = None,
) -> str:
    """The plan as one pull-request comment (`fmt`: github, gitlab or plain text).

    In order: the one-line totals; the rollout step; a warning block when anything is
    destroyed or replaced (and only then), naming each such change; per stack (front first,
    then by name) the counts by market, accelerator and version, each replica's change with
    the policy's reason (`notes`, by replica id; Terraform's own reason, or "a changed
    input", for a change the policy did not ask for), the other resources, the load
    balancer's membership; the policy's reasons; the raw plans (sensitive values masked,
    keys sorted) collapsed. `aliases` maps absolute paths to short names in the raw plans."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    md = _Md(fmt)
    notes = notes or {}
    stacks = sorted(summaries, key=lambda s: (s.stack != "front", s.stack))
    title = f"Plan for {md.code(service)}" + (f" at {made_at}" if made_at else "")
    out = [] if md.plain else [comment_marker(service), ""]
    out += [md.heading(1, title), "", one_line(stacks), ""]
    if rollout:
        out += [f"Update: {rollout}", ""]
    out += _warning(md, stacks, notes)
    for s in stacks:
        out += _stack_section(md, s, notes)
    if reasons:
        out += [md.heading(2, "Why (the policy's reasons)"), ""]
        out += [f"- {r}" for r in reasons] + [""]
    out += _raw_plans(md, plans, aliases or {})
    return "\n".join(out).rstrip("\n") + "\n"


def comment_marker(service: str) -> str:
    """The hidden first line of a GitHub or GitLab document: what a CI job searches its
    pull request's comments for, to update the one comment of this service's plan."""
    return f"<!-- hedgeform-plan service={service} -->"


class _Md:
    """The few constructs that differ between GitHub, GitLab and plain text."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self.plain = fmt == "plain"

    def code(self, text: str) -> str:
        return text if self.plain else f"`{text}`"

    def heading(self, level: int, text: str) -> str:
        if self.plain:
            return text + "\n" + ("=" if level == 1 else "-") * len(text)
        return "#" * level + " " + text

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
        if self.plain:
            widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=False)]
            return [
                "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                for row in (headers, *rows)
            ]
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        cells = (" | ".join(str(c).replace("|", "\\|") for c in row) for row in rows)
        return lines + [f"| {line} |" for line in cells]


def _note(change: Change, notes: Mapping[str, ReplicaNote]) -> ReplicaNote | None:
    return notes.get(change.key) if change.key is not None else None


def _is_replica(change: Change, notes: Mapping[str, ReplicaNote]) -> bool:
    return change.key is not None and (change.name == "replica" or change.key in notes)


def _market_of(change: Change, note: ReplicaNote | None) -> str:
    before, after = change.market_before, change.market_after
    if before and after and before != after:
        return f"{before} -> {after}"
    return change.market or (note.market if note and note.market else "-")


def _group_key(change: Change, notes: Mapping[str, ReplicaNote]) -> tuple[str, str, str]:
    """(market, accelerator, version) of a change; infrastructure shared by replicas is
    ("infra", "-", "-")."""
    if not _is_replica(change, notes):
        return (change.market or "infra", change.accelerator or "-", "-")
    note = _note(change, notes)
    accelerator = change.accelerator or (note.accelerator if note else "") or "-"
    version = f"v{note.version}" if note and note.version is not None else "-"
    return (change.market or (note.market if note and note.market else "-"), accelerator, version)


def _reason(change: Change, note: ReplicaNote | None) -> str:
    if note is not None and note.reason:
        return note.reason
    if change.action == "replace":
        return f"replaced by Terraform: {change.why or 'forced by a changed input'}"
    return "not asked by the policy: a changed input (image, script, setting)"


def _warning(
    md: _Md, stacks: Sequence[StackSummary], notes: Mapping[str, ReplicaNote]
) -> list[str]:
    """The loud block: present exactly when some change deletes or replaces."""
    items = [
        (s.stack, c)
        for s in stacks
        for c in sorted(s.changes, key=lambda c: c.address)
        if c.action in DESTRUCTIVE
    ]
    if not items:
        return []
    deletes = sum(1 for _, c in items if c.action == "delete")
    replaces = len(items) - deletes
    headline = (
        f"this plan destroys or replaces resources: {deletes} to delete, {replaces} to replace"
    )
    lines = []
    for stack, c in items:
        what = f"stack {md.code(stack)}: {c.action} {md.code(c.address)}"
        if _is_replica(c, notes):
            what += f" ({_reason(c, _note(c, notes))})"
        lines.append(what)
    if md.plain:
        return [f"WARNING: {headline}"] + [f"  - {line}" for line in lines] + [""]
    first = (
        ["> [!CAUTION]", f"> **WARNING: {headline}**"]
        if md.fmt == "github"
        else [f"> **WARNING: {headline}**"]
    )
    return first + [">"] + [f"> - {line}" for line in lines] + [""]


def _stack_section(md: _Md, s: StackSummary, notes: Mapping[str, ReplicaNote]) -> list[str]:
    out = [md.heading(2, f"Stack {md.code(s.stack)}" + ("" if s.changed else " (no changes)")), ""]
    if not s.changes:
        return out
    groups: dict[tuple[str, str, str], dict[str, int]] = {}
    for c in s.changes:
        per = groups.setdefault(_group_key(c, notes), {})
        per[c.action] = per.get(c.action, 0) + 1
    out += md.table(
        ("market", "accelerator", "version", *ACTIONS),
        [(*key, *(str(n.get(a, 0)) for a in ACTIONS)) for key, n in sorted(groups.items())],
    )
    out.append("")
    replicas: dict[str, list[Change]] = {}
    others: list[Change] = []
    for c in sorted(s.changes, key=lambda c: c.address):
        if _is_replica(c, notes):
            replicas.setdefault(str(c.key), []).append(c)
        else:
            others.append(c)
    if replicas:
        rows = []
        for rid, changes in sorted(replicas.items()):
            note = notes.get(rid)
            main = next((c for c in changes if c.name == "replica"), changes[0])
            actions = "+".join(sorted({c.action for c in changes}, key=ACTIONS.index))
            zone = main.zone or (note.zone if note and note.zone else "-")
            accelerator = main.accelerator or (note.accelerator if note else "") or "-"
            version = f"v{note.version}" if note and note.version is not None else "-"
            rows.append(
                (md.code(rid), actions, zone, _market_of(main, note), accelerator, version,
                 _reason(main, note))
            )  # fmt: skip
        out += ["Replica changes:", ""]
        out += md.table(
            ("replica", "action", "zone", "market", "accelerator", "version", "reason"), rows
        )
        out.append("")
    if others:
        out += ["Other resources:", ""]
        out += [f"- {c.action} {md.code(c.address)}" for c in others]
        out.append("")
    if s.replacements:
        out += ["Replacements:", ""]
        out += [f"- {r if not md.plain else r.replace('`', '')}" for r in sorted(s.replacements)]
        out.append("")
    if s.lb_added or s.lb_removed:
        out += ["Load balancer membership:", ""]
        out += [f"- + {md.code(m)}" for m in sorted(s.lb_added)]
        out += [f"- - {md.code(m)}" for m in sorted(s.lb_removed)]
        out.append("")
    return out


def _raw_plans(md: _Md, plans: Mapping[str, Any], aliases: Mapping[str, str]) -> list[str]:
    def text(plan: Any) -> str:
        raw = json.dumps(_redacted(plan), indent=1, sort_keys=True)
        for path, name in sorted(aliases.items(), key=lambda kv: -len(kv[0])):
            raw = raw.replace(json.dumps(path)[1:-1], name)
        return raw

    names = sorted(plans, key=lambda s: (s != "front", s))
    if md.plain:
        out = [md.heading(2, "Raw plans (terraform show -json)"), ""]
        for stack in names:
            out += [f"{stack}:", ""]
            out += ["    " + line for line in text(plans[stack]).splitlines()] + [""]
        return out
    out = ["<details><summary>Raw plans (terraform show -json)</summary>", ""]
    for stack in names:
        out += [f"### {stack}", "", "```json", text(plans[stack]), "```", ""]
    return [*out, "</details>"]


def redacted_plan(plan: Mapping[str, Any]) -> dict[str, Any]:
    """A `show -json` document fit to keep beside a saved plan: resource changes only (no
    variables, no prior state), sensitive values masked, and the Terraform version."""
    return {**_redacted(plan), "terraform_version": plan.get("terraform_version")}


def _redacted(plan: Mapping[str, Any]) -> dict[str, Any]:
    """Only resource changes go into the document, with values Terraform marks sensitive
    replaced, so a plan diff committed for review never carries a secret."""
    changes = []
    for rc in plan.get("resource_changes", []):
        change = dict(rc.get("change", {}))
        for side, mask in (("before", "before_sensitive"), ("after", "after_sensitive")):
            change[side] = mask_sensitive(change.get(side), change.get(mask))
        changes.append({**rc, "change": change})
    return {"format_version": plan.get("format_version"), "resource_changes": changes}


def mask_sensitive(value: Any, sensitive: Any) -> Any:
    """`value` with every part Terraform's `*_sensitive` mirror marks true replaced by
    SENSITIVE_MARK (a plan's `before`/`after` and `before_sensitive`/`after_sensitive`)."""
    if sensitive is True:
        return SENSITIVE_MARK
    if isinstance(value, Mapping) and isinstance(sensitive, Mapping):
        return {k: mask_sensitive(v, sensitive.get(k)) for k, v in value.items()}
    if isinstance(value, list) and isinstance(sensitive, list):
        return [
            mask_sensitive(v, sensitive[i] if i < len(sensitive) else None)
            for i, v in enumerate(value)
        ]
    return value
