"""The evaluation matrix (`hedgeform backtest --matrix`, issue 14 item 2): its grid, a tiny run
end to end, resuming after a kill, the maf downtime split and its usage errors."""

from __future__ import annotations

import json
from dataclasses import replace
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result

from reconciler.backtest import matrix
from reconciler.backtest.matrix import Cell, cell_by_id, downtime_split, grid, source_fingerprint
from reconciler.backtest.matrix_report import (
    BEGIN,
    END,
    format_by_factor,
    format_goals,
    versus_baseline,
)
from reconciler.backtest.runner import BacktestConfig, backtest_spec, demand
from reconciler.backtest.simulator import simulate_window
from reconciler.backtest.workload import Workload
from reconciler.cli import main
from reconciler.policy import POLICIES

DOCS = Path(__file__).resolve().parents[2] / "docs"
CONSTANT = "w120-perfect-c120-t3-constant"
MAF = "w30-realistic-c120-t1-maf"
ROW_KEYS = {
    "cost_ratio", "availability_pct", "cost_pct", "cost_units", "preemptions", "spot_launches",
    "od_launches", "wall_s",
}  # fmt: skip
SPLIT_KEYS = {"capacity_down_pct", "scaleup_lag_pct", "served_pct"}


def write_trace(directory: Path, zone: str, data: list[int]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{zone}_v100_1.json").write_text(
        json.dumps({"metadata": {"gap_seconds": 300}, "data": data})
    )


@pytest.fixture
def inputs(tmp_path: Path) -> list[str]:
    """Two tiny trace sets and a stepping workload: the flags every run here shares."""
    a, b = tmp_path / "TINY", tmp_path / "SMALL"
    write_trace(a, "x-1a", [2, 2, 0, 0, 2, 2, 2, 1, 2, 2] * 4)
    write_trace(a, "y-1a", [2] * 40)
    write_trace(b, "a-1a", [3, 1, 0, 2, 3, 3] * 6)
    write_trace(b, "b-1a", [1, 2, 2, 0, 1, 1] * 6)
    maf = tmp_path / "maf.csv"
    maf.write_text(
        "minute,requests\n" + "".join(f"{i},{60 * (2 + i // 20 % 3)}\n" for i in range(200))
    )
    return ["--traces", str(a), str(b), "--workload-file", str(maf), "--repeats", "1"]


def run(*args: str) -> Result:
    return CliRunner().invoke(main, ["backtest", "--matrix", *args])


# -- the grid ------------------------------------------------------------------------------------


def test_the_grid_is_exactly_the_documented_one() -> None:
    expected = {
        Cell(w, n, c, t, load)
        for w, c, t, load in product((0, 30, 120), (120, 600), (1, 3, 8), ("constant", "maf"))
        for n in (("none",) if w == 0 else ("perfect", "realistic"))
    }
    cells = grid()
    assert len(cells) == len(expected) == 60
    assert set(cells) == expected
    assert len({c.id for c in cells}) == 60
    assert cells[0].id == "w0-none-c120-t1-constant"
    # docs/evaluation.md states the same grid in its prose (outside the generated part).
    prose = (DOCS / "evaluation.md").read_text().split(BEGIN)[0]
    assert (
        "warning {0, 30, 120} s × notice model {perfect, realistic} (warning 0 has one: no "
        "notices) × cold start {120, 600} s × target {1, 3, 8} × workload {constant, maf}: "
        "60 cells" in " ".join(prose.split())
    )


def test_a_cell_runs_with_its_own_settings() -> None:
    cfg = Cell(30, "realistic", 600, 8, "maf").config(matrix.MatrixSettings(repeats=3, seed=7))
    assert (cfg.warning_s, cfg.notice_model, cfg.cold_start_s, cfg.target, cfg.workload) == (
        30, "realistic", 600, 8, "maf",
    )  # fmt: skip
    assert (cfg.repeats, cfg.seed, cfg.notices.lead_jitter_s) == (3, 7, 15.0)
    none = Cell(0, "none", 120, 1, "constant").config(matrix.MatrixSettings())
    assert (none.notice_model, none.warning_s, none.notices.realistic) == ("perfect", 0, False)


# -- a tiny matrix end to end --------------------------------------------------------------------


