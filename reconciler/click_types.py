"""Command-line number types every command shares.

click's `FloatRange` lets NaN through (every comparison with it is false) and, without an
upper bound, infinity; a rate, a share or a duration of either then reaches the code as a
number and fails there with a traceback. `Finite` refuses both in one line, as a usage error
(exit 2).
"""

from __future__ import annotations

import math
from typing import Any

import click


class Finite(click.FloatRange):
    """A finite number in click's `FloatRange` bounds."""

    name = "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"must be a finite number, got {value!r}", param, ctx)
        return number
