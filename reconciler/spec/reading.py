"""Reading a YAML or JSON file someone else may have written, within bounds: the service file,
its sidecar (`services/<name>.hedgeform.yaml`) and a throughput profile (`hedgeform mix
--profile`, `hedgeform backtest --types`) all go through here.

A service file or a profile is a few kilobytes; these bounds only stop a file that would hang
or exhaust Hedgeform (docs/security.md): a huge or endless file (/dev/zero), a FIFO (whose
open blocks), nesting deep enough to exhaust Python's stack, and YAML aliases that expand into
millions of values ("billion laughs"). Two errors, each one line naming the file:
`UnreadableFileError` (the file cannot be read as text at all) and `UnparsableFileError` (its
text does not load as a document within the bounds).
"""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import yaml

from reconciler.errors import UnparsableFileError, UnreadableFileError

MAX_FILE_BYTES = 1 << 20
MAX_VALUES = 100_000


def read_text(path: Path, what: str, limit: int = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of the regular file at `path`, at most `limit` bytes; `what` the file
    should be ("service file", "profile"), for the messages. UnreadableFileError, one line
    starting with the path, for a missing file, a directory, anything but a regular file
    (a device, FIFO or socket: checked before the open, which a FIFO would block), a file
    over `limit` (also one that grows while read), one that cannot be read (permissions) and
    text that is not UTF-8."""
    source = str(path)
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise UnreadableFileError(f"{source}: is a directory, not a {what}")
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableFileError(f"{source}: not a regular file (a device, FIFO or socket)")
        if info.st_size > limit:
            raise UnreadableFileError(f"{source}: larger than {limit >> 10} KiB")
        with path.open("rb") as fh:
            raw = fh.read(limit + 1)
    except FileNotFoundError:
        raise UnreadableFileError(f"{source}: no such {what}") from None
    except OSError as error:
        raise UnreadableFileError(f"{source}: cannot read: {error.strerror or error}") from None
    if len(raw) > limit:
        raise UnreadableFileError(f"{source}: larger than {limit >> 10} KiB")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UnreadableFileError(f"{source}: not UTF-8 text") from None


def load_yaml(text: str, source: str) -> Any:
    """The one YAML document in `text` (PyYAML's safe types; merge keys `<<` as
    yaml.safe_load reads them), named `source` in the messages. UnparsableFileError, one line
    starting with `source`, for a syntax error (with its line), a key given twice in one
    mapping, an integer of more than 4300 digits, nesting too deep for the parser, more than
    MAX_VALUES values, or more once aliases are expanded, and a string UTF-8 cannot
    encode."""
    return _load_yaml(text, source, syntax="")


def load_json_or_yaml(text: str, source: str) -> Any:
    """The document in `text`, read as JSON first (YAML 1.1 reads JSON's 2.5E0 or 1e-9 as
    strings), else as YAML (`load_yaml`). UnparsableFileError, one line: as `load_yaml`,
    and `not JSON or YAML: <source>:<line>: YAML syntax error: ...` for text that is
    neither."""
    try:
        data = json.loads(text, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise UnparsableFileError(f"{source}: nested too deeply to load") from None
    except _DuplicateKey as twice:  # as YAML's loader refuses one: the last would win silently
        raise UnparsableFileError(f"{source}: found duplicate key {twice.args[0]!r}") from None
    except ValueError:
        return _load_yaml(text, source, syntax="not JSON or YAML: ")
    _check_values(data, source)
    return data


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's dict; _DuplicateKey(key) when a key is given twice."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise _DuplicateKey(key)
        found[key] = value
    return found


def _load_yaml(text: str, source: str, syntax: str) -> Any:
    """`load_yaml`, its syntax errors prefixed with `syntax`."""
    try:
        data = yaml.load(text, Loader=UniqueKeyLoader)
    except yaml.YAMLError as error:
        raise UnparsableFileError(syntax + yaml_problem(source, error)) from None
    except ValueError:  # an integer longer than Python converts (4300 digits)
        raise UnparsableFileError(
            f"{source}: a value YAML cannot load: a number of more than 4300 digits"
        ) from None
    except RecursionError:
        raise UnparsableFileError(f"{source}: nested too deeply to load") from None
    except _TooManyValues:
        raise UnparsableFileError(f"{source}: holds more than {MAX_VALUES} values") from None
    _check_values(data, source)
    return data


def _check_values(data: object, source: str) -> None:
    if _expanded_size(data, MAX_VALUES) > MAX_VALUES:
        raise UnparsableFileError(
            f"{source}: expands to more than {MAX_VALUES} values (YAML aliases?)"
        )
    try:
        json.dumps(data, ensure_ascii=False, default=str).encode("utf-8")
    except UnicodeEncodeError:  # e.g. "\ud800": YAML accepts it, no file or HTTP header can
        raise UnparsableFileError(
            f"{source}: a string holds a character UTF-8 cannot encode"
        ) from None


def _expanded_size(data: object, limit: int) -> int:
    """How many values `data` holds with every alias expanded, counting up to `limit` + 1
    (a walk that stops early: the expanded document may be astronomically large)."""
    count, stack = 0, [data]
    while stack and count <= limit:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return count


MERGE_TAG = "tag:yaml.org,2002:merge"


class _TooManyValues(Exception):
    """More than MAX_VALUES nodes composed (UniqueKeyLoader)."""


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader, refusing a key given twice in one mapping: SkyServe's loader keeps
    the last one silently, so `timeout_seconds: 0` followed by `timeout_seconds: 1` would
    hide the first (likely the intended) value. Keys a merge (`<<: *anchor`) brings in may be
    overridden, as YAML's merge allows: only the keys written in the mapping itself count,
    as composed, before PyYAML flattens merges into the (possibly shared) node. It also stops
    composing past MAX_VALUES nodes, before a huge document is built."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._own_keys: dict[int, list[yaml.Node]] = {}
        self._composed = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._composed += 1
        if self._composed > MAX_VALUES:
            raise _TooManyValues
        return super().compose_node(parent, index)

    def compose_mapping_node(self, anchor: Any) -> yaml.MappingNode:
        node = super().compose_mapping_node(anchor)
        self._own_keys[id(node)] = [k for k, _ in node.value if k.tag != MERGE_TAG]
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        own = self._own_keys.get(id(node))
        keys = own if own is not None else [k for k, _ in node.value if k.tag != MERGE_TAG]
        for key_node in keys:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: construct_mapping itself refuses it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def yaml_problem(source: str, error: yaml.YAMLError) -> str:
    """`file:line: YAML syntax error: problem`, one line (PyYAML's own text spans several)."""
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        problem = error.problem or error.context or "invalid YAML"
        if mark is not None:
            return f"{source}:{mark.line + 1}: YAML syntax error: {problem}"
        return f"{source}: YAML syntax error: {problem}"
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else "invalid YAML"
    return f"{source}: YAML syntax error: {first_line}"