def test_a_tiny_matrix_writes_the_documented_json_markdown_and_plot(
    inputs: list[str], tmp_path: Path
) -> None:
    out, md, png = tmp_path / "m.json", tmp_path / "m.md", tmp_path / "m.png"
    result = run(*inputs, "--cell", MAF, "--cell", CONSTANT, "--jobs", "2",
                 "--json", str(out), "--report", str(md), "--plot", str(png))  # fmt: skip
    assert result.exit_code == 0, result.output
    # A progress line per finished cell on stderr, in the order they finished.
    progress = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert sorted(line.split()[1] for line in progress) == [f"{CONSTANT}:", f"{MAF}:"]
    assert [line.split()[0] for line in progress] == ["[1/2]", "[2/2]"]

    data = json.loads(out.read_text())
    assert set(data) == {
        "format", "settings", "grid", "traces", "policies", "spans", "source", "inputs",
        "runs", "cells",
    }  # fmt: skip
    assert data["format"] == "hedgeform-evaluation/1"
    assert data["settings"]["repeats"] == 1 and data["settings"]["seed"] == 0
    assert data["policies"] == [
        "spothedge", "hedgeform", *[p for p in POLICIES if p not in ("spothedge", "hedgeform")],
        "optimal",
    ]  # fmt: skip
    assert list(data["cells"]) == [CONSTANT, MAF]  # grid order, not finishing order
    assert data["runs"][0]["computed"] == 2 and data["runs"][0]["complete"] is True
    for cell_id, rec in data["cells"].items():
        assert rec["cell"]["workload"] in cell_id
        assert set(rec["traces"]) == {"TINY", "SMALL"}
        for rows in rec["traces"].values():
            assert list(rows) == data["policies"]
            maf = rec["cell"]["workload"] == "maf"
            for row in rows.values():
                assert set(row) == ROW_KEYS | (SPLIT_KEYS if maf else set())
            assert rows["optimal"]["cost_ratio"] == 1.0
            assert rows["optimal"]["availability_pct"] == 100.0  # under maf: ready >= demand
            assert rows["ondemand"]["cost_ratio"] > 1.0

    text = md.read_text()
    assert text.count(BEGIN) == text.count(END) == 1
    for heading in (
        "### Pareto summary vs spothedge",
        "#### constant workload, perfect notices: cost ÷ optimal / availability %",
        "#### maf workload, realistic notices: cost ÷ optimal / availability %",
        "#### maf workload, realistic notices: capacity downtime % / scale-up lag % of scored",
    ):
        assert heading in text, heading
    assert "**hedgeform vs spothedge**: dominates" in text and "of 4** cell/traces" in text
    assert f"| {CONSTANT} | " in text  # the per-cell dominance table
    assert "hedgeform vs spothedge by factor" in text and "| target 3 | " in text
    assert "![cost ÷ optimal vs availability](m.png)" in text
    assert "2 of 60 cells here" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_report_keeps_the_prose_around_its_generated_part(
    inputs: list[str], tmp_path: Path
) -> None:
    md = tmp_path / "m.md"
    md.write_text(f"# Mine\n\nhand-written\n\n{BEGIN}\nold tables\n{END}\n\n## After\nkept\n")
    result = run(*inputs, "--cell", CONSTANT, "--jobs", "1",
                 "--json", str(tmp_path / "m.json"), "--report", str(md))  # fmt: skip
    assert result.exit_code == 0, result.output
    text = md.read_text()
    assert text.startswith("# Mine\n\nhand-written\n\n" + BEGIN)
    assert text.endswith(END + "\n\n## After\nkept\n")
    assert "old tables" not in text and "### Pareto summary vs spothedge" in text


# -- the Pareto summary -------------------------------------------------------------------------


def fake_results(rows: dict[str, list[tuple[float, float]]]) -> dict[str, Any]:
    """Results with one trace per cell: policy -> [(availability %, cost units) per cell]."""
    cells = grid()[: len(next(iter(rows.values())))]
    return {
        "policies": list(rows),
        "cells": {
            c.id: {
                "cell": {**c.__dict__},
                "traces": {
                    "T": {
                        p: {"availability_pct": v[i][0], "cost_units": v[i][1], "cost_ratio": 1.0}
                        for p, v in rows.items()
                    }
                },
            }
            for i, c in enumerate(cells)
        },
    }


