"""The CLI runner against the real pinned Terraform 1.0.3 and the null provider mirror."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from reconciler.errors import (
    ApplyError,
    CancelledError,
    InitError,
    LockError,
    PlanError,
    TerraformError,
    TerraformMissingError,
)
from reconciler.terraform.backend import parse_state_backend
from reconciler.terraform.process import group_members
from reconciler.terraform.runner import CliTerraformRunner, drifted
from tests.terraform.conftest import FIXTURES, RunnerFactory, write_vars

ADDRESS = "module.stack.null_resource.this"


def actions(plan_json: dict[str, object]) -> list[list[str]]:
    changes = plan_json.get("resource_changes", [])
    assert isinstance(changes, list)
    return [change["change"]["actions"] for change in changes]


def count_runs(
    runner: CliTerraformRunner, monkeypatch: pytest.MonkeyPatch, seen: list[str] | None = None
) -> list[str]:
    """Record the Terraform subcommand of every process the runner starts."""
    seen = [] if seen is None else seen
    real_run = runner._process.run

    def spy(argv, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(argv[1])
        return real_run(argv, *args, **kwargs)

    monkeypatch.setattr(runner._process, "run", spy)
    return seen


def test_init_uses_only_the_mirror_with_the_network_unreachable(
    make_runner: RunnerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Any registry request would go through this dead proxy and fail.
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    runner = make_runner()
    runner.init()
    lock = (runner.stack_dir / ".terraform.lock.hcl").read_text()
    assert 'provider "registry.terraform.io/hashicorp/null"' in lock
    assert 'version = "2.1.2"' in lock
    root = json.loads((runner.stack_dir / "main.tf.json").read_text())
    source = root["module"]["stack"]["source"]
    assert source.startswith("../")  # referenced in place by a relative path, not copied
    assert (runner.stack_dir / source).resolve() == (FIXTURES / "null_module").resolve()


def test_init_runs_once_and_again_when_the_module_changes(
    make_runner: RunnerFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    module = tmp_path / "module"
    module.mkdir()
    (module / "main.tf").write_text((FIXTURES / "null_module" / "main.tf").read_text())
    runner = make_runner()
    runner.module_dir = module
    runs = count_runs(runner, monkeypatch)
    runner.init()
    runner.init()
    assert runs == ["init"]
    (module / "extra.tf").write_text('output "extra" {\n  value = 1\n}\n')
    runner.init()
    assert runs == ["init", "init"]


def test_concurrent_inits_of_one_stack_are_serialised(
    make_runner: RunnerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    runners = [make_runner() for _ in range(3)]
    runs: list[str] = []
    for runner in runners:
        count_runs(runner, monkeypatch, runs)
    threads = [threading.Thread(target=runner.init) for runner in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert runs == ["init"]  # the others waited on the flock, then found init current


def test_plan_apply_output_converge_and_destroy(make_runner: RunnerFactory) -> None:
    runner = make_runner()
    write_vars(runner, value="a")

    plan = runner.plan()  # exit code 2 under -detailed-exitcode
    assert plan.changed is True
    assert actions(plan.json) == [["create"]]
    assert plan.plan_path.is_file()
    assert runner.state_list() == []

    runner.apply_saved_plan(plan.plan_path)
    assert not plan.plan_path.exists()  # a saved plan is used once
    assert runner.state_list() == [ADDRESS]
    outputs = runner.output()
    assert outputs["value"] == "a"
    assert outputs["id"].isdigit()

    again = runner.plan()  # exit code 0 under -detailed-exitcode
    assert again.changed is False
    assert again.json == {"resource_changes": []}  # no changes: `show` is skipped

    write_vars(runner, value="b")
    replace = runner.plan()
    assert replace.changed is True
    assert actions(replace.json) == [["delete", "create"]]

    runner.destroy()
    assert runner.state_list() == []
    assert runner.output() == {}

    # The state changed since `replace` was planned: Terraform refuses the stale plan.
    with pytest.raises(
        ApplyError, match=r"stack local-1: apply failed: Error: Saved plan is stale"
    ):
        runner.apply_saved_plan(replace.plan_path)


def test_explicit_var_file_and_destroy_plan(make_runner: RunnerFactory, tmp_path: Path) -> None:
    runner = make_runner()
    var_file = tmp_path / "rendered.tfvars.json"
    var_file.write_text(json.dumps({"value": "x"}))
    runner.apply_saved_plan(runner.plan(var_file).plan_path)
    assert runner.output()["value"] == "x"
    teardown = runner.plan(var_file, destroy=True)
    assert teardown.changed is True
    assert actions(teardown.json) == [["delete"]]


def test_apply_refuses_anything_but_a_saved_plan(
    make_runner: RunnerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = make_runner()
    runs = count_runs(runner, monkeypatch)
    with pytest.raises(ApplyError, match="stack local-1: apply failed: no saved plan"):
        runner.apply_saved_plan(runner.stack_dir / "hedgeform.tfplan")
    assert runs == []


def test_undeclared_reference_is_a_plan_error_naming_the_stack(
    make_runner: RunnerFactory,
) -> None:
    runner = make_runner(module="bad_reference", stack="local-2")
    with pytest.raises(PlanError) as info:
        runner.plan()
    err = info.value
    assert err.stack == "local-2"
    assert str(err).startswith(
        "stack local-2: plan failed: Error: Reference to undeclared resource"
    )
    assert "\x1b[" not in str(err) and "\n" not in str(err)
    assert "null_resource.missing" in err.detail


def test_syntax_error_is_an_init_error(make_runner: RunnerFactory) -> None:
    runner = make_runner(module="bad_syntax")
    with pytest.raises(InitError, match=r"^stack local-1: init failed: Error: "):
        runner.plan()


def test_missing_binary_is_terraform_missing_error(
    make_runner: RunnerFactory, tmp_path: Path
) -> None:
    from reconciler.terraform.binaries import ToolPaths

    runner = make_runner()
    broken = ToolPaths(
        tmp_path / "nope" / "terraform", runner.tools.cli_config, runner.tools.mirror
    )
    with pytest.raises(TerraformMissingError, match="cannot run"):
        make_runner(tools_override=broken).init()


def test_home_content_is_never_used(make_runner: RunnerFactory, empty_home: Path) -> None:
    """A poisoned ~/.terraformrc and ~/.terraform.d/plugins must not matter."""
    (empty_home / ".terraformrc").write_text(
        'provider_installation {\n  filesystem_mirror {\n    path = "/nonexistent"\n  }\n}\n'
    )
    fake = (
        empty_home
        / ".terraform.d/plugins/registry.terraform.io/hashicorp/null/2.1.2/linux_amd64"
        / "terraform-provider-null_v2.1.2_x4"
    )
    fake.parent.mkdir(parents=True)
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    runner = make_runner()
    write_vars(runner, value="a")
    assert runner.plan().changed is True  # init installed, and plan ran, the pinned provider
    assert runner.env["HOME"] == str(empty_home)
    lock = (runner.stack_dir / ".terraform.lock.hcl").read_text()
    assert 'version = "2.1.2"' in lock


def _wait_for(predicate: object, timeout_s: float = 10.0) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


class _Background:
    """Run a runner call in a thread and keep its exception."""

    def __init__(self, func: object) -> None:
        assert callable(func)
        self.error: BaseException | None = None

        def target() -> None:
            try:
                func()
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()


def test_second_apply_fails_fast_with_lock_error(make_runner: RunnerFactory) -> None:
    holder = make_runner()
    write_vars(holder, value="a", sleep_seconds=2)
    plan = holder.plan()
    lock_info = holder.stack_dir / ".terraform.tfstate.lock.info"
    running = _Background(lambda: holder.apply_saved_plan(plan.plan_path))
    _wait_for(lock_info.exists)

    other = make_runner(lock_timeout_s=0)
    started = time.monotonic()
    with pytest.raises(LockError, match="stack local-1: apply failed: Error: Error acquiring"):
        other.apply_saved_plan(plan.plan_path)
    with pytest.raises(LockError, match="plan failed"):
        other.plan()
    assert time.monotonic() - started < 2

    running.thread.join(20)
    assert running.error is None
    assert holder.state_list() == [ADDRESS]


@pytest.mark.slow
def test_lock_timeout_waits_for_the_other_run(make_runner: RunnerFactory) -> None:
    holder = make_runner()
    write_vars(holder, value="a", sleep_seconds=2)
    plan = holder.plan()
    running = _Background(lambda: holder.apply_saved_plan(plan.plan_path))
    _wait_for((holder.stack_dir / ".terraform.tfstate.lock.info").exists)
    waiter = make_runner(lock_timeout_s=30)
    assert waiter.plan().changed is False  # waited for the lock, then saw the applied state
    running.thread.join(20)
    assert running.error is None


def _sleeping_apply(runner: CliTerraformRunner) -> tuple[_Background, int]:
    write_vars(runner, value="a", sleep_seconds=30)
    plan = runner.plan()
    running = _Background(lambda: runner.apply_saved_plan(plan.plan_path))
    _wait_for(lambda: runner._process._proc is not None)
    proc = runner._process._proc
    assert proc is not None
    pgid = proc.pid
    # Wait until the provisioner's `sleep 30` runs inside the group.
    _wait_for(lambda: len(group_members(pgid)) >= 3)
    return running, pgid


def test_cancel_stops_the_whole_group_and_releases_the_lock(make_runner: RunnerFactory) -> None:
    runner = make_runner(sigint_grace_s=10, sigterm_grace_s=5)
    running, pgid = _sleeping_apply(runner)
    time.sleep(1)

    started = time.monotonic()
    runner.cancel()
    cancel_s = time.monotonic() - started
    running.thread.join(10)

    assert not running.thread.is_alive()
    assert isinstance(running.error, CancelledError)
    assert str(running.error) == "stack local-1: apply failed: cancelled; Terraform was stopped"
    assert group_members(pgid) == []
    assert cancel_s < 8
    assert not (runner.stack_dir / ".terraform.tfstate.lock.info").exists()
    # The lock is free: a plan that refuses to wait succeeds.
    assert make_runner(lock_timeout_s=0).plan().changed is True


def test_command_timeout_stops_the_group(make_runner: RunnerFactory) -> None:
    runner = make_runner()
    write_vars(runner, value="a", sleep_seconds=30)
    plan = runner.plan()
    timed = make_runner(command_timeout_s=1.5, sigint_grace_s=10)
    with pytest.raises(CancelledError, match=r"timed out after 1\.5s"):
        timed.apply_saved_plan(plan.plan_path)
    assert make_runner(lock_timeout_s=0).plan().changed is True


def test_cancel_before_a_command_cancels_the_next_one(make_runner: RunnerFactory) -> None:
    runner = make_runner()
    runner.cancel()
    with pytest.raises(CancelledError):
        runner.init()
    runner.init()  # the cancel was used up


def test_errors_are_terraform_errors(make_runner: RunnerFactory) -> None:
    runner = make_runner(module="bad_reference")
    with pytest.raises(TerraformError):
        runner.plan()


def test_a_state_left_in_another_backend_is_refused_before_init(
    make_runner: RunnerFactory,
) -> None:
    """python-terraform's `init -reconfigure` would silently start an empty state in the new
    backend (and the next plan a second fleet): the runner refuses in one line instead, and
    says how to move the state. Checked before any network access."""
    runner = make_runner(service="svc")
    write_vars(runner, value="a")
    runner.apply_saved_plan(runner.plan().plan_path)
    assert json.loads(runner.state_pull())["resources"]  # local: the file, through Terraform
    backend = parse_state_backend("s3://hf-state?dynamodb_table=hf-locks&region=us-east-1", "test")
    moved = make_runner(service="svc", state_backend=backend)
    with pytest.raises(InitError) as caught:
        moved.plan()
    message = str(caught.value)
    assert "`hedgeform state migrate svc`" in message and "\n" not in message, message
    config = json.loads((moved.stack_dir / "main.tf.json").read_text())
    assert config["terraform"]["backend"]["s3"]["key"] == "svc/local-1/terraform.tfstate"
    # Back to local: the state is where it was, and nothing is refused.
    assert make_runner(service="svc").plan().changed is False


def test_only_writing_state_ties_a_stack_to_its_backend(make_runner: RunnerFactory) -> None:
    """A read-only `status` or `plan` under a backend URL that is then corrected must not
    make the corrected URL look like a move (it was refused with "migrate first" although
    nothing was ever stored): the backend is recorded when state is first written."""
    from reconciler.terraform.runner import _BACKEND_STAMP

    runner = make_runner(service="svc")
    write_vars(runner, value="a")
    result = runner.plan()
    assert not (runner.stack_dir / _BACKEND_STAMP).exists()
    runner.apply_saved_plan(result.plan_path)
    assert (runner.stack_dir / _BACKEND_STAMP).is_file()


def test_refresh_only_plan_reads_drift_and_never_plans_the_configuration(
    make_runner: RunnerFactory,
) -> None:
    """`hedgeform drift`'s plan: `-refresh-only`, so a changed configuration proposes no
    replacement (a plain plan would: see above); its plan file is gone afterwards and the
    state is untouched. The null provider has nothing to refresh, so no drift is found."""
    runner = make_runner()
    write_vars(runner, value="a")
    runner.apply_saved_plan(runner.plan().plan_path)
    state = (runner.stack_dir / "terraform.tfstate").read_bytes()

    write_vars(runner, value="b")  # a plain plan now replaces null_resource.this
    refresh = runner.plan_refresh_only()
    assert refresh.changed is False
    assert not refresh.plan_path.exists()  # read, never applied
    assert not [a for a in actions(refresh.json) if a != ["no-op"]]
    assert drifted(refresh.json) == []
    assert "format_version" in refresh.json  # `show -json` ran even with nothing changed
    assert (runner.stack_dir / "terraform.tfstate").read_bytes() == state
    assert actions(runner.plan().json) == [["delete", "create"]]


def test_refresh_only_plan_errors_name_the_command(make_runner: RunnerFactory) -> None:
    runner = make_runner("bad_reference")
    write_vars(runner, value="a")
    with pytest.raises(PlanError, match=r"stack local-1: plan -refresh-only failed"):
        runner.plan_refresh_only()
