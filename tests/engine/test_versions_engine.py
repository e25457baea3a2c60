"""Service versions at the engine's edge (issue 13): which backends register them, what the
record keeps of each version, and the `history` / `rollback` commands' one-line answers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.backends.fake import FakeBackend
from reconciler.backends.sandbox import SandboxSettings
from reconciler.cli import main
from reconciler.engine.reconcile import Reconciler
from reconciler.paths import ServicePaths
from reconciler.policy import Market
from reconciler.spec import load_spec
from reconciler.stacks import ManagedReplica
from reconciler.terraform.fake import FakeTerraformRunner

REPO = Path(__file__).resolve().parents[2]


def rig(root: Path, versions: bool) -> Reconciler:
    paths = ServicePaths.for_service("llama", root=root)
    spec = load_spec(paths.spec_file)
    backend = FakeBackend(spec, paths.sandbox_dir)
    backend.carries_versions = versions
    fakes = {n: FakeTerraformRunner(name=n, changed=True) for n in ("local-1", "local-2", "front")}
    return Reconciler(
        paths,
        spec,
        SandboxSettings(lb_port=1),
        backend=backend,
        runner_factory=lambda stack, *_: fakes[stack],
    )


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "services").mkdir()
    shutil.copy(REPO / "services" / "llama.yaml", tmp_path / "services" / "llama.yaml")
    (tmp_path / "terraform").symlink_to(REPO / "terraform")
    return tmp_path


def change_model(root: Path) -> None:
    path = root / "services" / "llama.yaml"
    text = path.read_text()
    assert "MODEL_NAME: meta-llama/Llama-3.1-8B-Instruct" in text
    path.write_text(text.replace("meta-llama/Llama-3.1-8B-Instruct", "llama-next"))


def test_a_backend_whose_replicas_carry_no_version_never_starts_a_rollout(root: Path) -> None:
    """Cloud replicas do not report a version yet: a rollout there would never see its new
    replicas and would launch for ever. So no version is registered at all."""
    rec = rig(root, versions=False)
    rec.run_pass(apply=True)
    change_model(root)
    rec = rig(root, versions=False)
    result = rec.run_pass(apply=True)
    assert result.decision.memory.versions == ()
    assert all(x.version == 1 for x in result.decision.launches)


def test_the_record_keeps_what_each_version_in_use_runs(root: Path) -> None:
    rec = rig(root, versions=True)
    rec.run_pass(apply=True)
    first = rec.records.load()
    assert [v.number for v in first.memory.versions] == [1]
    assert set(first.version_specs) == {1}
    change_model(root)
    rec = rig(root, versions=True)
    assert isinstance(rec.cloud, FakeBackend)
    rec.cloud.managed_replicas = [  # two v1 replicas serve (the fake's Terraform creates none)
        ManagedReplica(f"local-1a-spot-{i}", "local-1a", Market.SPOT, stack="local-1")
        for i in range(2)
    ]
    result = rec.run_pass(apply=True)
    record = rec.records.load()
    assert record.memory.version == 2 and result.decision.reasons[0].startswith("version 2")
    assert record.version_specs[2]["envs"]["MODEL_NAME"] == "llama-next"
    assert 1 in record.version_specs  # its replicas still run
    assert all(x.version == 2 for x in result.decision.launches)
    # The plan diff for review says which step of the update this is.
    assert result.plan_file is not None
    target = result.decision.target
    assert f"Update: rolling llama v1 → v2: 0 of {target} replaced" in result.plan_file.read_text()


def test_history_and_rollback_answer_in_one_line(root: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(main, ["history", "llama", "--root", str(root)])
    assert out.exit_code == 0 and "has no versions yet" in out.output
    out = runner.invoke(main, ["rollback", "llama", "--root", str(root)])
    assert out.exit_code == 1
    assert out.output.strip() == (
        "Error: llama: no earlier version was ready: there is nothing to roll back to"
    )
    out = runner.invoke(main, ["rollback", "llama", "0", "--root", str(root)])
    assert out.exit_code == 2 and "Traceback" not in out.output