def test_dominance_is_availability_at_least_and_cost_at_most_spothedge() -> None:
    data = fake_results({
        "spothedge": [(99.0, 100.0), (99.0, 100.0), (99.0, 100.0), (99.0, 100.0)],
        "hedgeform": [(99.0, 100.0), (99.5, 99.0), (98.7, 90.0), (99.9, 100.5)],
    })  # fmt: skip
    v = versus_baseline(data, "hedgeform")
    assert (v.pairs, v.dominates, v.avail_ge, v.cost_le) == (4, 2, 3, 3)  # ties dominate
    assert v.worst_shortfall == pytest.approx(0.3)
    assert v.worst_where == f"{grid()[2].id} / T"
    never_below = versus_baseline(fake_results({
        "spothedge": [(99.0, 1.0)], "hedgeform": [(99.2, 2.0)],
    }), "hedgeform")  # fmt: skip
    assert never_below.worst_shortfall == pytest.approx(-0.2) and never_below.dominates == 0
    rows = format_by_factor(data)
    assert "| warning 0 s, none | 2/4 | 1/4 | +0.25 | -0.30 | -0.5 |" in rows


def test_the_goals_check_the_default_cell_and_dominance_where_notices_are_short() -> None:
    n = len(grid())
    base = [(99.0, 100.0)] * n
    mine = [(99.95, 100.0)] * n
    mine[1] = (98.8, 90.0)  # w0-none-c120-t3-constant: cheaper but 0.2 points less available
    lines = "\n".join(format_goals(fake_results({"spothedge": base, "hedgeform": mine})))
    assert "T 1.00 / 99.95 ✓" in lines  # the default cell meets 99.9 % at 1.10 x
    assert "no notices (warning 0 s): dominates spothedge in **2 of 3**" in lines
    assert "perfect notices: dominates spothedge in **3 of 3**" in lines
    assert "worst 0.20 points (w0-none-c120-t3-constant / T) ✗" in lines
    mine[grid().index(cell_by_id("w120-perfect-c120-t3-constant"))] = (99.85, 100.0)
    lines = "\n".join(format_goals(fake_results({"spothedge": base, "hedgeform": mine})))
    assert "T 1.00 / 99.85 ✗" in lines


# -- resuming ------------------------------------------------------------------------------------


def runs_of(path: Path) -> dict[str, int]:
    return {cid: rec["run"] for cid, rec in json.loads(path.read_text())["cells"].items()}


def test_resume_skips_finished_cells_and_recomputes_a_changed_one(
    inputs: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "m.json"
    args = [*inputs, "--cell", CONSTANT, "--cell", MAF, "--jobs", "1", "--json", str(out)]
    assert run(*args).exit_code == 0
    first = json.loads(out.read_text())

    # As after a kill -9 during the second cell: only the first was written.
    killed = {**first, "cells": {CONSTANT: first["cells"][CONSTANT]}}
    killed["runs"][0]["complete"] = False
    out.write_text(json.dumps(killed))
    result = run(*args, "--resume")
    assert result.exit_code == 0, result.output
    assert "1 of 2 cells reused, 1 to run" in result.stderr
    assert runs_of(out) == {CONSTANT: 0, MAF: 1}
    assert json.loads(out.read_text())["cells"][CONSTANT] == first["cells"][CONSTANT]

    # Nothing changed: nothing is recomputed.
    result = run(*args, "--resume")
    assert "2 of 2 cells reused, 0 to run" in result.stderr
    assert not any(line.startswith("[") for line in result.stderr.splitlines())
    assert runs_of(out) == {CONSTANT: 0, MAF: 1}

    # The policy or backtest source changed since MAF ran: it alone is recomputed.
    data = json.loads(out.read_text())
    data["cells"][MAF]["source"] = "0" * 16
    out.write_text(json.dumps(data))
    result = run(*args, "--resume")
    assert f"{MAF}: source changed since it ran; recomputing" in result.stderr
    assert runs_of(out) == {CONSTANT: 0, MAF: 3}

    # Another setting (here --repeats) changes every cell's fingerprint.
    result = run(*args, "--resume", "--repeats", "2")
    assert f"{CONSTANT}: settings changed since it ran; recomputing" in result.stderr
    assert runs_of(out) == {CONSTANT: 4, MAF: 4}
    assert [r["reused"] for r in json.loads(out.read_text())["runs"]] == [0, 1, 2, 1, 0]


def test_without_resume_a_run_starts_afresh(inputs: list[str], tmp_path: Path) -> None:
    out = tmp_path / "m.json"
    args = [*inputs, "--cell", CONSTANT, "--jobs", "1", "--json", str(out)]
    assert run(*args).exit_code == 0 and run(*args).exit_code == 0
    data = json.loads(out.read_text())
    assert len(data["runs"]) == 1 and runs_of(out) == {CONSTANT: 0}


def test_the_source_fingerprint_covers_policy_and_backtest_code_only(tmp_path: Path) -> None:
    root = tmp_path / "reconciler"
    files = ("policy/spothedge.py", "backtest/simulator.py", "backtest/matrix_report.py",
             "backtest/command.py", "traces.py", "spec/model.py", "engine/loop.py")  # fmt: skip
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"# {name}\n")
    before = source_fingerprint(root)
    for name in ("backtest/matrix_report.py", "backtest/command.py", "engine/loop.py"):
        (root / name).write_text("# presentation or elsewhere: the figures do not change\n")
        assert source_fingerprint(root) == before, name
    for name in ("policy/spothedge.py", "backtest/simulator.py", "traces.py", "spec/model.py"):
        (root / name).write_text("# changed\n")
        assert source_fingerprint(root) != before, name
        before = source_fingerprint(root)
    (root / "policy" / "new_rule.py").write_text("")
    assert source_fingerprint(root) != before
    assert len(matrix.source_files()) >= 10  # the real tree: policy/*.py and backtest/*.py


