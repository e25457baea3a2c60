"""`make` with hostile values: nothing a variable holds ever runs (issue "Hardening", item 1).

`make plan SERVICE='$$(touch pwned-marker)'` used to run the command (an `$(eval ...)` in the
name check re-expanded the value), a space let `SERVICE='svc --lb-port 31099'` add an argument,
and `INTERVAL='5; id'` reached a shell unchecked.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def payloads(marker: Path) -> list[str]:
    """Every way a value could try to run `touch marker` through make or a shell."""
    m = str(marker)
    return [
        f"$$(touch {m})",
        f"$(shell touch {m})",
        f"`touch {m}`",
        f"x; touch {m}",
        f"x && touch {m}",
        f"x | touch {m}",
        f"$(touch {m})",
        f"x\ntouch {m}",
    ]


def make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-s", "-C", str(REPO), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


CHECKED = [
    ("status", "SERVICE", "SERVICE must be a plain name"),
    ("plan", "SERVICE", "SERVICE must be a plain name"),
    ("reconcile", "INTERVAL", "INTERVAL must be a number of seconds"),
    ("install-timer", "MODE", "MODE must be timer or service"),
    ("install-timer", "DRY_RUN", "DRY_RUN must be 1"),
    ("install-timer", "SYSTEMD_USER", "SYSTEMD_USER must be 1"),
    ("status", "PYTHON", "PYTHON must be an interpreter name or path"),
]


@pytest.mark.parametrize(("target", "variable", "message"), CHECKED)
def test_a_hostile_value_is_refused_in_one_line_and_never_runs(
    tmp_path: Path, target: str, variable: str, message: str
) -> None:
    for i, value in enumerate(payloads(tmp_path / "pwned")):
        marker = tmp_path / f"pwned-{i}"
        value = value.replace(str(tmp_path / "pwned"), str(marker))
        result = make(target, f"{variable}={value}")
        assert result.returncode == 2, (value, result.stdout, result.stderr)
        assert result.stderr.splitlines()[0] == f"make: {message}" + _rest(message), value
        assert not marker.exists(), f"{variable}={value!r} ran a command"


def _rest(message: str) -> str:
    """The message's remaining text after the prefix the table names."""
    full = {
        "SERVICE must be a plain name": (
            " of lowercase letters, digits and '-' (services/<SERVICE>.yaml)"
        ),
        "INTERVAL must be a number of seconds": ", e.g. 30",
        "MODE must be timer or service": "",
        "DRY_RUN must be 1": " (or empty)",
        "SYSTEMD_USER must be 1": " (or empty)",
        "PYTHON must be an interpreter name or path": ", e.g. python3.11",
    }
    return full[message]


def test_a_space_cannot_smuggle_an_argument(tmp_path: Path) -> None:
    result = make("status", "SERVICE=svc --lb-port 31099")
    assert result.returncode == 2 and "SERVICE must be a plain name" in result.stderr


@pytest.mark.parametrize(
    ("target", "variable", "extra"),
    [
        ("backtest", "BACKTEST_ARGS", ["TRACES=/nonexistent-traces"]),
        ("backtest", "TRACES", []),
        ("soak", "SOAK_ARGS", []),
    ],
)
def test_argument_lists_split_into_inert_words(
    tmp_path: Path, target: str, variable: str, extra: list[str]
) -> None:
    """*_ARGS and TRACES are lists of words on purpose: split with globbing off, each word
    one argument, nothing substituted; the command then refuses the nonsense itself."""
    words = " ".join(payloads(tmp_path / "pwned")).replace("\n", " ")
    result = make(target, f"{variable}=--no-such-option {words}", *extra)
    assert result.returncode != 0
    assert not list(tmp_path.glob("pwned*")), result.stdout + result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "assignment",
    [
        "CHECK_VARS=touch {m}",
        "BIN=touch {m};",
        "VENV=x; touch {m};",
        "SHELL={m}",
        "USER_VARS=",
    ],
)
def test_the_makefiles_own_variables_cannot_be_replaced(tmp_path: Path, assignment: str) -> None:
    """Found by the user-eye check: `make check-vars 'CHECK_VARS=touch x'`, `make status
    'BIN=touch x;'` and `USER_VARS=` (which turned the checks off) ran commands."""
    marker = tmp_path / "pwned"
    hostile = f"$(shell touch {marker}-via-service)"
    result = make("status", assignment.format(m=marker), f"SERVICE={hostile}")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "SERVICE must be a plain name" in result.stderr
    assert not list(tmp_path.glob("pwned*")), assignment


def test_the_aws_emulator_on_a_port_in_use_exits_in_one_line() -> None:
    """`make aws-emulator PORT=N` with N taken printed moto's complaint from its server
    thread and then hung for ever; it now says so and exits 1."""
    import socket
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "tests.emulators.aws", "--port", str(port)],
            cwd=Path(__file__).resolve().parents[1],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use"
    ), result.stderr
