"""The reconciler's answers to bad input and failing stacks (Terraform faked per stack)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.backends.fake import FakeBackend
from reconciler.backends.sandbox import SandboxSettings
from reconciler.cli import main
from reconciler.engine.reconcile import Reconciler, service_lock
from reconciler.errors import BusyError, CloudConfigError, ReconcileError, StateError
from reconciler.paths import ServicePaths
from reconciler.sandbox import market_daemon
from reconciler.spec import load_spec
from reconciler.terraform.fake import FakeTerraformRunner

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "services").mkdir()
    shutil.copy(REPO / "services" / "llama.yaml", tmp_path / "services" / "llama.yaml")
    shutil.copy(REPO / "services" / "llama-cloud.yaml", tmp_path / "services" / "cloudy.yaml")
    (tmp_path / "terraform").symlink_to(REPO / "terraform")
    yield tmp_path
    market_daemon.stop(tmp_path / "state" / "llama" / "sandbox")


def reconciler(
    root: Path, fakes: dict[str, FakeTerraformRunner], *, sandbox: bool = False
) -> Reconciler:
    """A reconciler of `llama` with Terraform faked per stack, on the in-memory backend (no
    daemon, no process); `sandbox` drives the real SandboxCloud instead."""
    paths = ServicePaths.for_service("llama", root=root)
    spec = load_spec(paths.spec_file)

    def factory(stack: str, stack_dir: Path, module_dir: Path) -> FakeTerraformRunner:
        return fakes.setdefault(stack, FakeTerraformRunner(name=stack))

    backend = None if sandbox else FakeBackend(spec, paths.sandbox_dir, lb_port=1)
    return Reconciler(
        paths, spec, SandboxSettings(lb_port=1), runner_factory=factory, backend=backend
    )


def test_a_failing_stack_is_named_and_the_others_still_apply(root: Path) -> None:
    fakes = {"local-2": FakeTerraformRunner(name="local-2")}
    fakes["local-2"].fail("plan", "Error: Unsupported argument")
    result = reconciler(root, fakes).run_pass(apply=True)
    assert [o.stack for o in result.failed] == ["local-2"]
    assert "stack local-2: plan failed: Error: Unsupported argument" in str(result.failed[0].error)
    applied = {o.stack for o in result.outcomes if o.applied}
    assert applied == {"front", "local-1"}
    assert any(c[0] == "apply" for c in fakes["local-1"].calls)


def test_a_corrupted_record_is_refused_with_its_path_and_how_to_recover(root: Path) -> None:
    rec = reconciler(root, {})
    rec.paths.state_dir.mkdir(parents=True)
    rec.paths.memory_file.write_text("{not json")
    with pytest.raises(StateError) as err:
        rec.run_pass(apply=True)
    assert str(rec.paths.memory_file) in str(err.value)
    assert "move it aside" in str(err.value)
    assert rec.paths.memory_file.read_text() == "{not json"  # never silently reset


def test_two_reconciles_of_one_service_do_not_overlap(root: Path) -> None:
    paths = ServicePaths.for_service("llama", root=root)
    with (
        service_lock(paths),
        pytest.raises(BusyError, match="another reconcile of llama"),
        service_lock(paths),
    ):
        pass


def test_a_cloud_spec_without_its_settings_is_one_line_naming_them(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HEDGEFORM_AWS_IMAGES", raising=False)
    paths = ServicePaths.for_service("cloudy", root=root)
    with pytest.raises(
        CloudConfigError, match="no AMI for aws us-east-1: set HEDGEFORM_AWS_IMAGES"
    ):
        Reconciler(paths, load_spec(paths.spec_file), SandboxSettings())


def test_a_spec_mixing_the_sandbox_and_a_cloud_is_refused(root: Path) -> None:
    text = (root / "services" / "llama.yaml").read_text()
    assert "    - cloud: local" in text
    mixed = text.replace(
        "    - cloud: local", "    - cloud: aws\n      region: us-east-1\n    - cloud: local", 1
    )
    (root / "services" / "mixed.yaml").write_text(mixed)
    paths = ServicePaths.for_service("mixed", root=root)
    with pytest.raises(ReconcileError, match="mixes the local sandbox with aws"):
        Reconciler(paths, load_spec(paths.spec_file), SandboxSettings())


@pytest.mark.parametrize(
    ("service", "content", "expected"),
    [
        ("nope", None, "services/nope.yaml: no such service file"),
        ("bad", "service: [", "bad.yaml:1: YAML syntax error"),
        ("bad", "service:\n  replica_policy:\n    min_replicas: 3\n    max_replicas: 2\n",
         "service.replica_policy.min_replicas: must be <= max_replicas (3 > 2)"),
        ("Bad_Name", None, "is not a plain name"),
    ],
)  # fmt: skip
def test_bad_input_is_one_clear_line(
    root: Path, service: str, content: str | None, expected: str
) -> None:
    if content is not None:
        (root / "services" / f"{service}.yaml").write_text(content)
    result = CliRunner().invoke(main, ["plan", service, "--root", str(root)])
    assert result.exit_code == 1
    assert expected in result.output
    assert "Traceback" not in result.output


def test_a_record_whose_memory_is_a_list_is_one_line(tmp_path: Path) -> None:
    """It raised AttributeError (a traceback) from Memory.from_json."""
    from reconciler.engine.state_store import load_record
    from reconciler.errors import StateError

    path = tmp_path / "reconciler.json"
    path.write_text(
        '{"version": 1, "memory": [], "notice_cursor": 0, "launch_results": [],'
        ' "request_samples": []}'
    )
    with pytest.raises(StateError, match="memory must be a JSON object, got list"):
        load_record(path)


def test_a_full_disk_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import shutil

    from click.testing import CliRunner

    from reconciler.cli import main

    repo = Path(__file__).resolve().parents[2]
    (tmp_path / "services").mkdir()
    shutil.copy(repo / "services" / "llama.yaml", tmp_path / "services" / "llama.yaml")
    (tmp_path / "terraform").symlink_to(repo / "terraform")

    def full(stack_dir: Path, variables: object) -> Path:
        path = stack_dir / "terraform.tfvars.json"
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr("reconciler.engine.reconcile.write_tfvars", full)
    result = CliRunner().invoke(main, ["plan", "llama", "--render-only", "--root", str(tmp_path)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith("terraform.tfvars.json: No space left on device")


@pytest.mark.parametrize("field", ["notice_cursor", "lb_epoch"])
def test_a_record_with_an_infinite_counter_is_one_line(tmp_path: Path, field: str) -> None:
    from reconciler.engine.state_store import Record, load_record
    from reconciler.errors import StateError

    raw = {**Record().to_json(), field: float("inf")}
    path = tmp_path / "reconciler.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(StateError, match="cannot read the reconciler's record"):
        load_record(path)
