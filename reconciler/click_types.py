"""Command-line number types every command shares.

click's `FloatRange` lets NaN through (every comparison with it is false) and, without an
upper bound, infinity; a rate, a share or a duration of either then reaches the code as a
number and fails there with a traceback. `Finite` refuses both in one line, as a usage error
(exit 2).

A value that is not a number at all is said as what the option takes (`'abc' is not a number
of seconds`, `'abc' is not a whole number of lines (0 to 100000)`): click's own message
names its type instead (`is not a valid integer range`, `is not a valid seconds`).
"""

from __future__ import annotations

import math
from typing import Any

import click


class Finite(click.FloatRange):
    """A finite number in click's `FloatRange` bounds. A subclass named after its unit
    (`name = "seconds"`) is said as "a number of seconds"."""

    name = "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not _parses(float, value):
            noun = "a number" if self.name == "number" else f"a number of {self.name}"
            self.fail(f"{value!r} is not {noun}", param, ctx)
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"must be a finite number, got {value!r}", param, ctx)
        return number


class Whole(click.IntRange):
    """A whole number in click's `IntRange` bounds; `unit` names what it counts (in the
    message and the help's metavar: `--tail LINES`)."""

    def __init__(
        self, min: int | None = None, max: int | None = None, *, unit: str = "", **kw: Any
    ) -> None:
        super().__init__(min, max, **kw)
        self.unit = unit
        if unit:
            self.name = unit

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        of = f" of {self.unit}" if self.unit else ""
        if not _parses(int, value):
            self.fail(f"{value!r} is not a whole number{of} ({self._bounds()})", param, ctx)
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter:
            self.fail(f"{value} is out of range: a whole number{of} ({self._bounds()})", param, ctx)

    def _bounds(self) -> str:
        if self.min is not None and self.max is not None:
            return f"{self.min} to {self.max}"
        if self.min is not None:
            return f"{self.min} or more"
        return f"at most {self.max}" if self.max is not None else "any"


def _parses(kind: type[int] | type[float], value: Any) -> bool:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return True
    try:
        kind(value)
    except (TypeError, ValueError):
        return False
    return True
