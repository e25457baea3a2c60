"""State is private (0700 directories, 0600 files), and an unknown sandbox zone is refused when
the reconciler is built, not when a launch fails (issue "Hardening", item 7)."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

from click.testing import CliRunner

from reconciler.cli import main
from reconciler.engine.reconcile import service_lock
from reconciler.engine.state_store import Record, save_record
from reconciler.files import write_atomic
from reconciler.paths import ServicePaths

REPO = Path(__file__).resolve().parents[2]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_state_directories_and_files_are_private(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir(mode=0o755)
    paths = ServicePaths.for_service("svc", root=tmp_path)
    with service_lock(paths):
        save_record(paths.memory_file, Record())
    assert mode(tmp_path / "state") == 0o700  # tightened although it existed
    assert mode(paths.state_dir) == 0o700
    assert mode(paths.memory_file) == 0o600


def test_write_atomic_sets_the_mode_it_is_given(tmp_path: Path) -> None:
    write_atomic(tmp_path / "a", "x")
    write_atomic(tmp_path / "b", "x", mode=0o644)
    assert (mode(tmp_path / "a"), mode(tmp_path / "b")) == (0o600, 0o644)


def test_an_unknown_sandbox_zone_is_refused_before_anything_runs(tmp_path: Path) -> None:
    (tmp_path / "services").mkdir()
    text = (
        (REPO / "services" / "llama.yaml").read_text().replace("zone: local-2a", "zone: local-1z")
    )
    (tmp_path / "services" / "svc.yaml").write_text(text)
    (tmp_path / "terraform").symlink_to(REPO / "terraform")
    result = CliRunner().invoke(main, ["plan", "svc", "--root", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: {tmp_path}/services/svc.yaml: local-1z is not a zone of the local sandbox; "
        "its zones are local-1a, local-1b, local-2a"
    ]
    assert not list((tmp_path / "state").rglob("*.tfvars.json"))
    shutil.rmtree(tmp_path / "state", ignore_errors=True)
