"""Reading a throughput profile from a file (JSON or YAML), for `hedgeform mix` and the
mixed backtest (`hedgeform backtest --types`). Parsing is spec/profile.py's, pure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from reconciler.errors import ProfileError
from reconciler.spec.loading import yaml_problem
from reconciler.spec.profile import Profile, parse_profile


def load_profile_data(
    path: Path, config: str | None, selector: str | None = "--config"
) -> tuple[Any, str]:
    """The profile's mapping and its field path. A file holding several named configs (as
    `../shared/melange/anchor.json` does, under `configs`) needs `config` to pick one (the
    command's option `selector`; None: the command takes one profile per file); a file that
    is one config must not be given one."""
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise ProfileError(f"{path}: not a text file") from None
    try:  # JSON first: YAML 1.1 reads JSON's 2.5E0 or 1e-9 as strings
        data = json.loads(text)
    except ValueError:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ProfileError(f"not JSON or YAML: {yaml_problem(str(path), exc)}") from None
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
    and the field."""
    data, where = load_profile_data(path, config, selector)
    try:
        return parse_profile(data, where)
    except ProfileError as exc:
        raise ProfileError(f"{path}: {exc}") from None
