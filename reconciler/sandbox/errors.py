"""Errors the sandbox reports to the user: messages are one line, like a cloud API's."""

from __future__ import annotations


class SandboxError(Exception):
    """Anything the user must fix or know about; the CLI prints it and exits with code 1."""

    exit_code = 1


class CapacityError(SandboxError):
    """A spot launch into a zone with no spare capacity; exit code 3 so callers can classify it
    as a capacity failure (the placer marks the zone preempted) rather than a config error."""

    exit_code = 3
