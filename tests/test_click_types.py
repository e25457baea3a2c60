"""The shared command-line number types: a value that is not a number at all reads as what
the option takes (`'abc' is not a whole number of lines (0 to 100000)`), not as click's type
name (`'abc' is not a valid integer range`)."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from reconciler.cli import main
from reconciler.click_types import Finite, Whole


def _run(*args: str, root: Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, [*args, "--root", str(root)])
    return result.exit_code, result.stderr


def test_logs_tail_that_is_not_a_number_reads_naturally(tmp_path: Path) -> None:
    code, err = _run("logs", "svc", "--tail", "abc", root=tmp_path)
    assert code == 2, err
    assert "Invalid value for '--tail': 'abc' is not a whole number of lines (0 to 100000)" in err
    assert "integer range" not in err and "Traceback" not in err


def test_status_interval_that_is_not_a_number_reads_naturally(tmp_path: Path) -> None:
    code, err = _run("status", "svc", "--watch", "--interval", "abc", root=tmp_path)
    assert code == 2, err
    assert "Invalid value for '--interval': 'abc' is not a number of seconds" in err
    assert "valid seconds" not in err


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        (Whole(0, unit="lines"), "x", "'x' is not a whole number of lines (0 or more)"),
        (Whole(1, 10), "1.5", "'1.5' is not a whole number (1 to 10)"),
        (Whole(max=5, unit="lines"), "", "'' is not a whole number of lines (at most 5)"),
        (Finite(0, 1), "abc", "'abc' is not a number"),
        (Finite(0), "nan", "must be a finite number, got 'nan'"),
    ],
)
def test_messages(kind: click.ParamType, value: str, message: str) -> None:
    with pytest.raises(click.BadParameter) as err:
        kind.convert(value, None, None)
    assert err.value.message == message


def test_numbers_still_convert_and_ranges_still_hold() -> None:
    assert Whole(0, 10, unit="lines").convert("7", None, None) == 7
    assert Whole(0, 10).convert(3, None, None) == 3
    assert Finite(0.5, 2).convert("1.5", None, None) == 1.5
    with pytest.raises(click.BadParameter, match="is out of range: a whole number"):
        Whole(0, 10, unit="lines").convert("11", None, None)


@pytest.mark.parametrize(
    "args",
    [
        ["backtest", "--repeats", "abc"],
        [
            "sandbox",
            "market",
            "set-capacity",
            "--state-dir",
            "x",
            "--zone",
            "z",
            "--capacity",
            "1.5",
        ],
        ["profile", "--seed", "x"],
        ["status", "svc", "--events", "x"],
    ],
)
def test_every_whole_number_option_says_what_it_takes(args: list[str]) -> None:
    """Not click's `'abc' is not a valid integer range` in any command."""
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "is not a whole number" in result.output and "valid integer" not in result.output
