"""`envs` and `secrets`: environment variables for the replicas, by name.

A `null` value means "take it from the environment where the reconciler runs" (SkyPilot's
`--env NAME` / `--secret NAME`), so tokens such as HF_TOKEN stay out of the file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from reconciler.errors import SpecError
from reconciler.spec.errors import Problems
from reconciler.spec.fields import check_name, describe, join
from reconciler.spec.model import ServiceSpec

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ENV_RULE = "use letters, digits and '_', not starting with a digit"
# Linux refuses an exec whose single argument or environment string (NAME=value) exceeds
# MAX_ARG_STRLEN, 32 pages = 128 KiB (include/uapi/linux/binfmts.h), with E2BIG; the sandbox's
# provisioners and the clouds' boot scripts pass env values that way.
MAX_ENV_VALUE_BYTES = 128 * 1024 - 4096  # room for the name, '=' and the rest of the line


@dataclass
class Envs:
    values: dict[str, str] = field(default_factory=dict)
    from_environment: set[str] = field(default_factory=set)


def parse_envs(value: object, path: str, problems: Problems, into: Envs) -> set[str]:
    """Add the variables of `value` (at `path`) to `into`; return the names it declared."""
    if value is None:
        return set()
    if path == "secrets" and isinstance(value, list):
        problems.add(
            path,
            "a list names secrets in SkyPilot's managed secret store, which is not read; "
            "write a mapping instead, `secrets: {NAME: null}`, and set NAME in the "
            "environment of hedgeform",
        )
        return set()
    if not isinstance(value, Mapping):
        problems.add(path, f"must be a mapping of NAME: value, got {describe(value)}")
        return set()
    names: set[str] = set()
    for name, raw in value.items():
        where = join(path, str(name))
        if not isinstance(name, str):
            problems.add(where, f"variable names must be strings, got {describe(name)}")
            continue
        if check_name(problems, where, name, ENV_NAME, ENV_RULE) is None:
            continue
        if name in into.values:
            problems.add(
                where, "already set in envs; a name may appear in envs or secrets, not both"
            )
            continue
        text = _scalar(raw)
        if text is None:
            problems.add(
                where,
                "must be a string, number, true/false or null (from the "
                f"environment), got {describe(raw)}",
            )
            continue
        if "\x00" in text:
            problems.add(where, "holds a NUL character, which no process environment can")
            continue
        if len(text.encode("utf-8")) > MAX_ENV_VALUE_BYTES:
            problems.add(
                where,
                f"longer than {MAX_ENV_VALUE_BYTES // 1024} KiB, the most Linux passes in one "
                "environment string (MAX_ARG_STRLEN); put large content in a file",
            )
            continue
        into.values[name] = text
        if raw is None:
            into.from_environment.add(name)
        names.add(name)
    return names


def _scalar(raw: object) -> str | None:
    if raw is None:
        return ""
    if isinstance(raw, bool):
        return "true" if raw else "false"  # as written in YAML, not Python's True
    if isinstance(raw, str | int | float):
        return str(raw)
    return None


def missing_from_environment(spec: ServiceSpec, environ: Mapping[str, str]) -> list[str]:
    """The names the spec declares `null` (in envs or secrets) that `environ` does not set,
    sorted. Set to an empty string counts as set, as in SkyPilot, which refuses only an
    unset one ("Environment variable X is None")."""
    return sorted(name for name in spec.envs_from_environment if name not in environ)


def require_environment(spec: ServiceSpec, environ: Mapping[str, str], spec_file: str) -> None:
    """Refuse, in one line naming them, `null` names the environment does not set: before
    anything is planned, on every cloud (a replica would start without them). `spec_file`
    is the file as the user knows it (`services/llama.yaml`)."""
    missing = missing_from_environment(spec, environ)
    if not missing:
        return
    sections = sorted({"secrets" if n in spec.secret_names else "envs" for n in missing})
    where = f"{spec_file} ({' and '.join(sections)})"
    exports = " ".join(f"{name}=..." for name in missing)
    if len(missing) == 1:
        message = (
            f"{missing[0]} is declared null in {where} and is not set in the environment: "
            f"export {exports} or give it a value"
        )
    else:
        message = (
            f"{', '.join(missing)} are declared null in {where} and are not set in the "
            f"environment: export {exports} or give them values"
        )
    raise SpecError([message])
