"""Typed Terraform failures.

Callers branch on the type (a `LockError` is retried later, an `ApplyError` may be a capacity
error to classify) and show `str(err)` to people, so it stays one line-ish and names the stack:
`stack local-1: apply failed: Error: ...`. The full cleaned output is kept in `detail` for logs.
"""

from __future__ import annotations

import re
from typing import TypeVar

from reconciler.errors import TerraformError

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
# Terraform 1.x frames diagnostics with box-drawing characters when colour is on.
_FRAME = re.compile(r"^[│╷╵] ?")
# local-exec's message when its command could not be started, before any output.
_COMMAND_FAILED = re.compile(r"Error running command '.*?': (.+?)\.?$")
_API_ERROR = re.compile(r"api error (\S+: .+?)(?:\s+with module\.|$)")


def clean_output(text: str) -> str:
    """Terraform output without ANSI escapes or diagnostic frames."""
    lines = (_FRAME.sub("", _ANSI.sub("", line)).rstrip() for line in text.splitlines())
    return "\n".join(lines).strip()


def error_summary(text: str) -> str:
    """The `Error: ...` headlines of Terraform's output (deduplicated), else its last line.

    A failed provisioner's headline says only "local-exec provisioner error"; the reason is in
    the command's `Output:` further down the block (wrapped by Terraform), so it is appended.
    """
    lines = clean_output(text).splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("Error: ")]
    if not starts:
        rest = [line for line in lines if line]
        return rest[-1] if rest else "no output"
    summaries: list[str] = []
    for n, start in enumerate(starts):
        block = lines[start : starts[n + 1] if n + 1 < len(starts) else len(lines)]
        headline = block[0]
        joined = " ".join(" ".join(block[1:]).split())
        if "Output: " in joined:
            headline += " (" + joined.split("Output: ", 1)[1][:240].strip() + ")"
        elif (failed := _COMMAND_FAILED.search(joined)) is not None:
            # the command never ran (fork/exec: argument list too long, no such file)
            headline += " (" + failed.group(1)[:240].strip() + ")"
        elif "api error" not in headline and (api := _API_ERROR.search(joined)) is not None:
            # an AWS provider error: its code and message follow on the next lines, and the
            # headline alone ("creating VPC Security Group Rule") does not say what failed
            headline += " (" + api.group(1)[:240].strip() + ")"
        summaries.append(headline)
    return "; ".join(dict.fromkeys(summaries))


LOCK_MARKER = "Error acquiring the state lock"


E = TypeVar("E", bound=TerraformError)


def from_output(kind: type[E], stack: str, command: str, output: str) -> E:
    """A `kind` error for this stack and command from Terraform's raw output: the summary
    (error_summary) as its message, the cleaned output as its `detail`."""
    return kind(stack, command, error_summary(output), clean_output(output))
