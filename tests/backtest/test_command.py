"""`hedgeform backtest` end to end on small trace directories, and its errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import main

SHARED = Path(__file__).resolve().parents[2].parent / "shared"


def write_trace(directory: Path, zone: str, data: list[int], gap: int = 300) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{zone}_v100_1.json").write_text(
        json.dumps({"metadata": {"gap_seconds": gap}, "data": data})
    )


@pytest.fixture
def small_traces(tmp_path: Path) -> Path:
    d = tmp_path / "TINY"
    write_trace(d, "x-1a", [2, 2, 0, 0, 2, 2, 2, 1, 2, 2] * 4)
    write_trace(d, "x-1b", [1, 0, 1, 1, 1, 0, 1, 1, 1, 1] * 4)
    write_trace(d, "y-1a", [2] * 40)
    return d


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["backtest", "--quiet", *args])
    return result.exit_code, result.output


def test_json_output_has_the_documented_shape(small_traces: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    code, text = run(
        "--traces", str(small_traces), "--policy", "spothedge", "--policy", "ondemand",
        "--repeats", "2", "--json", str(out),
    )  # fmt: skip
    assert code == 0, text
    data = json.loads(out.read_text())
    row = data["traces"]["TINY"]["spothedge"]
    assert set(row) == {
        "cost_pct", "availability_pct", "preemptions", "spot_launches", "od_launches",
        "wall_s", "repeats",
    }  # fmt: skip
    assert row["repeats"] == 2
    assert data["traces"]["TINY"]["ondemand"]["cost_pct"] == 100.0
    assert 0 < row["cost_pct"] < 100
    assert "TINY" in text and "spothedge" in text


def test_plot_is_written_as_png(small_traces: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.png"
    code, text = run("--traces", str(small_traces), "--policy", "hedgeform", "--repeats", "1",
                     "--plot", str(out))  # fmt: skip
    assert code == 0, text
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_optimal_is_no_costlier_than_any_policy(small_traces: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    args = ["--traces", str(small_traces), "--repeats", "1", "--json", str(out)]
    code, text = run(*args)
    assert code == 0, text
    rows = json.loads(out.read_text())["traces"]["TINY"]
    assert rows["optimal"]["availability_pct"] == 100.0
    for name, row in rows.items():
        if row["availability_pct"] == 100.0:
            assert rows["optimal"]["cost_pct"] <= row["cost_pct"] + 1e-6, name


def test_a_file_in_another_format_is_named(tmp_path: Path) -> None:
    d = tmp_path / "BAD"
    write_trace(d, "x-1a", [1, 2])
    (d / "y-1a_v100_1.json").write_text('{"rows": [1, 2, 3]}')
    code, text = run("--traces", str(d))
    assert code == 1
    assert "y-1a_v100_1.json: not a trace file" in text
    assert "Traceback" not in text


def test_an_empty_directory_is_refused(tmp_path: Path) -> None:
    code, text = run("--traces", str(tmp_path))
    assert code == 1 and "no trace files" in text


def test_a_missing_directory_is_refused(tmp_path: Path) -> None:
    code, text = run("--traces", str(tmp_path / "nope"))
    assert code == 1 and "not a directory of trace files" in text


def test_an_unknown_policy_lists_the_choices(small_traces: Path) -> None:
    code, text = run("--traces", str(small_traces), "--policy", "cheapest")
    assert code == 2
    assert "'cheapest' is not one of" in text and "spothedge" in text and "optimal" in text


@pytest.mark.skipif(not (SHARED / "workloads").is_dir(), reason="needs ../shared/workloads")
def test_maf_workload_drives_the_target_through_the_autoscaler(
    small_traces: Path, tmp_path: Path
) -> None:
    out = tmp_path / "r.json"
    code, text = run("--traces", str(small_traces), "--workload", "maf", "--policy", "hedgeform",
                     "--repeats", "1", "--json", str(out))  # fmt: skip
    assert code == 0, text
    assert json.loads(out.read_text())["traces"]["TINY"]["hedgeform"]["cost_pct"] > 0


def test_bad_numbers_are_usage_errors(small_traces: Path) -> None:
    code, text = run("--traces", str(small_traces), "--target", "0")
    assert code == 2 and "--target" in text


@pytest.mark.parametrize("flag", ["--json", "--plot"])
def test_an_unwritable_results_path_is_refused_before_the_run(
    small_traces: Path, tmp_path: Path, flag: str
) -> None:
    """`--json <an existing directory>` failed with a traceback after the whole backtest."""
    args = ["backtest", "--traces", str(small_traces), "--policy", "spothedge", "--repeats", "1"]
    result = CliRunner().invoke(main, [*args, flag, str(tmp_path)])
    assert result.exit_code == 2
    assert "is a directory; give a file name" in result.output
    assert "window" not in result.output  # nothing ran
    missing = tmp_path / "no" / "such" / "out.json"
    result = CliRunner().invoke(main, [*args, flag, str(missing)])
    assert result.exit_code == 2 and "does not exist" in result.output


@pytest.mark.parametrize(
    ("flag", "name", "message"),
    [
        ("--plot", "plot.xyz", "give a file ending in .png, .pdf, .svg"),
        ("--json", "/proc/x.json", "is not writable"),
    ],
)
def test_a_results_path_that_would_fail_after_the_run_is_refused_first(
    small_traces: Path, tmp_path: Path, flag: str, name: str, message: str
) -> None:
    """Found by the user-eye check: a matplotlib traceback (--plot x.xyz) and an OSError
    (--json /proc/x.json) after the whole backtest had run."""
    path = name if name.startswith("/") else str(tmp_path / name)
    args = ["backtest", "--traces", str(small_traces), "--policy", "spothedge", "--repeats", "1"]
    result = CliRunner().invoke(main, [*args, flag, path])
    assert result.exit_code == 2, result.output
    assert message in result.output and "window" not in result.output


@pytest.mark.parametrize(
    "args",
    [["--repeats", "99999999999999999999"], ["--target", "100000"],
     ["--overprovision", "99999999999999999999"], ["--cold-start", "99999999999999999999"],
     ["--warning", "-1"]],
)  # fmt: skip
def test_backtest_numbers_have_ranges(small_traces: Path, args: list[str]) -> None:
    """Found by the user-eye check: --repeats 10**20 grew memory without output, --target
    100000 ran for minutes; each is now a usage error naming the flag and its range."""
    code, text = run("--traces", str(small_traces), *args)
    assert code == 2 and args[0] in text and "range" in text
