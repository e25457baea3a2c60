"""Faults the unattended loop must survive or refuse clearly."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import main
from reconciler.engine import state_store
from reconciler.engine.state_store import Record, save_record
from reconciler.errors import StateError
from tests.engine.test_reconcile_errors import reconciler


def test_metrics_source_down_holds_the_target(root: Path) -> None:
    """No load balancer answering (no request counter): the autoscaler holds, never guesses."""
    result = reconciler(root, {}).run_pass(apply=False)
    assert result.signals is not None and result.signals.qps is None
    assert any("metrics missing or stale: holding target" in r for r in result.decision.reasons)
    assert result.decision.target == 2  # min_replicas, held


@pytest.mark.sandbox_daemon
def test_terraform_binary_missing_is_one_line_per_stack(root: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["apply", "llama", "--no-wait", "--root", str(root)],
        env={"TERRAFORM_BIN": str(root / "no-terraform"), "HEDGEFORM_LB_PORT": "30999"},
    )
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    errors = [ln for ln in result.output.splitlines() if ln.startswith("error: ")]
    assert errors == [f"error: TERRAFORM_BIN={root / 'no-terraform'}: no such file"]
    assert "no-terraform" in result.output


def test_a_read_only_state_directory_is_reported_with_its_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def read_only(path: Path, text: str) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(state_store, "write_atomic", read_only)
    target = tmp_path / "state" / "llama" / "reconciler.json"
    with pytest.raises(StateError, match="Read-only file system") as err:
        save_record(target, Record())
    assert str(target) in str(err.value)


def test_a_state_path_that_is_not_a_directory_is_reported(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("a file where a directory should be")
    with pytest.raises(StateError, match="cannot write"):
        save_record(tmp_path / "state" / "llama" / "reconciler.json", Record())
