"""Plans as review artefacts (issue 16): `plan --out DIR` keeps the saved plans, their
`show -json`, plan.md and a manifest; `apply --plan DIR` applies exactly those, or refuses
in one line with exit code 4 when a state, the service file or the version moved. Terraform
is faked here (reconciler.terraform.fake); tests/e2e/test_reviewed_plans.py runs it real."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from reconciler.backends.fake import FakeBackend
from reconciler.backends.sandbox import SandboxSettings
from reconciler.cli import main
from reconciler.engine import commands
from reconciler.engine.reconcile import Reconciler
from reconciler.engine.saved_plans import apply_plan_dir, read_manifest, write_plan_dir
from reconciler.errors import InputError, StalePlanError
from reconciler.paths import ServicePaths
from reconciler.policy import Market
from reconciler.spec import load_spec
from reconciler.stacks import ManagedReplica
from reconciler.terraform.fake import FakeTerraformRunner

REPO = Path(__file__).resolve().parents[2]
STACKS = ("front", "local-1", "local-2")
SECRET = "hunter2-do-not-post"


def state(serial: int, lineage: str = "11111111-aaaa") -> bytes:
    return json.dumps({"version": 4, "lineage": lineage, "serial": serial}).encode()


def plan_json(stack: str) -> dict[str, Any]:
    if stack != "local-1":
        return {"format_version": "0.2", "terraform_version": "1.0.3", "resource_changes": []}
    return {
        "format_version": "0.2",
        "terraform_version": "1.0.3",
        "variables": {"env": {"value": {"HF_TOKEN": SECRET}}},  # never kept
        "resource_changes": [{
            "address": 'module.stack.null_resource.replica["local-1a-spot-9"]',
            "mode": "managed", "type": "null_resource", "name": "replica",
            "index": "local-1a-spot-9",
            "change": {"actions": ["create"], "before": None,
                       "after": {"triggers": {"market": "spot", "zone": "local-1a",
                                              "token": SECRET}},
                       "after_sensitive": {"triggers": {"token": True}}},
        }],
    }  # fmt: skip


def rig(tmp_path: Path) -> tuple[Reconciler, dict[str, FakeTerraformRunner]]:
    root = tmp_path / "root"
    (root / "services").mkdir(parents=True)
    shutil.copy(REPO / "services" / "llama.yaml", root / "services" / "llama.yaml")
    (root / "terraform").symlink_to(REPO / "terraform")
    paths = ServicePaths.for_service("llama", root=root)
    spec = load_spec(paths.spec_file)
    backend = FakeBackend(spec, paths.sandbox_dir)
    backend.managed_replicas = [
        ManagedReplica("local-1a-spot-0", "local-1a", Market.SPOT, stack="local-1"),
        ManagedReplica("local-1b-spot-1", "local-1b", Market.SPOT, stack="local-1"),
    ]
    fakes = {
        name: FakeTerraformRunner(
            name=name,
            changed=name == "local-1",
            plan_json=plan_json(name),
            pulled=state(3),
            plan_dir=tmp_path / "terraform-plans",
        )
        for name in STACKS
    }
    rec = Reconciler(paths, spec, SandboxSettings(lb_port=1), backend=backend,
                     runner_factory=lambda stack, *_: fakes[stack])  # fmt: skip
    rec.plan_cache = False
    return rec, fakes


def plan_out(rec: Reconciler, out: Path, fmt: str = "github") -> list[Path]:
    result = rec.run_pass(apply=False)
    assert not result.failed
    return write_plan_dir(rec, result, out, fmt)


def applies(fakes: dict[str, FakeTerraformRunner]) -> dict[str, list[Any]]:
    return {n: [arg for c, arg in f.calls if c == "apply"] for n, f in fakes.items()}


def test_plan_out_writes_each_stacks_plan_and_a_manifest(tmp_path: Path) -> None:
    rec, _ = rig(tmp_path)
    out = tmp_path / "review" / "pr-7"  # created, parents too
    written = plan_out(rec, out)
    assert written[0] == out / "plan.md"
    assert out.stat().st_mode & 0o777 == 0o700 and (out / "local-1").stat().st_mode & 0o777 == 0o700
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    plan_out(rec, shared)
    assert shared.stat().st_mode & 0o777 == 0o755  # a directory the user made keeps its mode
    for stack in STACKS:
        assert (out / stack / "tfplan").read_bytes().startswith(b"fake plan of " + stack.encode())
        assert json.loads((out / stack / "plan.json").read_text())["terraform_version"] == "1.0.3"
    manifest = json.loads((out / "manifest.json").read_text())
    spec = rec.paths.spec_file.read_bytes()
    assert manifest["spec_sha256"] == hashlib.sha256(spec).hexdigest()
    assert manifest["policy"] == "hedgeform" and manifest["terraform_version"] == "1.0.3"
    assert manifest["stacks"]["local-1"] == {
        "changed": True,
        "lineage": "11111111-aaaa",
        "serial": 3,
        "tfplan_sha256": hashlib.sha256((out / "local-1" / "tfplan").read_bytes()).hexdigest(),
    }
    assert manifest["stacks"]["front"]["changed"] is False
    assert "Plan: 1 to create" in manifest["summary"]
    text = (out / "plan.md").read_text()
    assert "| `local-1a-spot-9` | create | local-1a | spot |" in text
    assert str(rec.paths.root) not in text


def test_a_second_out_into_the_same_directory_drops_stacks_of_the_first(tmp_path: Path) -> None:
    rec, _ = rig(tmp_path)
    out = tmp_path / "out"
    plan_out(rec, out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["stacks"]["local-9"] = manifest["stacks"]["local-1"]  # a stack since removed
    (out / "manifest.json").write_text(json.dumps(manifest))
    (out / "local-9").mkdir()
    (out / "local-9" / "tfplan").write_text("old")
    (out / "local-1" / "notes.txt").write_text("the reviewer's")
    plan_out(rec, out)
    assert not (out / "local-9").exists()
    assert (out / "local-1" / "notes.txt").read_text() == "the reviewer's"  # not ours: kept
    assert set(json.loads((out / "manifest.json").read_text())["stacks"]) == set(STACKS)


def test_no_secret_in_plan_md_or_plan_json(tmp_path: Path) -> None:
    rec, _ = rig(tmp_path)
    out = tmp_path / "out"
    plan_out(rec, out)
    for path in (out / "plan.md", out / "local-1" / "plan.json", out / "manifest.json"):
        assert SECRET not in path.read_text(), path
    assert "(sensitive)" in (out / "local-1" / "plan.json").read_text()
    assert "variables" not in json.loads((out / "local-1" / "plan.json").read_text())


def test_the_same_inputs_give_the_same_document(tmp_path: Path) -> None:
    rec, _ = rig(tmp_path)
    plan_out(rec, tmp_path / "a")
    plan_out(rec, tmp_path / "b")
    assert (tmp_path / "a" / "plan.md").read_bytes() == (tmp_path / "b" / "plan.md").read_bytes()


@pytest.mark.parametrize("fmt", ["gitlab", "plain"])
def test_the_format_is_the_documents(tmp_path: Path, fmt: str) -> None:
    rec, _ = rig(tmp_path)
    plan_out(rec, tmp_path / "out", fmt)
    text = (tmp_path / "out" / "plan.md").read_text()
    assert ("<details>" in text) is (fmt == "gitlab")


def test_apply_plan_applies_exactly_the_saved_plans_and_records(tmp_path: Path) -> None:
    rec, fakes = rig(tmp_path)
    out = tmp_path / "out"
    result = rec.run_pass(apply=False)
    write_plan_dir(rec, result, out, "github")
    assert rec.records.load().memory == result.record_before.memory  # a plan records nothing
    done = apply_plan_dir(rec, out, read_manifest(out, "llama"))
    assert done.stacks == ["local-1"] and not done.errors
    copy = rec.paths.stack_dir("local-1") / "hedgeform.reviewed.tfplan"
    assert applies(fakes) == {"front": [], "local-1": [copy], "local-2": []}
    assert not copy.exists() and (out / "local-1" / "tfplan").is_file()  # DIR as reviewed
    assert not any(c == "plan" for c, _ in fakes["local-1"].calls[-2:])  # no new plan
    assert result.record_after is not None
    assert rec.records.load().memory == result.record_after.memory


def test_a_moved_state_serial_is_refused_before_any_stack_is_applied(tmp_path: Path) -> None:
    rec, fakes = rig(tmp_path)
    out = tmp_path / "out"
    plan_out(rec, out)
    fakes["local-2"].pulled = state(4)  # e.g. a pass replaced a replica there
    with pytest.raises(StalePlanError) as refused:
        apply_plan_dir(rec, out, read_manifest(out, "llama"))
    message = str(refused.value)
    assert "\n" not in message and message.startswith("stale plan: stack local-2's state moved")
    assert "(serial 3 -> 4)" in message
    assert "nothing was applied" in message
    assert all(not calls for calls in applies(fakes).values())


def test_a_new_lineage_a_changed_spec_or_version_is_refused(tmp_path: Path) -> None:
    rec, fakes = rig(tmp_path)
    out = tmp_path / "out"
    plan_out(rec, out)
    fakes["front"].pulled = state(3, lineage="22222222-bbbb")
    with rec.paths.spec_file.open("a") as fh:
        fh.write("# edited after the review\n")
    with pytest.raises(StalePlanError) as refused:
        apply_plan_dir(rec, out, read_manifest(out, "llama"))
    message = str(refused.value)
    assert "stack front's state moved (lineage 11111111-aaaa serial 3 -> lineage 22222222-bbbb" \
        in message and "llama.yaml changed" in message  # fmt: skip
    assert all(not calls for calls in applies(fakes).values())


def test_a_settings_or_sidecar_file_written_after_the_review_is_refused(tmp_path: Path) -> None:
    """The plan is decided from the service file and the files beside it: cloud settings
    (`<name>.settings.yaml`) and the Hedgeform sidecar (`<name>.hedgeform.yaml`). One added
    or changed after the review makes the plan stale (before: only the service file's hash
    was checked, so a new settings file applied a plan decided without it)."""
    rec, fakes = rig(tmp_path)
    out = tmp_path / "out"
    plan_out(rec, out)
    assert read_manifest(out, "llama")["inputs_sha256"] == {
        "llama.yaml": hashlib.sha256(rec.paths.spec_file.read_bytes()).hexdigest(),
        "llama.settings.yaml": None,
        "llama.hedgeform.yaml": None,
    }
    rec.paths.settings_file.write_text("aws_vpc_id: vpc-0123\n")
    (rec.paths.spec_file.parent / "llama.hedgeform.yaml").write_text("mix: {}\n")
    with pytest.raises(StalePlanError) as refused:
        apply_plan_dir(rec, out, read_manifest(out, "llama"))
    message = str(refused.value)
    assert "llama.settings.yaml changed" in message and "llama.hedgeform.yaml changed" in message
    assert "llama.yaml changed" not in message
    assert all(not calls for calls in applies(fakes).values())


def test_terraforms_own_stale_check_is_the_same_refusal(tmp_path: Path) -> None:
    rec, fakes = rig(tmp_path)
    out = tmp_path / "out"
    plan_out(rec, out)
    fakes["local-1"].pulled = b""  # a state our check cannot see move (no serial to bump)
    manifest = read_manifest(out, "llama")
    manifest["stacks"]["local-1"].update(lineage=None, serial=None)
    other = fakes["local-1"].plan(None)
    fakes["local-1"].apply_saved_plan(other.plan_path)  # someone applied another plan
    with pytest.raises(StalePlanError, match="Terraform says stack local-1's saved plan is stale"):
        apply_plan_dir(rec, out, manifest)


def test_a_tampered_saved_plan_is_refused(tmp_path: Path) -> None:
    rec, fakes = rig(tmp_path)
    out = tmp_path / "out"
    plan_out(rec, out)
    (out / "local-1" / "tfplan").write_bytes(b"something else")
    with pytest.raises(InputError, match="not the plan the manifest names"):
        apply_plan_dir(rec, out, read_manifest(out, "llama"))
    assert all(not calls for calls in applies(fakes).values())


def test_every_kept_file_is_checked_against_the_manifest(tmp_path: Path) -> None:
    """From the user-eye check: the record (whose memory and reviewed texts are saved on
    apply) and the saved plan of a stack that changes nothing were not checked."""
    rec, fakes = rig(tmp_path)
    out = tmp_path / "out"
    plan_out(rec, out)
    record = out / "record.json"
    kept = record.read_bytes()
    record.write_bytes(kept.replace(b'"lb_epoch": 0', b'"lb_epoch": 7'))
    with pytest.raises(InputError, match=r"record\.json is not the record the manifest names"):
        apply_plan_dir(rec, out, read_manifest(out, "llama"))
    record.write_bytes(kept)
    (out / "front" / "tfplan").write_bytes(b"something else")  # front changes nothing
    with pytest.raises(InputError, match="front/tfplan is not the plan the manifest names"):
        apply_plan_dir(rec, out, read_manifest(out, "llama"))
    assert all(not calls for calls in applies(fakes).values())


def test_a_manifest_whose_service_digest_was_edited_is_stale(tmp_path: Path) -> None:
    rec, _ = rig(tmp_path)
    out = tmp_path / "out"
    plan_out(rec, out)
    manifest = read_manifest(out, "llama")
    manifest["inputs_sha256"]["llama.yaml"] = "0" * 64
    with pytest.raises(StalePlanError, match=r"llama\.yaml changed"):
        apply_plan_dir(rec, out, manifest)


# -- the command line ---------------------------------------------------------------------


@pytest.fixture
def cli_rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, FakeTerraformRunner]:
    rec, fakes = rig(tmp_path)
    monkeypatch.setattr(commands, "_reconciler", lambda *a, **k: rec)
    monkeypatch.setattr(commands, "_print_status", lambda rec: None)
    return fakes


def hedgeform(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_the_commands_plan_out_and_apply_plan(
    tmp_path: Path, cli_rig: dict[str, FakeTerraformRunner]
) -> None:
    out = tmp_path / "out"
    code, stdout, _ = hedgeform("plan", "llama", "--out", str(out), "--format", "plain")
    assert code == 0, stdout
    assert f"review: {out / 'plan.md'}" in stdout
    assert (out / "plan.md").read_text().startswith("Plan for llama\n")
    code, stdout, stderr = hedgeform("apply", "llama", "--plan", str(out))
    assert code == 0, stderr
    assert "applied the reviewed plan of local-1: Plan: 1 to create" in stdout


def test_a_stale_plan_exits_4_in_one_line(
    tmp_path: Path, cli_rig: dict[str, FakeTerraformRunner]
) -> None:
    out = tmp_path / "out"
    assert hedgeform("plan", "llama", "--out", str(out))[0] == 0
    cli_rig["local-1"].pulled = state(9)
    code, _, stderr = hedgeform("apply", "llama", "--plan", str(out))
    assert code == commands.EXIT_STALE_PLAN == 4
    assert stderr.count("\n") == 1 and stderr.startswith("error: stale plan: stack local-1's")
    assert all(not calls for calls in applies(cli_rig).values())


@pytest.mark.parametrize("what", ["file", "missing"])
def test_bad_directories_are_one_line(
    tmp_path: Path, cli_rig: dict[str, FakeTerraformRunner], what: str
) -> None:
    path = tmp_path / "x"
    if what == "file":
        path.write_text("not a directory")
        code, _, stderr = hedgeform("plan", "llama", "--out", str(path))
        assert code == 1 and stderr == f"Error: --out {path}: not a directory (give a " \
            "directory to write the plan to)\n"  # fmt: skip
        assert not any(c == "plan" for f in cli_rig.values() for c, _ in f.calls)
    code, _, stderr = hedgeform("apply", "llama", "--plan", str(path))
    assert code == 1 and stderr.count("\n") == 1
    assert "not a directory written by `hedgeform plan --out`" in stderr


def test_out_inside_state_and_format_without_out_are_one_line(
    tmp_path: Path, cli_rig: dict[str, FakeTerraformRunner]
) -> None:
    """From the user-eye check: `--out state/llama` dropped plans into Terraform's working
    directories, and `--format` without `--out` was silently ignored."""
    inside = tmp_path / "root" / "state" / "llama"
    code, _, stderr = hedgeform("plan", "llama", "--out", str(inside))
    assert code == 1 and stderr.count("\n") == 1 and "where Terraform works" in stderr
    code, _, stderr = hedgeform("plan", "llama", "--format", "gitlab")
    assert code == 1 and stderr.count("\n") == 1 and "give --out too" in stderr
    assert not any(c == "plan" for f in cli_rig.values() for c, _ in f.calls)


def test_another_policy_than_the_plans_is_refused(
    tmp_path: Path, cli_rig: dict[str, FakeTerraformRunner]
) -> None:
    out = tmp_path / "out"
    assert hedgeform("plan", "llama", "--out", str(out))[0] == 0
    code, _, stderr = hedgeform("apply", "llama", "--plan", str(out), "--policy", "spothedge")
    assert code == 1
    assert stderr == f"Error: --policy spothedge: the plan in {out} was made with policy " \
        "hedgeform\n"  # fmt: skip
    assert all(not calls for calls in applies(cli_rig).values())
    code, _, _ = hedgeform("apply", "llama", "--plan", str(out), "--policy", "hedgeform")
    assert code == 0


def test_a_malformed_manifest_is_one_line(tmp_path: Path) -> None:
    rec, _ = rig(tmp_path)
    out = tmp_path / "out"
    plan_out(rec, out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["stacks"]["../etc"] = manifest["stacks"].pop("local-1")
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match=r"stack name '\.\./etc' is not a plain name"):
        read_manifest(out, "llama")
    with pytest.raises(InputError, match="a plan of service 'llama', not 'other'"):
        read_manifest(out, "other")


def test_help_explains_the_options_and_exit_codes() -> None:
    plan_help = CliRunner().invoke(main, ["plan", "--help"]).output
    assert "--out DIR" in plan_help and "--format [github|gitlab|plain]" in plan_help
    apply_help = " ".join(CliRunner().invoke(main, ["apply", "--help"]).output.split())
    assert "--plan DIR" in apply_help and "4 the --plan is stale" in apply_help
