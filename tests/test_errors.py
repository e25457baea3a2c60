"""One root for every error a user can see (reconciler/errors.py)."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

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


def _closed_stdout(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -c code args` with fd 1 closed, as the shell's `>&-` leaves it."""
    return subprocess.run(
        ["sh", "-c", 'exec "$@" >&-', "sh", sys.executable, "-c", code, *args],
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_closed_stdout_is_one_line_on_stderr_and_not_a_success(tmp_path: Path) -> None:
    """`hedgeform mix ... --json >&-`: before, an AttributeError traceback from
    solver_output (sys.stdout is None); the JSON asked for cannot be printed, so exit 1."""
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({"gpus": {"L4": {"usd_per_hour": 1.0, "max_rps": 5}}}))
    done = _closed_stdout(
        "from reconciler.cli import main; main()",
        *("mix", "--profile", str(profile), "--rate", "1", "--json"),
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1] == "Error: cannot print: standard output is closed"


def test_the_solver_banner_goes_to_stderr_with_stdout_closed() -> None:
    """solver_output outside the command line (the bench scripts): fd 1 closed before, and
    closed again after."""
    code = (
        "import os, sys\n"
        "from reconciler.solver_output import banner_to_stderr, banner_discarded\n"
        "with banner_to_stderr():\n"
        "    os.write(1, b'banner\\n')\n"
        "with banner_discarded():\n"
        "    os.write(1, b'discarded\\n')\n"
        "try:\n"
        "    os.fstat(1)\n"
        "except OSError:\n"
        "    sys.stderr.write('fd 1 closed again\\n')\n"
    )
    done = _closed_stdout(code)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "banner\nfd 1 closed again\n"
