"""python-terraform 0.10.1 (2019) against Terraform 1.x: each measured quirk, shown on the raw
library (so an upgrade that fixes or changes one is noticed) next to the adapter's handling.
The raw calls fail in flag parsing or before any provider runs, so they take ~0.1 s each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from python_terraform import Terraform

from reconciler.terraform.binaries import ToolPaths
from reconciler.terraform.runner import CliTerraformRunner
from tests.terraform.conftest import RunnerFactory, write_vars

# python-terraform logs failures with the deprecated `log.warn`.
pytestmark = pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated")


@pytest.fixture
def raw(tools: ToolPaths, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Terraform:
    """The raw library on an initialised stack (it only ever uses os.environ)."""
    monkeypatch.setenv("TF_CLI_CONFIG_FILE", str(tools.cli_config))
    return Terraform(working_dir=str(tmp_path / "state" / "svc" / "local-1"),
                     terraform_bin_path=str(tools.terraform))  # fmt: skip


@pytest.fixture
def runner(make_runner: RunnerFactory) -> CliTerraformRunner:
    runner = make_runner()
    write_vars(runner, value="a")
    runner.init()
    return runner


def argv_of(runner: CliTerraformRunner, method: str, *args: object) -> list[str]:
    """The argv the runner would start for `method`, captured instead of run."""
    seen: list[list[str]] = []

    class Stop(Exception):
        pass

    def capture(argv: list[str], *rest: object, **kw: object) -> None:
        seen.append(list(argv))
        raise Stop

    runner._process.run = capture  # type: ignore[method-assign,assignment]
    with pytest.raises(Stop):
        getattr(runner, method)(*args)
    return seen[-1]


def test_destroy_force_is_rejected_so_the_adapter_never_sends_it(
    raw: Terraform, runner: CliTerraformRunner
) -> None:
    code, _, err = raw.destroy()
    assert code == 1 and "flag provided but not defined: -force" in err
    argv = argv_of(runner, "destroy")
    assert "-force" not in argv
    assert "-auto-approve" in argv


def test_apply_of_a_saved_plan_fails_with_any_variables_so_the_adapter_passes_none(
    raw: Terraform, runner: CliTerraformRunner
) -> None:
    plan = runner.plan()
    # Even the default (empty `variables`) becomes a temporary -var-file.
    code, _, err = raw.apply(str(plan.plan_path))
    assert code == 1 and "Can't set variables when applying a saved plan" in err
    argv = argv_of(runner, "apply_saved_plan", plan.plan_path)
    assert not [a for a in argv if a.startswith(("-var=", "-var-file="))]
    assert argv[-1] == str(plan.plan_path)
    assert "-auto-approve=false" in argv  # never plans anew, even if the path were a dir


def test_a_positional_directory_is_rejected_so_the_adapter_uses_the_working_dir(
    raw: Terraform, runner: CliTerraformRunner
) -> None:
    code, _, err = raw.plan(raw.working_dir)
    assert code == 1 and "Too many command line arguments" in err
    argv = argv_of(runner, "plan")
    assert str(runner.stack_dir) not in argv
    assert not [a for a in argv[2:] if not a.startswith("-")]  # flags only


def test_plan_uses_detailed_exitcode_and_lock_timeout(runner: CliTerraformRunner) -> None:
    argv = argv_of(runner, "plan")
    assert argv[:2] == [str(runner.tools.terraform), "plan"]
    for flag in ("-detailed-exitcode", "-input=false", "-no-color", "-lock-timeout=30s"):
        assert flag in argv
    assert f"-out={runner.stack_dir / 'hedgeform.tfplan'}" in argv
    assert f"-var-file={runner.stack_dir / 'terraform.tfvars.json'}" in argv


def test_output_by_name_breaks_so_the_adapter_reads_the_full_json(
    raw: Terraform, runner: CliTerraformRunner
) -> None:
    # A state with one applied output, written by hand (no provider run needed).
    state = {
        "version": 4,
        "terraform_version": "1.0.3",
        "serial": 1,
        "lineage": "test",
        "outputs": {
            "stack": {
                "value": {"url": "http://lb"},
                "type": ["object", {"url": "string"}],
                "sensitive": True,
            }
        },
        "resources": [],
    }
    (runner.stack_dir / "terraform.tfstate").write_text(json.dumps(state))
    with pytest.raises(KeyError):
        raw.output("stack")  # `output -json NAME` is the bare value; the lib indexes ["value"]
    assert runner.output() == {"url": "http://lb"}


def test_synchronous_false_leaks_into_the_command_line() -> None:
    argv = Terraform(terraform_bin_path="terraform").generate_cmd_string("plan", synchronous=False)
    assert "-synchronous=false" in argv  # so the adapter never uses it; it runs processes itself
