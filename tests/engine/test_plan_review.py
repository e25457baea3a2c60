"""The review document (`hedgeform plan --out`'s plan.md) against golden files, one per kind
of change, plus explicit asserts of the lines a reviewer relies on.

Regenerate the golden files after an intended change with
`HEDGEFORM_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/engine/test_plan_review.py`,
and read the diff before committing it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from reconciler.plan_summary import ReplicaNote, review_markdown, summarize_stack

GOLDEN = Path(__file__).parent / "golden" / "plan_review"
ROOT = "/srv/hedgeform-ci/checkout"  # an absolute path the document must not show
R = 'module.stack.null_resource.replica["{}"]'
TG = "module.stack.null_resource.target_group[0]"


def rc(address: str, actions: list[str], before: Any = None, after: Any = None,
       **extra: Any) -> dict[str, Any]:  # fmt: skip
    name = address.split(".")[-1].split("[")[0]
    index = address.split("[", 1)[1].rstrip("]").strip('"') if "[" in address else None
    return {
        "address": address,
        "mode": "managed",
        "type": "null_resource",
        "name": name,
        "index": int(index) if index is not None and index.isdigit() else index,
        "change": {"actions": actions, "before": before, "after": after, **extra},
    }


def replica(rid: str, market: str, zone: str, **more: str) -> dict[str, Any]:
    return {"triggers": {"replica_id": rid, "market": market, "zone": zone,
                         "sandbox_dir": f"{ROOT}/state/llama/sandbox", **more}}  # fmt: skip


def members(*ids: str) -> dict[str, Any]:
    return {"triggers": {"members": ",".join(ids), "epoch": "0"}}


CASES: dict[str, dict[str, Any]] = {
    "create": {
        "plans": {"local-1": [rc(R.format("local-1a-spot-3"), ["create"],
                                 after=replica("local-1a-spot-3", "spot", "local-1a"))]},
        "notes": {"local-1a-spot-3": ReplicaNote("local-1a", "spot", "", 1,
                                                 "scale up: target 2 -> 3")},
    },
    "update": {
        "plans": {"local-1": [rc("module.stack.null_resource.load_balancer[0]", ["update"],
                                 before={"triggers": {"port": "30001"}},
                                 after={"triggers": {"port": "30002"}})]},
        "notes": {},
    },
    "delete": {
        "plans": {"local-2": [rc(R.format("local-2a-spot-5"), ["delete"],
                                 before=replica("local-2a-spot-5", "spot", "local-2a"))]},
        "notes": {"local-2a-spot-5": ReplicaNote("local-2a", "spot", "", 1,
                                                 "scale down: target 3 -> 2")},
    },
    "replace": {
        "plans": {"local-1": [rc(R.format("local-1b-spot-2"), ["delete", "create"],
                                 before=replica("local-1b-spot-2", "spot", "local-1b"),
                                 after=replica("local-1b-spot-2", "spot", "local-1b",
                                               hedgeform_bin="/opt/new/hedgeform"),
                                 replace_paths=[["triggers", "hedgeform_bin"]])]},
        "notes": {},
    },
    "market_flip": {
        "plans": {"local-1": [
            rc(R.format("local-1a-spot-1"), ["delete"],
               before=replica("local-1a-spot-1", "spot", "local-1a")),
            rc(R.format("local-1a-od-4"), ["create"],
               after=replica("local-1a-od-4", "on_demand", "local-1a")),
            rc(R.format("local-1b-spot-2"), ["delete", "create"],
               before=replica("local-1b-spot-2", "spot", "local-1b"),
               after=replica("local-1b-spot-2", "on_demand", "local-1b"),
               replace_paths=[["triggers", "market"]]),
        ]},
        "notes": {
            "local-1a-spot-1": ReplicaNote("local-1a", "spot", "", 1,
                                           "preempted: spot capacity gone in local-1a"),
            "local-1a-od-4": ReplicaNote("local-1a", "on_demand", "", 1,
                                         "fall back to on-demand while spot is gone"),
        },
    },
    "lb_membership": {
        "plans": {"local-1": [rc(TG, ["delete", "create"],
                                 before=members("local-1a-spot-1", "local-1b-spot-2"),
                                 after=members("local-1b-spot-2", "local-1b-spot-3"),
                                 replace_paths=[["triggers", "members"]])]},
        "notes": {},
    },
    "version_rollout": {
        "plans": {
            "local-1": [
                rc(R.format("local-1a-l4-spot-7"), ["create"],
                   after=replica("local-1a-l4-spot-7", "spot", "local-1a", accelerator="L4")),
                rc(R.format("local-1a-l4-spot-2"), ["delete"],
                   before=replica("local-1a-l4-spot-2", "spot", "local-1a", accelerator="L4")),
            ],
            "local-2": [],
        },
        "notes": {
            "local-1a-l4-spot-7": ReplicaNote("local-1a", "spot", "L4", 2,
                                              "rolling update to v2: a new replica"),
            "local-1a-l4-spot-2": ReplicaNote("local-1a", "spot", "L4", 1,
                                              "rolling update to v2: v1 replica replaced"),
        },
        "rollout": "rolling llama v1 -> v2: 1 of 3 replaced",
        "reasons": ("service file changed: version 2 registered (rolling)",),
    },
    "no_changes": {
        "plans": {"local-1": [rc(TG, ["no-op"], before=members("a"), after=members("a"))],
                  "local-2": []},
        "notes": {},
    },
}  # fmt: skip


def render(case: str, fmt: str = "github") -> str:
    spec = CASES[case]
    plans = {stack: {"format_version": "0.2", "resource_changes": changes}
             for stack, changes in spec["plans"].items()}  # fmt: skip
    summaries = [summarize_stack(stack, plan) for stack, plan in sorted(plans.items())]
    return review_markdown(
        "llama",
        summaries,
        plans,
        fmt=fmt,
        notes=spec["notes"],
        rollout=spec.get("rollout"),
        reasons=spec.get("reasons", ()),
        aliases={ROOT: "<root>"},
    )


def golden(name: str, text: str) -> str:
    path = GOLDEN / name
    if os.environ.get("HEDGEFORM_UPDATE_GOLDEN"):
        path.write_text(text)
    return path.read_text()


@pytest.mark.parametrize("case", sorted(CASES))
def test_document_matches_its_golden_file(case: str) -> None:
    text = render(case)
    assert text == golden(f"{case}.md", text)
    assert render(case) == text  # deterministic: the same inputs, the same bytes


@pytest.mark.parametrize("fmt", ["gitlab", "plain"])
@pytest.mark.parametrize("case", ["market_flip", "create"])
def test_other_formats_match_their_golden_files(case: str, fmt: str) -> None:
    text = render(case, fmt)
    assert text == golden(f"{case}.{fmt}.md", text)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("fmt", ["github", "gitlab", "plain"])
def test_the_warning_block_is_there_exactly_when_something_is_destroyed(
    case: str, fmt: str
) -> None:
    text = render(case, fmt)
    destructive = case in {"delete", "replace", "market_flip", "lb_membership", "version_rollout"}
    assert ("WARNING: this plan destroys or replaces resources" in text) is destructive
    assert ("> [!CAUTION]" in text) is (destructive and fmt == "github")


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("fmt", ["github", "gitlab", "plain"])
def test_no_absolute_path_no_timestamp_no_emoji(case: str, fmt: str) -> None:
    text = render(case, fmt)
    assert ROOT not in text
    if case in {"create", "delete", "market_flip"}:
        assert "<root>/state/llama/sandbox" in text  # the path, relative to an alias
    title = next(line for line in text.splitlines() if "Plan for" in line)
    assert " at " not in title  # no timestamp: the same plan, the same bytes
    assert text.isascii()


def test_each_replica_change_carries_the_policys_reason() -> None:
    text = render("create")
    assert "Plan: 1 to create, 0 to update, 0 to delete, 0 to replace in local-1" in text
    assert ("| `local-1a-spot-3` | create | local-1a | spot | - | v1 | scale up: target 2 -> 3 |"
            in text)  # fmt: skip
    assert "| spot | - | v1 | 1 | 0 | 0 | 0 |" in text  # grouped by market, type, version


def test_a_market_flip_shows_both_markets_and_why() -> None:
    text = render("market_flip")
    assert "| `local-1b-spot-2` | replace | local-1b | spot -> on_demand |" in text
    assert "replaced by Terraform: triggers.market" in text
    assert "fall back to on-demand while spot is gone" in text
    assert "2 to delete" not in text and "1 to delete, 1 to replace" in text


def test_a_rollout_groups_by_version_and_accelerator() -> None:
    text = render("version_rollout")
    assert "Update: rolling llama v1 -> v2: 1 of 3 replaced" in text
    assert "| spot | L4 | v1 | 0 | 0 | 1 | 0 |" in text
    assert "| spot | L4 | v2 | 1 | 0 | 0 | 0 |" in text
    assert "## Stack `local-2` (no changes)" in text
    assert "- service file changed: version 2 registered (rolling)" in text


def test_load_balancer_membership_is_listed() -> None:
    text = render("lb_membership")
    assert "- + `local-1b-spot-3`" in text and "- - `local-1a-spot-1`" in text
    assert "- replace `module.stack.null_resource.target_group[0]`" in text


def test_no_changes_says_so_and_warns_of_nothing() -> None:
    text = render("no_changes")
    assert "Plan: 0 to create, 0 to update, 0 to delete, 0 to replace (no changes)" in text
    assert "## Stack `local-1` (no changes)" in text and "Replica changes" not in text


@pytest.mark.parametrize("fmt", ["github", "gitlab"])
def test_a_hidden_marker_lets_ci_update_one_comment(fmt: str) -> None:
    assert render("create", fmt).startswith("<!-- hedgeform-plan service=llama -->\n\n# Plan")


def test_plain_text_has_no_markup() -> None:
    text = render("market_flip", "plain")
    assert "`" not in text and "<details>" not in text and "|" not in text
    assert "WARNING: this plan destroys or replaces resources: 1 to delete, 1 to replace" in text


def test_sensitive_values_are_masked_in_every_format() -> None:
    plan = {"resource_changes": [
        rc(R.format("x"), ["create"], after={"triggers": {"market": "spot", "token": "hunter2"}},
           after_sensitive={"triggers": {"token": True}})]}  # fmt: skip
    for fmt in ("github", "gitlab", "plain"):
        text = review_markdown("llama", [summarize_stack("s", plan)], {"s": plan}, fmt=fmt)
        assert "hunter2" not in text and "(sensitive)" in text


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        review_markdown("llama", [], {}, fmt="html")
