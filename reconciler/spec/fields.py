"""Reading raw YAML values into typed ones, noting each problem instead of raising.

Readers return None for a missing or bad value (after recording why), so parsing carries on
and a file's mistakes are all reported together.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping, Sequence
from typing import TypeGuard

from reconciler.spec.errors import Problems
from reconciler.spec.schema import unknown_field_message

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_:+/-]+")


# An accelerator's name as SkyPilot writes it (`L4`, `A100-80GB`); it becomes a tag value and a
# catalog key, never a path.
ACCELERATOR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
ACCELERATOR_RULE = "use letters, digits, '_', '.' and '-' (e.g. L4, A100-80GB)"


def join(path: str, key: str | int) -> str:
    """`resources` + `any_of` -> `resources.any_of`; list indexes as `[0]`."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    shown = key if _PLAIN_KEY.fullmatch(key) else repr(key)
    return f"{path}.{shown}" if path else shown


def describe(value: object) -> str:
    """A short, single-line description of a YAML value for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{'true' if value else 'false'} (a boolean)"
    if isinstance(value, int):
        return f"{value} (an integer)"
    if isinstance(value, float):
        return f"{value} (a number)"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"{shown!r} (a string)"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, set | frozenset):
        return "a set"
    return f"a {type(value).__name__}"


def is_int(value: object) -> TypeGuard[int]:
    """YAML `true` is a Python int; a count never is."""
    return isinstance(value, int) and not isinstance(value, bool)


class Section:
    """One mapping of the file, at `path`, read field by field."""

    def __init__(self, data: Mapping[str, object], path: str, problems: Problems) -> None:
        self.data = data
        self.path = path
        self.problems = problems
        self.invalid: set[str] = set()  # fields found bad, so cross-field rules skip them

    def at(self, key: str) -> str:
        return join(self.path, key)

    def has(self, key: str) -> bool:
        """Present and not null (`key:` with no value means "use the default")."""
        return self.data.get(key) is not None

    def get(self, key: str) -> object:
        return self.data.get(key)

    def bad(self, key: str, message: str) -> None:
        self.invalid.add(key)
        self.problems.add(self.at(key), message)

    def valid(self, *keys: str) -> bool:
        return not self.invalid.intersection(keys)

    def integer(self, key: str, *, minimum: int, maximum: int | None = None) -> int | None:
        value = self.data.get(key)
        if value is None:
            return None
        rule = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
        if not is_int(value):
            self.bad(key, f"must be an integer {rule}, got {describe(value)}")
            return None
        if value < minimum or (maximum is not None and value > maximum):
            shown = value if abs(value) < 10**20 else "an integer of more than 20 digits"
            self.bad(key, f"must be {rule}, got {shown}")
            return None
        return value

    def positive_number(self, key: str, minimum: float, maximum: float) -> float | None:
        """A number from `minimum` (> 0) to `maximum`, or None when the key is absent."""
        value = self.data.get(key)
        if value is None:
            return None
        rule = f"a number from {minimum:g} to {maximum:g}"
        if not isinstance(value, int | float) or isinstance(value, bool):
            self.bad(key, f"must be {rule}, got {describe(value)}")
            return None
        if not math.isfinite(value) or not minimum <= value <= maximum:
            shown = (
                f"{value:g}"
                if isinstance(value, float) or abs(value) < 10**20
                else "an integer of more than 20 digits"
            )
            self.bad(key, f"must be {rule}, got {shown}")
            return None
        return float(value)

    def boolean(self, key: str) -> bool | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, bool):
            self.bad(key, f"must be true or false, got {describe(value)}")
            return None
        return value

    def string(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            self.bad(key, f"must be a string, got {describe(value)}")
            return None
        return value

    def choice(self, key: str, choices: Sequence[str]) -> str | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or value not in choices:
            self.bad(key, choice_message(value, choices))
            return None
        return value


def choice_message(value: object, choices: Sequence[str]) -> str:
    """`must be one of a, b; got 'x' (a string)`, plus a did-you-mean when one is close."""
    message = f"must be one of {', '.join(choices)}; got {describe(value)}"
    close = difflib.get_close_matches(value, choices, n=1) if isinstance(value, str) else []
    return message + (f"; did you mean '{close[0]}'?" if close else "")


def open_section(
    value: object, path: str, problems: Problems, allowed: tuple[str, ...]
) -> Section | None:
    """Check `value` is a mapping with only `allowed` string keys; null reads as empty."""
    if value is None:
        return Section({}, path, problems)
    if not isinstance(value, Mapping):
        problems.add(path or "(document)", f"must be a mapping, got {describe(value)}")
        return None
    data: dict[str, object] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            problems.add(join(path, str(key)), f"field names must be strings, got {describe(key)}")
        elif key not in allowed:
            problems.add(join(path, key), unknown_field_message(key, path, allowed))
        else:
            data[key] = item
    return Section(data, path, problems)


def check_name(
    problems: Problems, path: str, value: str, pattern: re.Pattern[str], rule: str
) -> str | None:
    """Names that become paths, resource names or shell arguments must match `pattern`."""
    if pattern.fullmatch(value):
        return value
    problems.add(path, f"{describe(value)} is not a valid name; {rule}")
    return None
