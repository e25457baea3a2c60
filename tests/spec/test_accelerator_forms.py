"""SkyPilot's accelerator forms and SkyServe's per-accelerator targets, as the spec reads them.

A list is an ordered preference, a set or a mapping of several names is "any of"; an any_of
entry may carry its own accelerators; `target_qps_per_replica` may map accelerators to
requests/s, paired with `load_balancing_policy: instance_aware_least_load` both ways.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.spec import parse_spec
from reconciler.spec.fingerprint import (
    fingerprint,
    replica_fingerprint,
    replica_part,
    spec_for_part,
)
from reconciler.spec.loading import load_spec
from reconciler.spec.model import Accelerator, ReplicaPolicy

REPO = Path(__file__).resolve().parents[2]
Problems = Callable[[object], tuple[str, ...]]


def spec_of(doc: dict[str, Any]) -> Any:
    return parse_spec(doc, name="svc", source="svc.yaml")


@pytest.mark.parametrize(
    ("text", "names", "any_of"),
    [
        ("L4", ["L4"], False),
        ("L4:2", ["L4"], False),
        ("{L4: 1}", ["L4"], False),
        ("[A10G, L4]", ["A10G", "L4"], False),  # ordered: the first a cloud offers
        ("{L4: 1, A10G: 1}", ["L4", "A10G"], True),  # any of: the cheapest a cloud offers
        ("{L4, A10G}", ["L4", "A10G"], True),  # a YAML set
        ("!!set {L4, A10G}", ["A10G", "L4"], True),
        # SkyPilot's docs write sets without a space: YAML reads `L4:1` as a key, no value.
        ("{L4:1, A10G:1}", ["L4", "A10G"], True),
        ("{L4: 1.0}", ["L4"], False),  # SkyPilot accepts a number for the count
    ],
)
def test_accelerator_forms_keep_whether_the_order_is_a_preference(
    base: dict[str, Any], text: str, names: list[str], any_of: bool
) -> None:
    base["resources"]["accelerators"] = yaml.safe_load(f"x: {text}")["x"]
    resources = spec_of(base).resources
    assert [a.name for a in resources.accelerators] == names
    assert resources.accelerators_any_of is any_of


def test_the_same_name_twice_is_refused_whatever_its_case(
    base: dict[str, Any], problems_for: Problems
) -> None:
    base["resources"]["accelerators"] = {"L4": 1, "l4": 2}
    assert problems_for(base) == ("resources.accelerators: 'L4' is listed more than once",)


def test_any_of_entries_carry_their_own_accelerators_and_same_place_entries_merge(
    base: dict[str, Any],
) -> None:
    del base["resources"]["cloud"], base["resources"]["region"]
    base["resources"]["accelerators"] = "T4"
    base["resources"]["any_of"] = [
        {"cloud": "aws", "region": "us-east-1", "accelerators": "A10G"},
        {"cloud": "aws", "region": "us-east-1", "accelerators": "L4"},
        {"cloud": "gcp", "region": "us-central1"},
    ]
    resources = spec_of(base).resources
    aws, gcp = resources.any_of
    assert aws.accelerators == (Accelerator("A10G"), Accelerator("L4"))
    assert aws.accelerators_any_of is True  # SkyPilot: any of the entries may be launched
    assert resources.accelerators_at(aws) == ((Accelerator("A10G"), Accelerator("L4")), True)
    assert resources.accelerators_at(gcp) == ((Accelerator("T4"),), False)
    assert resources.accelerator_names == ("T4", "A10G", "L4")


@pytest.mark.parametrize(
    ("second", "expected"),
    [
        (
            {"cloud": "aws", "region": "us-east-1"},
            "resources.any_of[1]: duplicate location; to offer several accelerators in one "
            "place, give each entry its own (one per entry), or a set at resources.accelerators",
        ),
        (
            {"cloud": "aws", "region": "us-east-1", "accelerators": "l4"},
            "resources.any_of[1]: duplicate location: 'l4' is already offered here by "
            "another entry",
        ),
        (
            {"cloud": "aws", "region": "us-east-1", "accelerators": "L4:0"},
            "resources.any_of[1].accelerators: accelerator count must be a whole number >= 1, "
            "got '0'",
        ),
    ],
)
def test_bad_any_of_accelerators_name_the_entry(
    base: dict[str, Any], problems_for: Problems, second: dict[str, Any], expected: str
) -> None:
    del base["resources"]["cloud"], base["resources"]["region"]
    base["resources"]["any_of"] = [
        {"cloud": "aws", "region": "us-east-1", "accelerators": "L4"},
        second,
    ]
    assert expected in problems_for(base)


def per_accelerator(base: dict[str, Any], targets: object, balancing: str | None) -> None:
    base["resources"]["accelerators"] = {"A100": 1, "L4": 1}
    base["service"]["replica_policy"]["target_qps_per_replica"] = targets
    if balancing is not None:
        base["service"]["load_balancing_policy"] = balancing


def test_a_per_accelerator_target_is_read_with_instance_aware_least_load(
    base: dict[str, Any],
) -> None:
    per_accelerator(base, {"A100": 5, "L4:1": 2}, "instance_aware_least_load")
    service = spec_of(base).service
    policy = service.replica_policy
    assert service.load_balancing_policy == "instance_aware_least_load"
    assert policy.target_qps_per_replica is None
    assert policy.target_qps_per_accelerator == {"A100": 5.0, "L4:1": 2.0}
    # SkyServe's matching: the name, a NAME:COUNT key by its name, else the smallest value.
    assert (policy.target_for("A100"), policy.target_for("l4"), policy.target_for("T4")) == (
        5.0,
        2.0,
        2.0,
    )


@pytest.mark.parametrize(
    ("targets", "balancing", "expected"),
    [
        (
            {"A100": 5, "L4": 2},
            None,
            "service.load_balancing_policy: must be instance_aware_least_load when "
            "replica_policy.target_qps_per_replica maps accelerators to targets (got none)",
        ),
        (
            {"A100": 5, "L4": 2},
            "least_load",
            "service.load_balancing_policy: must be instance_aware_least_load when "
            "replica_policy.target_qps_per_replica maps accelerators to targets "
            "(got least_load)",
        ),
        (
            5,
            "instance_aware_least_load",
            "service.load_balancing_policy: instance_aware_least_load needs "
            "replica_policy.target_qps_per_replica as a map of accelerator to requests/s "
            "(e.g. {A100: 5, L4: 2})",
        ),
        (
            {"A100": 5, "L4": -1},
            "instance_aware_least_load",
            "service.replica_policy.target_qps_per_replica.L4: must be a number from 0.001 "
            "to 1e+06, got -1",
        ),
        (
            {"A100": 5, "L 4": 1},
            "instance_aware_least_load",
            "service.replica_policy.target_qps_per_replica: keys must be accelerator names "
            "like L4 or A100:1, got 'L 4' (a string)",
        ),
        (
            {},
            "instance_aware_least_load",
            "service.replica_policy.target_qps_per_replica: an empty map; give requests/s per "
            "accelerator, e.g. {A100: 5, L4: 2}",
        ),
        (
            {"A100": 5, "H100": 9},
            "instance_aware_least_load",
            "service.replica_policy.target_qps_per_replica.H100: names no accelerator of "
            "resources.accelerators (they are A100, L4)",
        ),
    ],
)
def test_per_accelerator_targets_are_refused_in_one_line_naming_the_field(
    base: dict[str, Any],
    problems_for: Problems,
    targets: object,
    balancing: str | None,
    expected: str,
) -> None:
    per_accelerator(base, targets, balancing)
    problems = problems_for(base)
    assert expected in problems
    # An invalid map never also reads as a missing target.
    assert not any("required when max_replicas" in line for line in problems)


def test_sized_for_takes_the_smallest_target_of_the_accelerators_in_use() -> None:
    policy = ReplicaPolicy(1, 4, target_qps_per_accelerator={"A100": 5.0, "L4": 2.0})
    assert policy.sized_for({"A100"}).target_qps_per_replica == 5.0
    assert policy.sized_for({"A100", "L4"}).target_qps_per_replica == 2.0
    assert policy.sized_for(()).target_qps_per_replica == 2.0  # nothing chosen: the map's least
    scalar = ReplicaPolicy(1, 4, target_qps_per_replica=3.0)
    assert scalar.sized_for({"A100"}) is scalar


def test_the_shipped_services_keep_their_digests(tmp_path: Path) -> None:
    """New spec fields enter the digests only when set: an unchanged file must not become a
    new version (that would roll every replica of every service out for nothing). These are
    the digests before accelerator forms and per-accelerator targets existed. llama-cloud
    asked for `cpus: 32+` then, which no L4 type of the catalog has since cpus are checked
    (issue 17): its file as it was keeps its digests."""
    cloud = (REPO / "services" / "llama-cloud.yaml").read_text(encoding="utf-8")
    before = re.sub(r"cpus: 4\+ +# [^\n]*", "cpus: 32+", cloud)
    assert before != cloud
    (tmp_path / "llama-cloud.yaml").write_text(before, encoding="utf-8")
    expected = {
        "llama": (
            "c9e9f0c5bf4d7721da5af5ad9f367571ef8da4f9f3a4472e5fced3a8475676d3",
            "4a2d852189d4a6df0673dea88e6e20cdb33e1387941358099894180b9c712030",
        ),
        "llama-aws": (
            "c35a9334749c0d2179b36664a2e4a144d520c7f2cf3e94b30b35dab5849bfb0d",
            "de638838eb670bd3bf0767a22e1d04d9cf055cbb0397db6a305e689f94fadfd4",
        ),
        "llama-cloud": (
            "a4fc8b4cb34fcfb0b6f36c4a5cdbf57e8bbd1e0509774c8a787ae9ac5d8d415f",
            "8b56c3fd4802d73f89d82dc89c9e441f2306c56da5d79060543e87d4861a3b51",
        ),
    }
    for name, digests in expected.items():
        folder = tmp_path if name == "llama-cloud" else REPO / "services"
        spec = load_spec(folder / f"{name}.yaml")
        assert (fingerprint(spec), replica_fingerprint(spec)) == digests, name


def test_the_accelerator_form_and_per_entry_accelerators_are_part_of_what_a_replica_runs(
    base: dict[str, Any],
) -> None:
    base["resources"]["accelerators"] = ["L4", "A10G"]
    ordered = spec_of(base)
    base["resources"]["accelerators"] = {"L4": 1, "A10G": 1}
    any_of = spec_of(base)
    assert replica_fingerprint(ordered) != replica_fingerprint(any_of)
    del base["resources"]["cloud"], base["resources"]["region"]
    base["resources"]["any_of"] = [
        {"cloud": "aws", "region": "us-east-1", "accelerators": {"A10G": 1, "L4": 1}},
        {"cloud": "gcp", "region": "us-central1"},
    ]
    located = spec_of(base)
    assert replica_fingerprint(located) != replica_fingerprint(any_of)
    # A version's part gives back its per-entry accelerators, whatever today's spec says.
    part = replica_part(located)
    base["resources"]["any_of"][0]["accelerators"] = "T4"
    today = spec_of(base)
    again = spec_for_part(today, part)
    assert again.resources.any_of == located.resources.any_of
    assert replica_fingerprint(again) == replica_fingerprint(located)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ([], "resources.accelerators: is empty; name at least one accelerator (e.g. L4), or "
         "leave the field out for a replica without one"),
        ({}, "resources.accelerators: is empty; name at least one accelerator (e.g. L4), or "
         "leave the field out for a replica without one"),
        ([{"L4": 1, "A10G": 1}, "T4"], "resources.accelerators[0]: a list item names one "
         "accelerator (a list is an ordered preference); for 'any of', write the mapping "
         "itself: {L4: 1, A10G: 1}"),
        ({"L4": 1.5}, "resources.accelerators.L4: accelerator count must be a whole number "
         ">= 1, got 1.5 (a number)"),
    ],
)  # fmt: skip
def test_empty_or_ambiguous_accelerator_forms_are_refused(
    base: dict[str, Any], problems_for: Problems, value: object, expected: str
) -> None:
    """Before: `[]` or `{}` silently meant a CPU replica, and a mapping inside a list turned an
    "any of" into an order without a word."""
    base["resources"]["accelerators"] = value
    assert problems_for(base) == (expected,)


def test_an_empty_entry_accelerators_does_not_silently_drop_the_top_level_one(
    base: dict[str, Any], problems_for: Problems
) -> None:
    del base["resources"]["cloud"], base["resources"]["region"]
    base["resources"]["accelerators"] = "L4"
    base["resources"]["any_of"] = [{"cloud": "aws", "region": "us-east-1", "accelerators": []}]
    assert problems_for(base)[0].startswith("resources.any_of[0].accelerators: is empty")


@pytest.mark.parametrize(
    ("targets", "expected"),
    [
        ({"L4": 3, "l4": 5}, "service.replica_policy.target_qps_per_replica.l4: 'L4' has a "
         "target more than once"),
        ({"L4:4": 3, "L4:1": 9}, "service.replica_policy.target_qps_per_replica.L4:1: 'L4' has "
         "a target more than once"),
        ({"L4": None, "A100": 5}, "service.replica_policy.target_qps_per_replica.L4: no value; "
         "give requests/s, a number from 0.001 to 1e+06"),
    ],
)  # fmt: skip
def test_a_target_given_twice_or_without_a_value_is_refused(
    base: dict[str, Any], problems_for: Problems, targets: object, expected: str
) -> None:
    """Before: the last duplicate won (not SkyServe's first match), and `L4: null` left the
    service without a target (or blamed a missing one)."""
    per_accelerator(base, targets, "instance_aware_least_load")
    problems = problems_for(base)
    assert expected in problems
    assert not any("required when max_replicas" in line for line in problems)


def test_targets_need_named_accelerators(base: dict[str, Any], problems_for: Problems) -> None:
    """Before: with no resources.accelerators a map was taken as is."""
    base["service"]["replica_policy"]["target_qps_per_replica"] = {"L4": 3}
    base["service"]["load_balancing_policy"] = "instance_aware_least_load"
    assert problems_for(base) == (
        "service.replica_policy.target_qps_per_replica.L4: names no accelerator of "
        "resources.accelerators (it names none)",
    )


def test_a_bad_count_is_one_line_without_a_follow_on_for_the_target_map(
    base: dict[str, Any], problems_for: Problems
) -> None:
    """Before: `{L4: 0, A10G: 1}` with a target for L4 also said the map's L4 named no
    accelerator, blaming the map for the count's mistake."""
    base["resources"]["accelerators"] = {"L4": 0, "A10G": 1}
    base["service"]["replica_policy"]["target_qps_per_replica"] = {"L4": 5, "A10G": 8}
    base["service"]["load_balancing_policy"] = "instance_aware_least_load"
    assert problems_for(base) == (
        "resources.accelerators.L4: accelerator count must be a whole number >= 1, got 0 "
        "(an integer)",
    )
