"""SpecError, and the collector that lets the loader report every problem in a file at once."""

from __future__ import annotations


class Problems:
    """Problems found so far, each `field.path: what is wrong and what is allowed`."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.lines.append(f"{path}: {message}")

    def __bool__(self) -> bool:
        return bool(self.lines)
