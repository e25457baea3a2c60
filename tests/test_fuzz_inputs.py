"""Fuzz the spec loader and the CLI's argument parsing: any input ends in a result or one clear
error, never a traceback (issue "Hardening", item 4). Fixed budgets keep the suite's time."""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.cli import main
from reconciler.errors import SpecError
from reconciler.spec import load_spec, parse_spec, schema

KEYS = sorted(
    {
        *schema.TOP_LEVEL,
        *schema.SERVICE,
        *schema.READINESS_PROBE,
        *schema.REPLICA_POLICY,
        *schema.RESOURCES,
        "secrets",
        "any_of",
    }
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["local", "aws", "gcp", "azure", "local-1a", "/health", "L4:1", "${X}"]),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=8))
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(keys, children, max_size=5),
    ),
    max_leaves=25,
)


@given(st.dictionaries(keys, documents, max_size=6))
@settings(max_examples=400, deadline=None)
def test_any_document_is_a_spec_or_a_spec_error(data: dict[str, Any]) -> None:
    try:
        parse_spec(data, name="svc", source="svc.yaml")
    except SpecError as exc:
        assert str(exc) and all(line.strip() for line in str(exc).splitlines())


@given(st.text(alphabet=string.printable + "{}[]:-&*!|>'\"%@`\\é\u2028", max_size=200))
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_file_text_is_a_spec_or_a_spec_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "svc.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_spec(path)
    except SpecError as exc:
        assert str(exc).startswith(str(path))


COMMANDS = ["plan", "apply", "status", "destroy", "run"]
FLAGS = [
    "--policy", "--lb-port", "--timeout", "--interval", "--max-ticks", "--metrics-port",
    "--wait-lock", "--no-wait", "--render-only", "--metrics-textfile", "--help",
    "--out", "--plan", "--format",
]  # fmt: skip
values = st.one_of(
    st.sampled_from(["0", "-1", "nan", "inf", "1e9", "30", "hedgeform", "", "x" * 300, "../x"]),
    st.text(alphabet=string.ascii_letters + string.digits + "-_./$;", max_size=12),
)


@given(
    st.sampled_from(COMMANDS),
    st.one_of(st.sampled_from(["llama", "Bad Name", "../etc", "a" * 70, ""]), values),
    st.lists(st.one_of(st.sampled_from(FLAGS), values), max_size=6),
)
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_command_line_ends_in_one_clear_line(
    tmp_path: Path, command: str, service: str, rest: list[str]
) -> None:
    """No service file exists under this root, so nothing can start: every outcome is a
    usage error (2) or one `Error:` line (1), never a traceback."""
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    result = CliRunner().invoke(main, [command, service, *rest, "--root", str(root)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{[command, service, *rest]}: {result.exception!r}")
    assert "Traceback" not in result.output
    assert result.exit_code in (0, 1, 2), result.output


NUMBER_OPTIONS = [
    (["mix", "--profile", "PROFILE", "--rate"], []),
    (["mix", "--profile", "PROFILE", "--rate", "3", "--max-utilization"], []),
    (["backtest", "--traces", "TRACES", "--types", "TYPES", "--rate"], ["--repeats", "1"]),
    (["backtest", "--unwarned-share"], []),
    (["sandbox", "load", "--qps"], ["--duration", "1"]),
]


@pytest.mark.parametrize(("before", "after"), NUMBER_OPTIONS)
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_a_number_option_refuses_nan_and_infinity_as_a_usage_error(
    tmp_path: Path, before: list[str], after: list[str], value: str
) -> None:
    """click's FloatRange let NaN (and, unbounded, infinity) through: `backtest --rate nan`
    ended in a traceback (cannot convert float NaN to integer), `mix --rate nan` in exit 1."""
    (tmp_path / "p.yaml").write_text("gpus: {A10G: {usd_per_hour: 1.0, max_rps: 2.5}}\n")
    traces = tmp_path / "t"
    traces.mkdir()
    args = [
        {"PROFILE": str(tmp_path / "p.yaml"), "TYPES": str(tmp_path / "p.yaml"),
         "TRACES": str(traces)}.get(a, a) for a in [*before, value, *after]
    ]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: Invalid value for '--") and value in last, last
