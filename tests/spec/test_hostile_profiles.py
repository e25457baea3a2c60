"""Throughput profiles and sidecars that would hang or crash Hedgeform are one line, fast: the
files `hedgeform mix --profile`, `hedgeform backtest --types`, the sidecar
`services/<name>.hedgeform.yaml` and `hedgeform profile --write` read go through the service
file's bounds (spec/reading.py; tests/spec/test_hostile_files.py for the service file). A file
that cannot be read as text is a bad command-line value (exit 2, as a missing file); a text
that does not load is a bad profile (exit 1, docs/mix.md)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from reconciler.cli import main
from reconciler.engine.profile_cmd import merge_into_sidecar
from reconciler.errors import ProfileError, SpecError
from reconciler.spec import load_spec
from reconciler.spec.profile_file import load_profile
from tests.within import returns_within

REPO = Path(__file__).resolve().parents[2]
PROFILE = {"gpus": {"L4": {"usd_per_hour": 1.0, "max_rps": 5}}}


def mix(path: Path | str) -> Result:
    return CliRunner().invoke(main, ["mix", "--profile", str(path), "--rate", "1"])


def one_line(result: Result) -> str:
    """The one line the command printed (no traceback, no exception but its exit)."""
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_a_deeply_nested_profile_is_one_line(tmp_path: Path, suffix: str) -> None:
    """Before: RecursionError, a traceback (JSON's decoder, then YAML's composer)."""
    path = tmp_path / f"deep{suffix}"
    path.write_text("[" * 100_000 if suffix == ".json" else "- " * 100_000 + "1\n")
    result = mix(path)
    assert result.exit_code == 1
    assert one_line(result) == f"Error: {path}: nested too deeply to load"


def test_a_device_in_place_of_the_profile_is_a_bad_option(tmp_path: Path) -> None:
    """Before: `--profile /dev/zero` read without end, a MemoryError traceback."""
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero here")
    result = returns_within(lambda: mix("/dev/zero"))
    assert result.exit_code == 2
    assert one_line(result).startswith(
        "Error: Invalid value for --profile: /dev/zero: not a regular file (a device, FIFO"
    )


def test_a_fifo_in_place_of_the_profile_does_not_block(tmp_path: Path) -> None:
    """Before: the open waited for a writer forever."""
    path = tmp_path / "profile.json"
    os.mkfifo(path)
    result = returns_within(lambda: mix(path))
    assert result.exit_code == 2
    assert f"--profile: {path}: not a regular file" in one_line(result)


def test_a_profile_over_a_mebibyte_is_a_bad_option(tmp_path: Path) -> None:
    path = tmp_path / "profile.json"
    path.write_text(json.dumps({**PROFILE, "about": "x" * (1 << 20)}))
    result = mix(path)
    assert result.exit_code == 2
    assert one_line(result).startswith(f"Error: Invalid value for --profile: {path}: larger than")


def test_a_billion_laughs_profile_is_refused(tmp_path: Path) -> None:
    lines = ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    for n in range(1, 12):
        lines.append(f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 9)}]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    result = returns_within(lambda: mix(path))
    assert result.exit_code == 1
    assert "expands to more than 100000 values" in one_line(result)


def test_an_exponent_yaml_reads_as_text_says_how_to_write_it(tmp_path: Path) -> None:
    """Before: `'1e7' is not a number`, though 1e7 is one to its writer (and to JSON)."""
    path = tmp_path / "profile.yaml"
    path.write_text("gpus:\n  L4: {usd_per_hour: 1, max_rps: 1e7}\n")
    result = mix(path)
    assert result.exit_code == 1
    assert one_line(result) == (
        f"Error: {path}: profile.gpus.L4.max_rps: '1e7' is not a number; YAML 1.1 reads 1e7 "
        "as text: write 1.0e+7 or 10000000"
    )
    for written in ("1.0e+7", "10000000"):  # the hint's forms do load as the number
        path.write_text(f"gpus:\n  L4: {{usd_per_hour: 1, max_rps: {written}}}\n")
        assert load_profile(path).gpus[0].max_rps == ((1e7,),)


def test_a_profile_that_is_not_json_or_yaml_keeps_its_message(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("gpus: [unclosed")
    with pytest.raises(ProfileError, match=rf"^not JSON or YAML: {path}:1: YAML syntax error"):
        load_profile(path)


# -- the sidecar, read with the service file and written by `hedgeform profile` -----------


def service(tmp_path: Path, sidecar: str) -> Path:
    path = tmp_path / "llama-mix.yaml"
    shutil.copy(REPO / "services" / "llama-mix.yaml", path)
    (tmp_path / "llama-mix.hedgeform.yaml").write_text(sidecar)
    return path


def test_a_deeply_nested_sidecar_says_so(tmp_path: Path) -> None:
    """Before: `not a YAML file Hedgeform can load`, which did not say what was wrong."""
    path = service(tmp_path, "mix: " + "[" * 100_000)
    with pytest.raises(SpecError, match=r"llama-mix\.hedgeform\.yaml: nested too deeply to load"):
        load_spec(path)


def test_an_exponent_in_the_sidecar_says_how_to_write_it(tmp_path: Path) -> None:
    path = service(
        tmp_path,
        "mix:\n  max_utilization: 8e-1\n  profile:\n    gpus:\n"
        "      L4: {max_rps: 5}\n      A10G: {max_rps: 5}\n",
    )
    with pytest.raises(
        SpecError,
        match=r"'8e-1' is not a share in \(0, 1\]; YAML 1\.1 reads 8e-1 as text: write 8\.0e-1 or "
        r"0\.8$",
    ):
        load_spec(path)
    (tmp_path / "llama-mix.hedgeform.yaml").write_text(
        "mix:\n  profile:\n    gpus:\n      L4: {max_rps: 1e7}\n      A10G: {max_rps: 5}\n"
    )
    with pytest.raises(SpecError, match=r"'1e7' is not a number; YAML 1\.1 reads 1e7 as text"):
        load_spec(path)


def test_a_fifo_as_the_sidecar_to_write_does_not_block(tmp_path: Path) -> None:
    """`hedgeform profile --write`: before, the read waited for a writer forever."""
    path = tmp_path / "llama.hedgeform.yaml"
    os.mkfifo(path)
    error = returns_within(lambda: merge_into_sidecar(path, "L4", [[1.0]]))
    assert isinstance(error, SpecError) and "not a regular file" in str(error)


def test_a_deeply_nested_sidecar_to_write_is_one_line(tmp_path: Path) -> None:
    """`hedgeform profile --write`: before, a RecursionError traceback."""
    path = tmp_path / "llama.hedgeform.yaml"
    path.write_text("mix: " + "[" * 100_000)
    with pytest.raises(SpecError, match=r"^\S+llama\.hedgeform\.yaml: nested too deeply"):
        merge_into_sidecar(path, "L4", [[1.0]])
    path.write_text("changes: review\n")
    merge_into_sidecar(path, "L4", [[1.0]])  # a good one is still merged
    merged = yaml.safe_load(path.read_text())
    assert merged == {
        "changes": "review",
        "mix": {"profile": {"gpus": {"L4": {"max_rps": [[1.0]]}}}},
    }


def test_a_json_key_given_twice_is_refused_as_in_yaml(tmp_path: Path) -> None:
    """Before: the last `usd_per_hour` won silently ($5.00/h); YAML refused the same file."""
    path = tmp_path / "dup.json"
    path.write_text('{"gpus": {"A10G": {"usd_per_hour": 1, "max_rps": 2, "usd_per_hour": 5}}}')
    with pytest.raises(ProfileError, match=r"dup\.json: found duplicate key 'usd_per_hour'$"):
        load_profile(path, None)