def test_a_file_that_is_not_a_matrix_is_not_resumed(inputs: list[str], tmp_path: Path) -> None:
    out = tmp_path / "m.json"
    out.write_text('{"traces": {}}')
    result = run(*inputs, "--cell", CONSTANT, "--json", str(out), "--resume")
    assert result.exit_code == 1
    assert "not an evaluation matrix file" in result.output and "Traceback" not in result.output


# -- the maf downtime split ----------------------------------------------------------------------


def test_the_downtime_split_separates_scale_up_lag_from_capacity() -> None:
    """Demand 1 replica, then 2 from tick 10; on-demand with a 120 s cold start. The autoscaler
    asks for 2 only after its 300 s upscale delay (tick 20): ticks 10-19 have ready = target
    = 1 < demand 2 (scale-up lag, 10). The replica launched at 20 is observed READY at 24 and
    counts from 25: ticks 20-24 have ready 1 < target 2 (capacity, 5). Scored: ticks 5-39."""
    cfg = BacktestConfig(target=1, cold_start_s=120)
    spec = backtest_spec(cfg, Workload(np.array([1.0]), 1.0, 4))
    qps = np.array([1.0] * 10 + [2.0] * 30)
    w = simulate_window(
        POLICIES["ondemand"], spec, ["a-1a"], np.zeros((1, 40), dtype=np.int64),
        cold_start_s=120, qps=qps,
    )  # fmt: skip
    w = replace(w, demand=demand(spec, qps))
    assert w.demand is not None and w.demand.tolist() == [1] * 10 + [2] * 30
    assert downtime_split(w) == (5, 10, 20)
    assert w.scored_ticks == 35 and w.available_ticks == 35 - 5  # availability: lag counts


def test_without_a_demand_there_is_no_lag() -> None:
    spec = backtest_spec(BacktestConfig(target=2), None)
    cap = np.array([[2] * 10 + [0] * 10 + [2] * 20])
    w = simulate_window(POLICIES["even_spread"], spec, ["a-1a"], cap, cold_start_s=120)
    capacity, lag, served = downtime_split(w)
    assert lag == 0 and capacity > 0
    assert (capacity, served) == (w.scored_ticks - w.available_ticks, w.available_ticks)


def test_the_split_adds_up_and_availability_is_what_capacity_leaves(
    inputs: list[str], tmp_path: Path
) -> None:
    """In every maf row: capacity + lag + served = 100 % of scored ticks, and the headline
    availability (ready >= the policy's own target) = 100 % - capacity."""
    out = tmp_path / "m.json"
    assert run(*inputs, "--cell", MAF, "--json", str(out)).exit_code == 0
    rows = [
        row
        for rec in json.loads(out.read_text())["cells"].values()
        for per_trace in rec["traces"].values()
        for row in per_trace.values()
    ]
    assert rows and any(row["scaleup_lag_pct"] > 0 for row in rows)
    for row in rows:
        total = row["capacity_down_pct"] + row["scaleup_lag_pct"] + row["served_pct"]
        assert total == pytest.approx(100.0, abs=1e-3)
        assert row["availability_pct"] == pytest.approx(100.0 - row["capacity_down_pct"], abs=1e-3)


