"""Several GPU types in the backtest (issue 15): trace pools, the simulator's pools, and
`hedgeform backtest --types FILE --rate RPS`."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from reconciler.backtest.mixed_run import MixedSetup, for_traces, mixed_spec, pools_of
from reconciler.backtest.runner import BacktestConfig, backtest_spec
from reconciler.backtest.simulator import Pools, simulate_window, zone_offers
from reconciler.cli import main
from reconciler.errors import TraceError
from reconciler.policy import POLICIES
from reconciler.policy.decision import Decision
from reconciler.policy.mixed import hedgeform_mix
from reconciler.spec.profile import parse_profile
from reconciler.traces import accelerator_of, load_trace_set

DAY = 300  # points of 300 s: 25 h, one 24 h window
TYPES = (
    "gpus:\n  A10G: {usd_per_hour: 1.01, max_rps: 2.5}\n"
    "  A100-80GB: {usd_per_hour: 3.67, max_rps: 26.7}\n"
)


def trace(path: Path, data: list[int]) -> None:
    path.write_text(json.dumps({"metadata": {"gap_seconds": 300}, "data": data}))


@pytest.fixture
def two_types(tmp_path: Path) -> Path:
    """A10G spot in two zones for the first 6 hours only; A100-80GB spot all day. Zone za-1a
    holds both types: two pools."""
    d = tmp_path / "two"
    d.mkdir()
    for zone in ("za-1a", "zb-1a"):
        trace(d / f"{zone}_a10g_1.json", [4] * 72 + [0] * (DAY - 72))
    for zone in ("za-1a", "zc-1a"):
        trace(d / f"{zone}_a100-80gb_1.json", [4] * DAY)
    (tmp_path / "types.yaml").write_text(TYPES)
    return d


def test_file_names_give_the_gpu_and_two_types_of_one_zone_are_two_pools(two_types: Path) -> None:
    assert accelerator_of(Path("us-east-1f_v100_1.json")) == ("V100", 1)
    assert accelerator_of(Path("x-1a_a100_40gb_8.json")) == ("A100-40GB", 8)
    assert accelerator_of(Path("sandbox-zone.json")) == ("", 0)
    traces = load_trace_set(two_types)
    assert traces.accelerators == ("A100-80GB", "A10G")
    assert traces.pools == ("za-1a/A100-80GB", "za-1a/A10G", "zb-1a/A10G", "zc-1a/A100-80GB")
    alone = traces.only("A10G")
    assert alone.pools == ("za-1a", "zb-1a") and alone.name == "two/A10G"
    with pytest.raises(TraceError, match=r"holds several GPU types \(A100-80GB, A10G\); the soak"):
        traces.require_one_type("the soak")


def test_one_zone_and_type_twice_is_refused(tmp_path: Path) -> None:
    trace(tmp_path / "za-1a_a10g_1.json", [1] * 3)
    trace(tmp_path / "za-1a_a10g_2.json", [1] * 3)
    trace(tmp_path / "za-1a_l4_1.json", [1] * 3)
    with pytest.raises(TraceError, match=r"more than one trace file for zone\(s\) za-1a \(one "):
        load_trace_set(tmp_path)


def test_pools_priced_like_the_default_replay_give_the_same_window() -> None:
    """The pools' generalisation (per-pool prices, served requests/s) reduces to the plain
    replay: spot 1, on-demand 3, one request/s per replica, demand = target."""
    rng = np.random.default_rng(7)
    capacity = rng.integers(0, 3, size=(3, 400)).repeat(3, axis=1)
    zones = ["za-1a", "za-1b", "zb-1a"]
    spec = backtest_spec(BacktestConfig(target=2, overprovision=1), None)
    plain = simulate_window(POLICIES["hedgeform"], spec, zones, capacity, cold_start_s=120)
    pools = Pools(zone_offers(zones), (1.0, 1.0, 1.0), 2.0, 3.0 * 2)
    priced = simulate_window(
        POLICIES["hedgeform"], spec, zones, capacity, cold_start_s=120, pools=pools
    )
    assert (priced.cost_units, priced.available_ticks, priced.baseline_units) == (
        plain.cost_units,
        plain.available_ticks,
        plain.baseline_units,
    )
    assert plain.available_ticks < plain.scored_ticks  # the window is not trivially served


def test_the_mix_moves_to_the_type_whose_spot_remains(two_types: Path) -> None:
    runner = CliRunner()
    out = two_types.parent / "r.json"
    result = runner.invoke(
        main,
        ["backtest", "--traces", str(two_types), "--types", str(two_types.parent / "types.yaml"),
         "--rate", "7", "--repeats", "1", "--quiet", "--json", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "cost % is of $3.03/h, the cheapest on-demand-only way to serve 7 req/s" in (
        result.output
    )
    rows = json.loads(out.read_text())["traces"]["two"]
    assert list(rows) == ["hedgeform_mix", "hedgeform A100-80GB only", "hedgeform A10G only"]
    mix, a100, a10g = (rows[k] for k in rows)
    # A10G spot is gone after 6 h: alone, A10G serves the rest on on-demand ($3.03/h); the
    # mix moves to one A100-80GB on spot ($1.22/h), and pays less than either type alone.
    assert mix["cost_pct"] < a10g["cost_pct"] and mix["cost_pct"] < a100["cost_pct"]
    assert mix["availability_pct"] >= a10g["availability_pct"]
    config = json.loads(out.read_text())["config"]
    assert config["rate_rps"] == 7 and "target" not in config


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--rate", "7"], "Error: Invalid value for --rate: needs --types (what each GPU type "
         "costs and serves)"),
        (["--types", "TYPES"], "Error: Invalid value for --types: needs --rate (the requests/s "
         "to serve)"),
        (["--types", "TYPES", "--rate", "7", "--target", "3"], "Error: Invalid value for "
         "--target: does not apply with --types: --types sizes each run from --rate"),
        (["--types", "TYPES", "--rate", "7", "--policy", "spothedge"], "Error: Invalid value "
         "for --policy: does not apply with --types: --types runs hedgeform_mix and hedgeform "
         "per type"),
        (["--types", "TYPES", "--rate", "7", "--matrix", "--json", "m.json"], "Error: Invalid "
         "value for --types: cannot be combined with --matrix"),
        (["--types", "TYPES", "--rate", "1e6"], "Error: --rate 1e+06 needs 37454 replicas of "
         "A100-80GB alone, more than the 1000 a service may have; give a lower rate"),
        ([], "Error: two: holds several GPU types (A100-80GB, A10G); a backtest without --types "
         "FILE --rate RPS (which run the mix) replays one type: point it at a directory of one"),
    ],
)  # fmt: skip
def test_mixed_flags_are_refused_in_one_line(
    two_types: Path, args: list[str], expected: str
) -> None:
    types = str(two_types.parent / "types.yaml")
    argv = ["backtest", "--traces", str(two_types), "--repeats", "1", "--quiet"]
    result = CliRunner().invoke(main, argv + [types if a == "TYPES" else a for a in args])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert expected in result.output


def test_types_must_cover_every_traced_gpu(two_types: Path) -> None:
    partial = two_types.parent / "partial.yaml"
    partial.write_text("gpus:\n  A10G: {usd_per_hour: 1.01, max_rps: 2.5}\n")
    result = CliRunner().invoke(
        main,
        ["backtest", "--traces", str(two_types), "--types", str(partial), "--rate", "7",
         "--repeats", "1", "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert result.output.strip().endswith(
        "Error: two: GPU type A100-80GB has traces but no entry in --types (it has A10G)"
    )


def run(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["backtest", "--repeats", "1", *args])
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_a_types_file_that_cannot_be_read_is_a_bad_option_as_for_mix(two_types: Path) -> None:
    """Before: a missing --types file was exit 1 (`Error: x.yaml: No such file or directory`)
    where `mix --profile` says exit 2; /dev/zero read without end (MemoryError)."""
    missing = two_types.parent / "missing.yaml"
    code, output = run(["--traces", str(two_types), "--types", str(missing), "--rate", "7"])
    assert code == 2 and "Invalid value for '--types': File " in output
    assert "does not exist" in output and len(output.strip().splitlines()) == 1
    if Path("/dev/zero").exists():
        code, output = run(["--traces", str(two_types), "--types", "/dev/zero", "--rate", "7"])
        assert code == 2 and output.strip().startswith(
            "Error: Invalid value for --types: /dev/zero: not a regular file (a device, FIFO or "
            "socket) (see '"
        )
    deep = two_types.parent / "deep.json"
    deep.write_text("[" * 100_000)
    code, output = run(["--traces", str(two_types), "--types", str(deep), "--rate", "7"])
    assert code == 1 and output.strip() == f"Error: {deep}: nested too deeply to load"


def test_a_file_naming_no_type_in_a_mixed_set_is_one_line(two_types: Path) -> None:
    """Before: a StopIteration traceback from pricing the unnamed pool."""
    trace(two_types / "zd-1a.json", [1] * DAY)
    code, output = run(["--traces", str(two_types), "--types",
                        str(two_types.parent / "types.yaml"), "--rate", "7"])  # fmt: skip
    assert code == 1
    assert output.strip().splitlines()[-1] == (
        "Error: two: zd-1a.json names no GPU type (`<zone>_<gpu>_<count>.json`, count from "
        "1); with --types every file must"
    )


def test_types_without_traces_are_refused_and_names_match_as_files_write_them(
    two_types: Path,
) -> None:
    """Before: an untraced type in --types changed the baseline and sized the mix for a rate
    2.5 times too high; and `a10g` in the types file did not match `..._a10g_1.json`."""
    extra = two_types.parent / "extra.yaml"
    extra.write_text(TYPES + "  T4: {usd_per_hour: 0.35, max_rps: 1.0}\n")
    code, output = run(["--traces", str(two_types), "--types", str(extra), "--rate", "7"])
    assert code == 1 and output.strip().splitlines()[-1] == (
        "Error: two: --types gives T4, which has no traces there (it holds A100-80GB, A10G); "
        "the mix may only use types it can replay"
    )
    lower = two_types.parent / "lower.yaml"
    lower.write_text(TYPES.replace("A10G", "a10g").replace("A100-80GB", "a100_80gb"))
    out = two_types.parent / "lower.json"
    code, output = run(["--traces", str(two_types), "--types", str(lower), "--rate", "7",
                        "--quiet", "--json", str(out)])  # fmt: skip
    assert code == 0, output
    data = json.loads(out.read_text())
    assert list(data["traces"]["two"])[1:] == ["hedgeform A100-80GB only", "hedgeform A10G only"]
    assert data["config"]["types"] == {
        "A100-80GB": {"usd_per_hour": 3.67, "max_rps": 26.7},
        "A10G": {"usd_per_hour": 1.01, "max_rps": 2.5},
    }
    assert data["config"]["baseline_usd_per_hour"] == 3.03


def test_every_set_is_checked_before_any_runs(two_types: Path, tmp_path: Path) -> None:
    one = tmp_path / "one"
    one.mkdir()
    trace(one / "za-1a_a10g_1.json", [1] * DAY)
    code, output = run(["--traces", str(two_types), "--traces", str(one), "--types",
                        str(two_types.parent / "types.yaml"), "--rate", "7"])  # fmt: skip
    assert code == 1 and "window 1/1" not in output  # nothing ran
    assert output.strip().splitlines()[-1].startswith("Error: one: --types needs a directory")


def test_two_pools_of_one_zone_are_told_apart_when_spans_differ(two_types: Path) -> None:
    """Before: the note keyed lengths by zone, so one pool hid the other's drop; and the
    --types JSON wrote no spans."""
    trace(two_types / "za-1a_a100-80gb_1.json", [4] * (DAY * 2))
    out = two_types.parent / "spans.json"
    code, output = run(["--traces", str(two_types), "--types",
                        str(two_types.parent / "types.yaml"), "--rate", "7", "--quiet",
                        "--json", str(out)])  # fmt: skip
    assert code == 0, output
    note = json.loads(out.read_text())["spans"]["two"]
    assert "drops 50% of za-1a/A100-80GB" in note and note in output


def test_a_file_of_several_profiles_says_what_to_give(two_types: Path) -> None:
    several = two_types.parent / "several.yaml"
    several.write_text("configs:\n  a: {gpus: {A10G: {usd_per_hour: 1, max_rps: 1}}}\n  b: {}\n")
    code, output = run(["--traces", str(two_types), "--types", str(several), "--rate", "7"])
    assert code == 1 and output.strip().splitlines()[-1] == (
        f"Error: {several} holds several profiles (a, b); give a file of one profile"
    )


def run_recording(
    directory: Path, rate: float, cold_start_s: int
) -> tuple[list[frozenset[str]], float, float]:
    """One 24 h window of `hedgeform_mix` over `directory`'s pools (TYPES, one spare): the
    types it runs at each decision, its cost and availability, in %."""
    traces = load_trace_set(directory)
    setup = for_traces(traces, MixedSetup(parse_profile(yaml.safe_load(TYPES)), rate))
    spec = mixed_spec(setup, BacktestConfig(overprovision=1))
    pools = pools_of(traces, setup)
    mixes: list[frozenset[str]] = []

    def recording(*args: Any) -> Decision:
        decision = hedgeform_mix(*args)
        groups = dict(decision.memory.groups)
        mixes.append(frozenset(t for t, m in groups.items() if m.target))
        return decision

    result = simulate_window(
        recording,
        spec,
        [o.zone for o in pools.offers],
        traces.capacity(30)[:, :2880],
        cold_start_s=cold_start_s,
        launch_failure_delay_s=60,
        pools=pools,
    )
    cost = 100 * result.cost_units / result.baseline_units
    return mixes, cost, 100 * result.available_ticks / result.scored_ticks


def test_a_type_whose_pools_stay_full_is_not_left_and_rejoined_every_hour(
    tmp_path: Path,
) -> None:
    """docs/mix.md's former known limitation, reproduced: A10G's three pools hold one spot
    replica each all day; the mix (3 × A10G at 7 req/s) asks one more for the spare, so every
    A10G pool refuses a launch in turn. Priced as a type without spot once all three had, the
    mix left A10G for one A100-80GB and came back when the marks expired, over and over (94
    type changes in this day, at 2.4 times the cost). Priced at spot as far as its pools
    hold and on-demand beyond, it stays."""
    d = tmp_path / "full"
    d.mkdir()
    for zone in ("za-1a", "zb-1a", "zc-1a"):
        trace(d / f"{zone}_a10g_1.json", [1] * DAY)
    for zone in ("za-1a", "zb-1a"):
        trace(d / f"{zone}_a100-80gb_1.json", [4] * DAY)
    mixes, _, availability = run_recording(d, 7.0, 120)
    changes = sum(1 for a, b in itertools.pairwise(mixes) if a != b)
    assert mixes[-1] == {"A10G"}
    assert changes <= 1, f"{changes} type changes in a day"
    assert availability == 100.0


def test_a_mix_priced_without_its_spare_was_stuck_on_a_large_type_all_day(
    tmp_path: Path,
) -> None:
    """A10G spot is gone for the first two hours, then plentiful; A100-80GB spot all day;
    600 s cold starts. Priced without the spare, one A100-80GB ($1.22/h) beat three A10Gs
    on on-demand ($3.03/h) and the mix moved; once A10G spot was back, returning saved
    $0.21/h, which cannot repay a 600 s start within the 1200 s hold: it stayed on the
    A100-80GB and its $1.22/h spare all day. The spare stands in for any replica, so it is
    of the mix's largest type and priced with the mix: one A100-80GB and its spare cost
    $2.45/h, whose saving over on-demand A10Gs does not repay the move for a type whose
    spot may return; the mix rides out the two hours on A10G and ends on A10G spot."""
    d = tmp_path / "back"
    d.mkdir()
    for zone in ("za-1a", "zb-1a", "zc-1a"):
        trace(d / f"{zone}_a10g_1.json", [0] * 24 + [4] * (DAY - 24))
    for zone in ("za-1a", "zb-1a"):
        trace(d / f"{zone}_a100-80gb_1.json", [16] * DAY)
    mixes, cost, _ = run_recording(d, 7.0, 600)
    assert mixes[-1] == {"A10G"}, f"cost {cost:.1f} %"
    # an A100-80GB and its spare all day would be 81 % of the $3.03/h baseline
    assert cost < 60.0, f"cost {cost:.1f} %"


@pytest.mark.parametrize(
    ("types", "rate"),
    [
        (TYPES.replace("max_rps: 26.7", "max_rps: 1.0e+10"), "7"),  # a type dwarfing the rate
        (TYPES, "1e-9"),  # a rate dwarfed by every type
    ],
)
def test_a_rate_far_below_a_replica_is_served_by_one_and_scored_so(
    two_types: Path, types: str, rate: str
) -> None:
    # before: ceil(rate / serves - 1e-9) sized a run at 0 replicas, and the absolute 1e-9 of
    # the scoring counted serving nothing as available: 0.00 % or 100 % with no launch
    (two_types.parent / "types.yaml").write_text(types)
    out = two_types.parent / "r.json"
    result = CliRunner().invoke(
        main,
        ["backtest", "--traces", str(two_types), "--types", str(two_types.parent / "types.yaml"),
         "--rate", rate, "--repeats", "1", "--quiet", "--json", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for name, row in json.loads(out.read_text())["traces"]["two"].items():
        assert row["availability_pct"] > 90 and row["cost_pct"] > 1, (name, row)
        assert row["spot_launches"] + row["od_launches"] >= 1, (name, row)


def test_a_mix_of_one_type_replays_exactly_as_that_type_alone(tmp_path: Path) -> None:
    """Common random numbers: the single-type runs name each pool as the mix does
    (`<zone>/<type>`), so the seeded retry jitter after a capacity refusal
    (policy/capacity_backoff.py hashes the pool's name) draws the same delays in both runs.
    Here the A100-80GB costs so much that the mix never runs it: the mix is SpotHedge over
    the A10G pools, and must replay exactly as A10G alone. With the single-type pools named
    `<zone>` the two parted at the first refusal (set B, 7 req/s, 600 s cold starts:
    63.55 % against 63.48 % cost at equal availability)."""
    d = tmp_path / "one"
    d.mkdir()
    rng = np.random.default_rng(3)
    for zone in ("za-1a", "zb-1a", "zc-1a"):
        # spot capacity that comes and goes by the hour: refusals and preemptions all day
        trace(d / f"{zone}_a10g_1.json", [int(c) for c in rng.integers(0, 3, DAY // 12).repeat(12)])
    for zone in ("za-1a", "zb-1a"):
        trace(d / f"{zone}_a100-80gb_1.json", [4] * DAY)
    types = tmp_path / "types.yaml"
    types.write_text(
        "gpus:\n  A10G: {usd_per_hour: 1.01, max_rps: 2.5}\n"
        "  A100-80GB: {usd_per_hour: 90.0, max_rps: 26.7}\n"
    )
    out = tmp_path / "r.json"
    result = CliRunner().invoke(
        main,
        ["backtest", "--traces", str(d), "--types", str(types), "--rate", "7",
         "--repeats", "1", "--cold-start", "600", "--quiet", "--json", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["traces"]["one"]
    mix, alone = rows["hedgeform_mix"], rows["hedgeform A10G only"]
    assert alone["availability_pct"] < 100.0  # the market is not trivially served
    keys = ("cost_pct", "availability_pct", "preemptions", "od_launches")
    assert {k: mix[k] for k in keys} == {k: alone[k] for k in keys}
