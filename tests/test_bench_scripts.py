"""The two-type benchmark scripts' command lines (bench/mixed_backtest.py,
bench/mixed_paired.py): a bad --repeats or --out is argparse's one line, exit 2, before any
trace set is built, and --help says what --out holds and what in it is replaced."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def bench(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("script", "repeats", "least"),
    [("mixed_paired.py", "0", 2), ("mixed_paired.py", "-1", 2), ("mixed_paired.py", "1", 2),
     ("mixed_backtest.py", "0", 1), ("mixed_backtest.py", "-1", 1)],
)  # fmt: skip
def test_too_few_repeats_are_refused(script: str, repeats: str, least: int) -> None:
    """Before: mixed_paired.py --repeats 0 or -1 was a ZeroDivisionError traceback after
    building the trace sets, --repeats 1 printed `± nan`."""
    done = bench(script, "--repeats", repeats, "--out", "/nonexistent/never-built")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines()[-1] == (
        f"{script}: error: argument --repeats: must be at least {least}, got {repeats}"
    )


@pytest.mark.parametrize("script", ["mixed_paired.py", "mixed_backtest.py"])
def test_an_out_that_cannot_be_created_is_one_line(tmp_path: Path, script: str) -> None:
    """Before: a FileNotFoundError traceback (`--out /proc/x/y`)."""
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "out"  # under a regular file: no one can create it
    done = bench(script, "--out", str(out))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"{script}: error: --out {out}: cannot create it: Not a directory\n"


@pytest.mark.parametrize("script", ["mixed_paired.py", "mixed_backtest.py"])
def test_the_help_says_what_out_holds_and_replaces(script: str) -> None:
    """Before: --repeats and --out had no help; --out DIR deleted DIR/set-A and DIR/set-B
    and overwrote DIR/types.yaml without a word."""
    done = bench(script, "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    assert "set-A/, set-B/ and types.yaml in it are replaced (deleted and written again)" in text
    assert "--repeats N Windows per trace set and cell (at least" in text
