"""Reading a throughput profile from a file (JSON or YAML), for `hedgeform mix` and the
mixed backtest (`hedgeform backtest --types`). The file is read within the bounds of every
file someone else may have written (spec/reading.py); parsing is spec/profile.py's, pure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reconciler.errors import ProfileError, UnparsableFileError
from reconciler.spec.profile import Profile, parse_profile
from reconciler.spec.reading import load_json_or_yaml, read_text


def load_profile_data(
    path: Path, config: str | None, selector: str | None = "--config"
) -> tuple[Any, str]:
    """The profile's mapping and its field path. A file holding several named configs (as
    `../shared/melange/anchor.json` does, under `configs`) needs `config` to pick one (the
    command's option `selector`; None: the command takes one profile per file); a file that
    is one config must not be given one.

    UnreadableFileError (one line naming the file) when `path` cannot be read as text at all
    (missing, a directory, a device or FIFO, over 1 MiB, not UTF-8: a bad command-line value,
    the commands say so with exit code 2); ProfileError (one line) for text that does not
    load (syntax, nesting, too many values) or is not a profile."""
    text = read_text(path, "profile")
    try:
        data = load_json_or_yaml(text, str(path))
    except UnparsableFileError as exc:
        raise ProfileError(str(exc)) from None
    if isinstance(data, dict) and "configs" in data and "gpus" not in data:
        configs = data["configs"]
        if not isinstance(configs, dict) or not configs:
            raise ProfileError(f"{path}: configs: expected a mapping of named profiles")
        if config is None:
            how = f"choose one with {selector}" if selector else "give a file of one profile"
            raise ProfileError(
                f"{path} holds several profiles ({', '.join(sorted(configs))}); {how}"
            )
        if config not in configs:
            raise ProfileError(f"{path}: no config {config!r} (have: {', '.join(sorted(configs))})")
        return configs[config], f"configs.{config}"
    if config is not None:
        raise ProfileError(f"{path} holds one profile; --config {config} does not apply")
    return data, "profile"


def load_profile(
    path: Path, config: str | None = None, selector: str | None = "--config"
) -> Profile:
    """The parsed profile of `path` (and `config`); ProfileError, one line, naming the file
    and the field; UnreadableFileError as `load_profile_data`."""
    data, where = load_profile_data(path, config, selector)
    try:
        return parse_profile(data, where)
    except ProfileError as exc:
        raise ProfileError(f"{path}: {exc}") from None
