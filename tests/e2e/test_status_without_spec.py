"""`hedgeform status` and `hedgeform cost` of a running sandbox service whose service file was
moved away, cannot be read, or is invalid, or whose sidecar is invalid: before, both refused
in one line (`...: no such service file`, `mix.caps.H100: 'H100' is not an accelerator ...`)
although `hedgeform logs` reads the same state alone. Now they show what the state knows and
say in one line why the file could not be used and what needs it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import main
from tests.e2e.conftest import REPO, fast_sandbox_env, project_root

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _moved(spec: Path) -> None:
    spec.rename(spec.with_suffix(".moved"))


def _unreadable(spec: Path) -> None:  # a directory where the file was (root reads any file)
    spec.unlink()
    spec.mkdir()


def _invalid(spec: Path) -> None:
    spec.write_text("service: [\n")


def _bad_sidecar(spec: Path) -> None:
    spec.with_name("mix.hedgeform.yaml").write_text("mix:\n  caps:\n    H100: 2\n")


def _restore(spec: Path, text: str) -> None:
    if spec.is_dir():
        spec.rmdir()
    spec.with_suffix(".moved").unlink(missing_ok=True)
    spec.with_name("mix.hedgeform.yaml").unlink(missing_ok=True)
    spec.write_text(text)


SPOILS: list[tuple[str, Callable[[Path], None], str]] = [
    ("moved", _moved, "no such service file"),
    ("unreadable", _unreadable, "mix.yaml"),
    ("invalid", _invalid, "mix.yaml"),
    ("sidecar", _bad_sidecar, "'H100' is not an accelerator of the service"),
]


def test_status_and_cost_show_the_state_when_the_service_file_cannot_be_used(
    short_tmp: Path,
) -> None:
    env = fast_sandbox_env()
    text = (REPO / "services" / "llama-mix.yaml").read_text()
    with project_root(short_tmp, {"mix": text}) as root:
        spec = root / "services" / "mix.yaml"

        def hf(*args: str) -> str:
            result = CliRunner().invoke(main, [*args, "--root", str(root)], env=env)
            assert result.exit_code == 0, (args, result.output)
            return result.stdout

        hf("apply", "mix")
        before = json.loads(hf("status", "mix", "--json"))
        assert before["ready"] >= 2, before
        ids = {r["id"] for r in before["replicas"]}
        for name, spoil, why in SPOILS:
            spoil(spec)
            shown = hf("status", "mix")
            lines = shown.splitlines()
            assert lines[0].startswith("mix  v1 (ready)  target "), (name, shown)
            assert "(nominal)/h at the last tick " in lines[0], (name, shown)
            assert why in lines[1] and ": shown from state/mix alone; a usable service file " \
                "is needed to probe the replicas" in lines[1], (name, shown)  # fmt: skip
            assert lines[2].startswith("endpoint: http://127.0.0.1:"), (name, shown)
            view = json.loads(hf("status", "mix", "--json"))
            # the sandbox's market may preempt a replica meanwhile: no exact count
            assert view["target"] == before["target"], (name, view)
            assert view["endpoint"] == before["endpoint"], (name, view)
            assert {r["id"] for r in view["replicas"]} <= ids, (name, view)
            ready = [r for r in view["replicas"] if r["state"] == "READY"]
            assert view["ready"] == len(ready) >= 1, (name, view)
            assert all(r["in_lb"] and r["probe"] == "LB check UP" for r in ready), (name, view)
            assert all(r["accelerator"] != "-" for r in view["replicas"]), (name, view)
            assert view["usd_per_hour"] is not None and view["unit"] == "nominal (sandbox)"
            assert why in view["notes"][0], (name, view)
            assert any(e["kind"] == "launch" for e in view["events"]), (name, view)
            assert "shown from its state" in hf("status")
            cost = hf("cost", "mix")
            assert why in cost.splitlines()[0] and "last tick (" in cost, (name, cost)
            data = json.loads(hf("cost", "mix", "--json"))
            assert data["service_file_error"] and why in data["service_file_error"], data
            assert data["now"]["at"] is not None and data["prices"] == [], data
            assert data["now"]["replicas"]["spot"] + data["now"]["replicas"]["on_demand"] >= 2
            _restore(spec, text)
        assert hf("status", "mix").splitlines()[1].startswith("endpoint: ")  # read again
        hf("destroy", "mix")