# -- usage errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--policy", "spothedge"], "--matrix runs every policy"),
        (["--warning", "30"], "for --warning: is set per cell by --matrix"),
        (["--target", "3"], "for --target: is set per cell by --matrix"),
        (["--workload", "maf"], "for --workload: is set per cell by --matrix"),
        (["--notice-model", "realistic"], "for --notice-model: is set per cell by --matrix"),
        (["--cell", "w45-perfect-c120-t3-constant"], "no cell 'w45-perfect-c120-t3-constant'"),
        (["--jobs", "0"], "0 is out of range: a whole number (1 to 64)"),
    ],
)
def test_bad_matrix_flags_are_one_line_usage_errors(
    inputs: list[str], tmp_path: Path, args: list[str], message: str
) -> None:
    result = run(*inputs, "--json", str(tmp_path / "m.json"), *args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output and not (tmp_path / "m.json").exists()


def test_a_missing_workload_file_is_refused_before_any_cell_runs(
    inputs: list[str], tmp_path: Path
) -> None:
    args = [
        *inputs,
        "--workload-file",
        str(tmp_path / "nope.csv"),
        "--json",
        str(tmp_path / "m.json"),
    ]
    result = run(*args, "--cell", CONSTANT, "--cell", MAF)
    assert result.exit_code == 1 and "nope.csv: cannot read workload" in result.output
    assert "[1/2]" not in result.output and not (tmp_path / "m.json").exists()
    assert run(*args, "--cell", CONSTANT).exit_code == 0  # no maf cell: the file is not needed


def test_the_matrix_needs_a_results_file(inputs: list[str]) -> None:
    result = run(*inputs)
    assert result.exit_code == 2
    assert "for --json: --matrix writes its results there cell by cell" in result.output


@pytest.mark.parametrize("flag", [["--resume"], ["--jobs", "2"], ["--cell", CONSTANT],
                                  ["--report", "x.md"]])  # fmt: skip
def test_matrix_flags_need_the_matrix(inputs: list[str], flag: list[str]) -> None:
    result = CliRunner().invoke(main, ["backtest", *inputs, *flag])
    assert result.exit_code == 2 and "applies only with --matrix" in result.output


def test_make_evaluate_runs_the_matrix_into_docs() -> None:
    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    recipe = makefile.split("\nevaluate:", 1)[1].split("\n\n", 1)[0]
    assert "--matrix" in recipe and "--json docs/evaluation.json" in recipe
    assert "--report docs/evaluation.md" in recipe and "--plot docs/evaluation.png" in recipe
    assert recipe.lstrip().startswith("check-vars setup ##")


def test_the_recorded_matrix_is_complete_and_matches_the_grid() -> None:
    """docs/evaluation.json is the full run: every cell, every trace set, every policy."""
    data: dict[str, Any] = json.loads((DOCS / "evaluation.json").read_text())
    assert list(data["cells"]) == [c.id for c in grid()]
    assert data["settings"]["repeats"] == 10 and data["settings"]["seed"] == 0
    assert data["traces"] == ["AWS1", "AWS2", "AWS3", "GCP1"]
    for rec in data["cells"].values():
        assert list(rec["traces"]) == data["traces"]
        assert all(list(rows) == data["policies"] for rows in rec["traces"].values())


def _children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_a_killed_matrix_leaves_no_worker_behind(inputs: list[str], tmp_path: Path) -> None:
    """`kill -9` of the matrix used to leave its two workers asleep on their task queue for
    good (found by a user-eye check of issue 14); now Linux kills them with their parent."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "m.json"
    proc = subprocess.Popen(
        [sys.executable, "-c", "from reconciler.cli import main; main()", "backtest", "--matrix",
         *inputs,
         "--json", str(out), "--jobs", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    workers: set[int] = set()
    deadline = time.monotonic() + 120
    while len(workers) < 2 and time.monotonic() < deadline and proc.poll() is None:
        workers = _children(proc.pid)
        time.sleep(0.05)
    assert len(workers) >= 2, "the matrix never started its workers"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_running(w) for w in workers):
        time.sleep(0.1)
    left = [w for w in workers if _running(w)]
    for pid in left:  # never leave them behind, even when the test fails
        os.kill(pid, signal.SIGKILL)
    assert left == [], f"workers still running after their parent was killed: {left}"


def _running(pid: int) -> bool:
    """Alive and not a zombie (a dead child not yet reaped by init)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
