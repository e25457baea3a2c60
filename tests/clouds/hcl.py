"""Read Terraform files with python-hcl2 and check JSON values against declared variable types.

python-hcl2 >= 7 keeps quotes and block markers unless told otherwise; `load_hcl` asks for the
classic shape (plain strings, no markers) so the tests read the same on every version.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import hcl2

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MODULES = PROJECT_ROOT / "terraform" / "modules"
CLOUD_MODULES = ("aws", "gcp", "azure", "front")


def load_hcl(path: Path) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if "serialization_options" in inspect.signature(hcl2.load).parameters:
        from hcl2.utils import SerializationOptions

        kwargs["serialization_options"] = SerializationOptions(
            strip_string_quotes=True, explicit_blocks=False, with_comments=False
        )
    with path.open() as fh:
        data: dict[str, Any] = hcl2.load(fh, **kwargs)
    return data


def variables(module: str) -> dict[str, dict[str, Any]]:
    """name -> attributes (type, description, default, validation) of a module's variables."""
    out: dict[str, dict[str, Any]] = {}
    for block in load_hcl(MODULES / module / "variables.tf").get("variable", []):
        for name, attrs in block.items():
            out[name] = attrs
    return out


def unwrap(expr: str) -> str:
    """`${map(string)}` -> `map(string)`."""
    expr = expr.strip()
    if expr.startswith("${") and expr.endswith("}"):
        expr = expr[2:-1]
    return expr.strip()


# ---------------------------------------------------------------- type expressions

TypeExpr = tuple[Any, ...]  # ("string",), ("list", T), ("object", {name: T}), ("tuple", [T])

_TOKEN = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*|[(){}\[\],=])")


def parse_type(text: str) -> TypeExpr:
    """Parse a Terraform type constraint (string, list(...), map(...), object({...}), ...)."""
    tokens = _TOKEN.findall(unwrap(text))
    expr, pos = _parse(tokens, 0)
    if pos != len(tokens):
        raise ValueError(f"trailing tokens in type {text!r}")
    return expr


def _parse(tokens: list[str], pos: int) -> tuple[TypeExpr, int]:
    word = tokens[pos]
    pos += 1
    if word in ("string", "number", "bool", "any"):
        return (word,), pos
    if word in ("list", "set", "map"):
        assert tokens[pos] == "("
        inner, pos = _parse(tokens, pos + 1)
        assert tokens[pos] == ")"
        return (word, inner), pos + 1
    if word == "object":
        assert tokens[pos : pos + 2] == ["(", "{"]
        pos += 2
        attrs: dict[str, TypeExpr] = {}
        while tokens[pos] != "}":
            name = tokens[pos]
            assert tokens[pos + 1] == "="
            attrs[name], pos = _parse(tokens, pos + 2)
            if tokens[pos] == ",":
                pos += 1
        assert tokens[pos + 1] == ")"
        return ("object", attrs), pos + 2
    if word == "tuple":
        assert tokens[pos : pos + 2] == ["(", "["]
        pos += 2
        items: list[TypeExpr] = []
        while tokens[pos] != "]":
            item, pos = _parse(tokens, pos)
            items.append(item)
            if tokens[pos] == ",":
                pos += 1
        assert tokens[pos + 1] == ")"
        return ("tuple", items), pos + 2
    raise ValueError(f"unknown type keyword {word!r}")


def type_errors(value: Any, expr: TypeExpr, where: str = "") -> list[str]:
    """Where a JSON value does not conform to a Terraform type (strictly: no conversions)."""
    kind = expr[0]
    here = where or "value"
    if kind == "any" or value is None:  # Terraform 1.0 accepts null for a variable of any type
        return []
    if kind == "string":
        return [] if isinstance(value, str) else [f"{here}: want string, got {value!r}"]
    if kind == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return [] if ok else [f"{here}: want number, got {value!r}"]
    if kind == "bool":
        return [] if isinstance(value, bool) else [f"{here}: want bool, got {value!r}"]
    if kind in ("list", "set"):
        if not isinstance(value, list):
            return [f"{here}: want {kind}, got {value!r}"]
        return [e for i, v in enumerate(value) for e in type_errors(v, expr[1], f"{here}[{i}]")]
    if kind == "map":
        if not isinstance(value, dict):
            return [f"{here}: want map, got {value!r}"]
        return [e for k, v in value.items() for e in type_errors(v, expr[1], f"{here}.{k}")]
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{here}: want object, got {value!r}"]
        attrs: dict[str, TypeExpr] = expr[1]
        errors = [f"{here}: missing attribute {a}" for a in attrs if a not in value]
        errors += [f"{here}: unexpected attribute {a}" for a in value if a not in attrs]
        for a, t in attrs.items():
            if a in value:
                errors += type_errors(value[a], t, f"{here}.{a}")
        return errors
    if kind == "tuple":
        items: list[TypeExpr] = expr[1]
        if not isinstance(value, list) or len(value) != len(items):
            return [f"{here}: want tuple of {len(items)}, got {value!r}"]
        pairs = enumerate(zip(value, items, strict=True))
        return [e for i, (v, t) in pairs for e in type_errors(v, t, f"{here}[{i}]")]
    raise ValueError(f"unknown type {expr!r}")
