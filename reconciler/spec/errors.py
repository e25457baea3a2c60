"""SpecError, and the collector that lets the loader report every problem in a file at once."""

from __future__ import annotations

from collections.abc import Iterable


class SpecError(ValueError):
    """A service file that cannot be used; one problem per line, never a traceback.

    `problems` holds the lines without the file name (each starts with the field path); the
    message prefixes each with `source` so it reads like compiler output.
    """

    def __init__(self, problems: Iterable[str], *, source: str = "") -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__("\n".join(prefix + problem for problem in self.problems))


class Problems:
    """Problems found so far, each `field.path: what is wrong and what is allowed`."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.lines.append(f"{path}: {message}")

    def __bool__(self) -> bool:
        return bool(self.lines)
