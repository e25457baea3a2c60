"""`hedgeform status` of a destroyed service says so plainly, with when (issue 17): no stale
replicas, no price, no traceback; an apply makes it a running service again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import main
from tests.e2e.conftest import applied, fast_sandbox_env

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_status_after_destroy_says_destroyed_and_apply_brings_it_back(short_tmp: Path) -> None:
    env = fast_sandbox_env()
    with applied(short_tmp, "gone", env) as paths:

        def hf(*args: str) -> str:
            result = CliRunner().invoke(main, [*args, "--root", str(paths.root)], env=env)
            assert result.exit_code == 0, result.output
            return result.output

        assert not hf("status", "gone").startswith("gone  destroyed")
        hf("destroy", "gone")
        text = hf("status", "gone")
        assert text.startswith("gone  destroyed 20") and " UTC (hedgeform destroy)" in text, text
        assert "nothing runs, nothing bills" in text and "READY" not in text, text
        view = json.loads(hf("status", "gone", "--json"))
        assert view["destroyed_at"] is not None and view["replicas"] == [], view
        assert view["usd_per_hour"] == 0.0 and view["ready"] == 0
        assert view["unit"] == "nominal (sandbox)", view  # no tick record says so: apply only
        assert hf("status").startswith("gone  destroyed 20")
        hf("plan", "gone")  # a plan creates nothing: still destroyed
        assert hf("status", "gone").startswith("gone  destroyed")
        hf("apply", "gone")
        back = json.loads(hf("status", "gone", "--json"))
        assert back["destroyed_at"] is None and back["ready"] >= 1, back
        hf("destroy", "gone")


def test_a_destroy_killed_mid_way_is_said_by_status_until_run_again(short_tmp: Path) -> None:
    """Issue 17 review: `kill -9` of `hedgeform destroy` mid-way left `status` printing
    `target 1 ready 0 ... (not running)` with nothing saying a destroy was cut short."""
    env = fast_sandbox_env()
    hedgeform = str(Path(sys.executable).parent / "hedgeform")
    with applied(short_tmp, "cut", env) as paths:

        def hf(*args: str) -> str:
            result = CliRunner().invoke(main, [*args, "--root", str(paths.root)], env=env)
            assert result.exit_code == 0, result.output
            return result.output

        killed = subprocess.run(
            [hedgeform, "destroy", "cut", "--root", str(paths.root)],
            env={**os.environ, **env, "HEDGEFORM_CRASH_AT": "before_teardown"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert killed.returncode == -9, killed.stdout + killed.stderr
        text = hf("status", "cut")
        assert "not finished: run `hedgeform destroy cut` again" in text, text
        hf("destroy", "cut")
        assert hf("status", "cut").startswith("cut  destroyed 20")
