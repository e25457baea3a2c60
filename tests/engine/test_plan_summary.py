"""Plan diffs for review, from `terraform show -json` documents."""

from __future__ import annotations

from typing import Any

from reconciler.plan_summary import one_line, summarize_stack, to_markdown


def change(
    address: str, actions: list[str], before: Any = None, after: Any = None, **extra: Any
) -> dict[str, Any]:
    name = address.split(".")[-1].split("[")[0]
    return {
        "address": address,
        "type": "null_resource",
        "name": name,
        "change": {"actions": actions, "before": before, "after": after, **extra},
    }


PLAN = {
    "format_version": "0.2",
    "resource_changes": [
        change('module.stack.null_resource.replica["a-spot-1"]', ["create"],
               after={"triggers": {"market": "spot"}}),
        change('module.stack.null_resource.replica["a-od-2"]', ["delete"],
               before={"triggers": {"market": "on_demand"}}),
        change('module.stack.null_resource.replica["a-spot-3"]', ["delete", "create"],
               before={"triggers": {"market": "spot", "zone": "a"}},
               after={"triggers": {"market": "spot", "zone": "b"}},
               replace_paths=[["triggers", "zone"]]),
        change("module.stack.null_resource.target_group[0]", ["delete", "create"],
               before={"triggers": {"members": "a-od-2,a-spot-3"}},
               after={"triggers": {"members": "a-spot-3,a-spot-4"}}),
        change("module.stack.null_resource.load_balancer[0]", ["no-op"]),
    ],
}  # fmt: skip


def test_counts_by_market_with_replacements_apart() -> None:
    s = summarize_stack("local-1", PLAN)
    assert s.counts["spot"] == {"create": 1, "replace": 1}
    assert s.counts["on_demand"] == {"delete": 1}
    assert s.counts["infra"] == {"replace": 1}
    assert s.total("create") == 1 and s.total("replace") == 2
    assert any("triggers.zone" in r for r in s.replacements)


def test_load_balancer_membership_changes_are_listed() -> None:
    s = summarize_stack("front", PLAN)
    assert s.lb_added == ["a-spot-4"]
    assert s.lb_removed == ["a-od-2"]
    assert "load balancer +1/-1" in one_line([s])


def test_no_changes() -> None:
    s = summarize_stack("local-2", {"resource_changes": [change("x.y", ["no-op"])]})
    assert not s.changed
    assert one_line([s]).endswith("(no changes)")


def test_markdown_masks_sensitive_values_and_collapses_the_raw_plan() -> None:
    secret_plan = {
        "resource_changes": [
            change("module.stack.null_resource.replica[\"x\"]", ["create"],
                   after={"triggers": {"market": "spot", "token": "hunter2"}},
                   after_sensitive={"triggers": {"token": True}}),
        ]
    }  # fmt: skip
    text = to_markdown("llama", "now", [summarize_stack("s", secret_plan)], {"s": secret_plan})
    assert "hunter2" not in text
    assert "(sensitive)" in text
    assert "<details>" in text and "## Stack `s`" in text
    assert "| spot | - | - | 1 | 0 | 0 | 0 |" in text  # market, accelerator, version
