"""Render each stack's `terraform.tfvars.json` from the Jinja templates in `templates/`.

StrictUndefined makes a missing value an error instead of an empty string, and every value
passes through `tojson`, so no input (a zone name, a command, an env value) can break the
JSON or smuggle in a key. Secrets never reach a template: they travel as environment
variables to the process that needs them (DESIGN §4; docs/security.md).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from reconciler.errors import RenderError
from reconciler.files import write_atomic

TEMPLATES_DIR = Path(__file__).resolve().parents[1] / "templates"


@cache
def _environment(directory: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(directory)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
    # NaN and Infinity are not JSON (Terraform would refuse the file): the last line of
    # defence after every number's own range check.
    env.policies["json.dumps_kwargs"] = {"sort_keys": True, "allow_nan": False}
    return env


def render_tfvars(
    template: str, context: Mapping[str, Any], directory: Path = TEMPLATES_DIR
) -> dict[str, Any]:
    """Render `template` with `context`; returns the parsed variables (always a JSON object)."""
    try:
        text = _environment(directory).get_template(template).render(**context)
    except jinja2.TemplateNotFound as exc:
        raise RenderError(f"no template {exc.name} in {directory}") from exc
    except jinja2.UndefinedError as exc:
        raise RenderError(f"{template}: {exc.message}") from exc
    except ValueError as exc:  # json.dumps: a NaN or an infinity
        raise RenderError(f"{template}: a value is not a finite number ({exc})") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RenderError(
            f"{template} rendered invalid JSON at line {exc.lineno}: {exc.msg}"
        ) from exc
    if not isinstance(data, dict):
        raise RenderError(f"{template} must render a JSON object")
    return data


def write_tfvars(stack_dir: Path, variables: Mapping[str, Any]) -> Path:
    """Write the stack's `terraform.tfvars.json` atomically (temp file, fsync, rename)."""
    stack_dir.mkdir(parents=True, exist_ok=True)
    path = stack_dir / "terraform.tfvars.json"
    write_atomic(path, json.dumps(variables, indent=2, sort_keys=True) + "\n")
    return path
