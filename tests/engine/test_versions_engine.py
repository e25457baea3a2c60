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
    # ... and so do `plan` and `apply` themselves (it was only in the plan file).
    assert result.rollout == f"rolling llama v1 → v2: 0 of {target} replaced"


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


@pytest.mark.parametrize(
    ("args", "overprovision", "refused"),
    [
        (["--mode", "blue_green", "--max-surge", "0"], 1, "blue_green"),
        (["--max-surge", "0"], 0, "num_overprovision 0"),
        (["--max-surge", "0"], 1, None),  # rolling has the spare's room: one at a time
    ],
)
def test_a_max_surge_that_could_never_start_a_rollout_is_refused(
    root: Path, args: list[str], overprovision: int, refused: str | None
) -> None:
    """Verification found `--max-surge 0` stalled a rollout for good (the new fleet had no
    room beside the old) while `apply` exited 0 and a later `--max-surge 1` could not undo
    it. Refused up front now, in one line, as Kubernetes refuses maxSurge 0 with
    maxUnavailable 0."""
    path = root / "services" / "llama.yaml"
    text = path.read_text()
    assert "num_overprovision: 1" in text
    path.write_text(text.replace("num_overprovision: 1", f"num_overprovision: {overprovision}"))
    if refused is None:
        from reconciler.policy.rollout import surge_refusal

        assert surge_refusal("rolling", 0, overprovision) is None
        return
    out = CliRunner().invoke(main, ["apply", "llama", "--root", str(root), *args])
    assert out.exit_code == 1, out.output
    line = out.output.strip()
    assert "\n" not in line and refused in line and line.startswith("Error: --max-surge 0")


def test_history_marks_what_rollback_can_return_to_and_refusals_say_why(root: Path) -> None:
    """Verification found `rollback llama 1` refused with "only versions still in use are
    kept" while history listed v1 as ready, and `rollback` to the failed version the file
    still holds told the user to change the file back to what it already says."""
    from dataclasses import replace as with_

    from reconciler.policy.rollout import register
    from reconciler.policy.rollout import rollback as roll_back

    rec = rig(root, versions=True)
    rec.run_pass(apply=True)
    record = rec.records.load()
    memory = record.memory
    for n in (2, 3):
        memory, _ = register(memory, f"f{n}", f"r{n}", 100.0 * n)
        memory = with_(memory, stable_version=n, versions=tuple(
            with_(v, state="ready") if v.number == n else v for v in memory.versions
        ))  # fmt: skip
    memory, _ = register(memory, "f4", "r4", 400.0)
    memory = roll_back(memory, 3, "two replicas crashed")  # v4 failed, back to v3
    rec.records.save(with_(record, memory=memory, version_specs={3: {"run": "x"}}))
    runner = CliRunner()
    out = runner.invoke(main, ["history", "llama", "--root", str(root)])
    rows = {line.split()[0].lstrip("*"): line for line in out.output.splitlines()[1:5]}
    assert rows["v3"].split()[5] == "yes" and rows["v1"].split()[5] == "-"
    assert rows["v4"].split()[5] == "-"  # failed: `rollback` never returns to it
    out = runner.invoke(main, ["rollback", "llama", "1", "--root", str(root)])
    assert out.exit_code == 1 and out.output.count("\n") == 1
    assert "no longer kept" in out.output and "hedgeform history llama" in out.output
    out = runner.invoke(main, ["rollback", "llama", "4", "--root", str(root)])
    assert out.exit_code == 1 and out.output.count("\n") == 1, out.output
    assert "v4 failed (two replicas crashed); to try it again, edit the service file" in out.output


@pytest.mark.parametrize(
    ("given", "number"), [("v6", 6), ("V6", 6), ("6", 6), ("1000000000", 10**9)]
)
def test_rollback_takes_a_version_as_history_writes_it(root: Path, given: str, number: int) -> None:
    """Third verification: `history` and `status` write `v6`; `rollback llama v6` was a usage
    error. Both forms name the same version; anything else is one line, exit 2."""
    out = CliRunner().invoke(main, ["rollback", "llama", given, "--root", str(root)])
    assert out.exit_code == 1 and f"version {number} is not in the history" in out.output


@pytest.mark.parametrize("given", ["v", "v0", "0", "-1", "6a", "10000000000", "٦"])
def test_a_version_that_is_no_version_is_a_usage_error(root: Path, given: str) -> None:
    out = CliRunner().invoke(main, ["rollback", "llama", "--root", str(root), "--", given])
    assert out.exit_code == 2 and "is not a version" in out.output, out.output
