"""One root for every error a user can see (reconciler/errors.py)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import click
import pytest
from click.testing import CliRunner

import reconciler
from reconciler import errors
from reconciler.cli import LazyGroup


def _all_modules() -> list[str]:
    return [
        m.name
        for m in pkgutil.walk_packages(reconciler.__path__, "reconciler.")
        if not m.name.endswith("__main__")
    ]


def test_every_exception_class_of_the_package_hangs_from_the_one_root() -> None:
    seen = []
    for name in _all_modules():
        module = importlib.import_module(name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__name__.startswith("_"):  # private control flow, caught where raised
                continue
            if issubclass(cls, BaseException) and cls.__module__.startswith("reconciler"):
                seen.append(cls)
                assert issubclass(cls, errors.HedgeformError), f"{cls.__module__}.{cls.__name__}"
                assert cls.__module__ == "reconciler.errors", f"{cls.__name__} lives elsewhere"
    assert len(set(seen)) >= 30


def test_the_docstring_draws_every_class() -> None:
    doc = errors.__doc__ or ""
    for name, cls in inspect.getmembers(errors, inspect.isclass):
        if issubclass(cls, errors.HedgeformError) and cls.__name__ == name:
            assert name in doc, name


@pytest.mark.parametrize(
    "exc",
    [errors.SpecError(["service.replicas: must be >= 1"], source="x.yaml"),
     errors.TerraformMissingError("no terraform"), errors.CredentialsError("no creds"),
     errors.StateError("state/x/reconciler.json: corrupt")],
)  # fmt: skip
def test_the_command_line_prints_any_of_them_as_one_error_line(
    exc: errors.HedgeformError,
) -> None:
    @click.command()
    def boom() -> None:
        raise exc

    group = LazyGroup(lazy={}, commands={"boom": boom})
    result = CliRunner().invoke(group, ["boom"])
    assert result.exit_code == 1
    assert result.output == f"Error: {exc}\n"
    assert "Traceback" not in result.output


def test_a_closed_pipe_ends_the_command_quietly() -> None:
    """`hedgeform status llama | head -1`: the reader leaving is not an error to print."""
    import click
    from click.testing import CliRunner

    from reconciler.cli import EXIT_BROKEN_PIPE, LazyGroup

    @click.command("talk")
    def talk() -> None:
        raise BrokenPipeError(32, "Broken pipe")

    group = LazyGroup("hedgeform", lazy={}, commands={"talk": talk})
    result = CliRunner().invoke(group, ["talk"])
    assert result.exit_code == EXIT_BROKEN_PIPE
    assert "Error" not in result.output and "Broken pipe" not in result.output
