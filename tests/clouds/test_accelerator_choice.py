"""Which instance type a region runs when the spec names several accelerators.

Reproduction (before this change): `accelerators: {L4: 1, A10G: 1}` and `{A10G: 1, L4: 1}`
mean the same thing to SkyPilot ("any of", the cheapest), yet each silently ran whichever
was written first.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from reconciler.clouds.catalog import (
    INSTANCE_TYPES,
    LIST_PRICES_PATH,
    accelerators_for_region,
    choice_note,
    instance_for,
    instance_for_region,
    list_price,
    list_prices,
)
from reconciler.errors import CloudConfigError
from reconciler.spec import parse_spec
from reconciler.spec.model import Accelerator, ReplicaPolicy, Resources


def resources(accelerators: object, any_of: list[dict[str, Any]] | None = None) -> Resources:
    res: dict[str, Any] = {"use_spot": True, "ports": 8081, "accelerators": accelerators}
    if any_of is None:
        res.update(cloud="aws", region="us-east-1")
    else:
        res["any_of"] = any_of
    doc = {"service": {"readiness_probe": "/health", "replicas": 1}, "resources": res, "run": "x"}
    return parse_spec(doc, name="svc", source="svc.yaml").resources


def test_any_of_runs_the_cheapest_whatever_the_order_it_was_written_in() -> None:
    l4, a10g = list_price("aws", "g6.xlarge"), list_price("aws", "g5.xlarge")
    assert l4 is not None and a10g is not None and l4 < a10g  # the premise, from the file
    for written in ({"L4": 1, "A10G": 1}, {"A10G": 1, "L4": 1}):
        choice = instance_for_region(resources(written), "aws", "us-east-1")
        assert (choice.instance_type, choice.accelerator) == ("g6.xlarge", "L4"), written


def test_an_ordered_list_runs_the_first_the_cloud_offers() -> None:
    assert instance_for_region(resources(["A10G", "L4"]), "aws", "us-east-1").accelerator == "A10G"
    # The first one offered: Azure has no L4 in the catalog, so T4.
    choice = instance_for("azure", [Accelerator("L4"), Accelerator("T4")])
    assert choice.accelerator == "T4"


def test_any_of_skips_what_the_cloud_does_not_offer_and_ranks_the_rest_by_price() -> None:
    offered = [Accelerator("H200"), Accelerator("V100"), Accelerator("T4")]
    choice = instance_for("aws", offered, any_of=True)
    assert choice.instance_type == "g4dn.xlarge"  # T4 is listed cheaper than V100 (p3.2xlarge)
    price = list_price("aws", "g4dn.xlarge")
    assert price is not None and price < (list_price("aws", "p3.2xlarge") or 0)


def test_an_override_keeps_the_chosen_accelerator() -> None:
    choice = instance_for(
        "aws", [Accelerator("A10G"), Accelerator("L4")], {"aws": "g6.2xlarge"}, any_of=True
    )
    assert (choice.instance_type, choice.accelerator) == ("g6.2xlarge", "L4")


def test_per_entry_accelerators_choose_per_region() -> None:
    res = resources(
        "T4",
        any_of=[
            {"cloud": "aws", "region": "us-east-1", "accelerators": {"A10G": 1, "L4": 1}},
            {"cloud": "aws", "region": "us-west-2"},
        ],
    )
    assert instance_for_region(res, "aws", "us-east-1").accelerator == "L4"
    assert instance_for_region(res, "aws", "us-west-2").accelerator == "T4"


def test_zones_of_one_region_that_ask_for_different_accelerators_are_refused_in_one_line() -> None:
    res = resources(
        None,
        any_of=[
            {"cloud": "aws", "region": "us-east-1", "zone": "us-east-1a", "accelerators": "L4"},
            {"cloud": "aws", "region": "us-east-1", "zone": "us-east-1b", "accelerators": "A10G"},
        ],
    )
    with pytest.raises(CloudConfigError) as caught:
        accelerators_for_region(res, "aws", "us-east-1")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(
        "resources.any_of: the entries for aws us-east-1 ask for different accelerators "
        "(A10G:1 | L4:1)"
    )


def test_the_choice_note_says_what_runs_and_why() -> None:
    res = resources({"A10G": 1, "L4": 1})
    choice = instance_for_region(res, "aws", "us-east-1")
    note = choice_note(res, "aws", "us-east-1", choice)
    prices = list_prices("aws")
    assert note.startswith(
        f"aws us-east-1 runs L4:1 on g6.xlarge (${prices.on_demand['g6.xlarge']:.2f}/h on "
        "demand): the lowest list price of any of A10G:1, L4:1"
    )
    assert prices.as_of in note and prices.source in note
    ordered = resources(["A10G", "L4"])
    note = choice_note(
        ordered, "aws", "us-east-1", instance_for_region(ordered, "aws", "us-east-1")
    )
    assert note.endswith("the first aws offers of A10G:1, L4:1, in the spec's order")
    single = resources("L4")
    assert (
        choice_note(single, "aws", "us-east-1", instance_for_region(single, "aws", "us-east-1"))
        == ""
    )


def test_every_catalog_instance_type_has_a_list_price_with_its_source() -> None:
    data = json.loads(LIST_PRICES_PATH.read_text())
    for cloud, table in INSTANCE_TYPES.items():
        source = data["sources"][cloud]
        assert source["repo"] and len(source["commit"]) == 40 and source["as_of"]
        for choice in table.values():
            price = list_price(cloud, choice.price_key)
            assert price is not None and 0 < price < 200, (cloud, choice.price_key)
            entry = data["clouds"][cloud]["instance_types"][choice.price_key]
            assert entry["count"] == choice.count and entry["evidence"], choice


def test_a_broken_price_file_is_one_line(tmp_path: Any) -> None:
    bad = tmp_path / "prices.json"
    bad.write_text("{")
    with pytest.raises(CloudConfigError) as caught:
        list_prices("aws", bad)
    assert "\n" not in str(caught.value) and str(bad) in str(caught.value)


def test_gcp_attached_gpus_are_priced_per_gpu_not_per_machine() -> None:
    """n1-standard-8 carries a T4 or a V100: the price key tells them apart."""
    t4 = instance_for("gcp", [Accelerator("T4")])
    v100 = instance_for("gcp", [Accelerator("V100")])
    assert t4.instance_type == v100.instance_type == "n1-standard-8"
    assert (t4.price_key, v100.price_key) == ("n1-standard-8+1xT4", "n1-standard-8+1xV100")
    assert (list_price("gcp", t4.price_key) or 0) < (list_price("gcp", v100.price_key) or 0)


def test_with_per_accelerator_targets_any_of_runs_the_cheapest_per_request() -> None:
    """L4 lists below A10G per hour, but at 3 vs 6 requests/s per replica the A10G serves a
    request for less: with SkyServe's per-accelerator targets the set ranks by $/h per
    request/s (the spec's own throughput figures), not by $/h."""
    res = resources({"L4": 1, "A10G": 1})
    policy = ReplicaPolicy(1, 4, target_qps_per_accelerator={"L4": 3.0, "A10G": 6.0})
    assert instance_for_region(res, "aws", "us-east-1").accelerator == "L4"
    choice = instance_for_region(res, "aws", "us-east-1", policy=policy)
    assert (choice.instance_type, choice.accelerator) == ("g5.xlarge", "A10G")
    note = choice_note(res, "aws", "us-east-1", choice, policy=policy)
    assert note.startswith(
        "aws us-east-1 runs A10G:1 on g5.xlarge ($1.01/h on demand, 6 requests/s): the lowest "
        "list price per request/s of any of L4:1, A10G:1 (targets from target_qps_per_replica"
    )
    # An ordered list stays an order: the targets do not reorder a preference.
    ordered = resources(["L4", "A10G"])
    assert instance_for_region(ordered, "aws", "us-east-1", policy=policy).accelerator == "L4"


def test_one_set_written_in_another_order_or_case_is_the_same_ask() -> None:
    """Before: two zones of a region asking {L4: 1, A10G: 1} and {A10G: 1, L4: 1} (or L4 and
    l4) were refused as different accelerators."""
    for first, second in (({"L4": 1, "A10G": 1}, {"A10G": 1, "L4": 1}), ("L4", "l4")):
        res = resources(
            None,
            any_of=[
                {"cloud": "aws", "region": "us-east-1", "zone": "us-east-1a",
                 "accelerators": first},
                {"cloud": "aws", "region": "us-east-1", "zone": "us-east-1b",
                 "accelerators": second},
            ],
        )  # fmt: skip
        assert instance_for_region(res, "aws", "us-east-1").accelerator == "L4"


def test_a_type_no_cloud_offers_names_the_field_it_came_from() -> None:
    res = resources(
        "T4",
        any_of=[
            {"cloud": "aws", "region": "us-east-1", "accelerators": "FOO"},
            {"cloud": "aws", "region": "us-west-2"},
        ],
    )
    with pytest.raises(CloudConfigError) as caught:
        instance_for_region(res, "aws", "us-east-1")
    assert str(caught.value).startswith(
        "resources.any_of[0].accelerators: no aws instance type for FOO:1 in the catalog"
    )
    top = resources("FOO")
    with pytest.raises(CloudConfigError, match=r"^resources\.accelerators: no aws instance"):
        instance_for_region(top, "aws", "us-east-1")


def test_the_note_tells_an_override_and_a_lone_offer_apart() -> None:
    res = resources({"L4": 1, "A10G": 1})
    overridden = instance_for_region(res, "aws", "us-east-1", {"aws": "g5.2xlarge"})
    assert choice_note(res, "aws", "us-east-1", overridden) == (
        "aws us-east-1 runs g5.2xlarge, the settings' instance_types override; its replicas "
        "are tagged L4:1, which the catalog would run on g6.xlarge"
    )
    azure = resources({"A100": 1, "L4": 1})
    choice = instance_for("azure", azure.accelerators, any_of=True)
    note = choice_note(azure, "azure", "eastus", choice)
    assert note.endswith(": the only one of A100:1, L4:1 the azure catalog offers")
