"""`hedgeform install-timer`: rendered units, refusals, dry run, and the systemctl steps.

Nothing here touches /etc or the real systemctl: units go to a temp --unit-dir, and a fake
`systemctl` first on PATH records its argv (and fails on request).
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from reconciler.errors import UnitValueError
from reconciler.ops.timers import (
    cron_sh,
    install_timer,
    protect_system_ok,
    sd_arg,
    sd_env,
    sd_exec,
    sd_path,
)

REPO = Path(__file__).resolve().parents[2]
HEDGEFORM = str(Path(sys.executable).absolute().parent / "hedgeform")
SENTINEL = "hf_sentinel_value_8c1f2e"
FAKE_SYSTEMCTL = """#!/bin/sh
echo "$*" >> "$FAKE_SYSTEMCTL_LOG"
if [ -n "$FAKE_SYSTEMCTL_FAIL" ]; then
  echo "System has not been booted with systemd as init system (PID 1). Can't operate." >&2
  echo "Failed to connect to bus: Host is down" >&2
  exit 1
fi
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A project root with a space in its path (quoting) and the llama service."""
    project = tmp_path / "my project"
    (project / "services").mkdir(parents=True)
    shutil.copy(REPO / "services" / "llama.yaml", project / "services" / "llama.yaml")
    return project


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "systemctl"
    script.write_text(FAKE_SYSTEMCTL)
    script.chmod(0o755)
    return bin_dir


@pytest.fixture
def unit_dir(tmp_path: Path) -> Path:
    return tmp_path / "units"


def invoke(
    root: Path,
    fake_bin: Path,
    *args: str,
    fail: bool = False,
    path: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> Result:
    env = {
        "PATH": path if path is not None else f"{fake_bin}{os.pathsep}{os.environ['PATH']}",
        "FAKE_SYSTEMCTL_LOG": str(fake_bin / "calls.log"),
        "FAKE_SYSTEMCTL_FAIL": "1" if fail else "",
        "HF_TOKEN": SENTINEL,
        "HEDGEFORM_LB_PORT": "30123",
        **(extra_env or {}),
    }
    return CliRunner().invoke(install_timer, ["--root", str(root), *args], env=env)


def calls(fake_bin: Path) -> list[str]:
    log = fake_bin / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """systemd's INI-like syntax: [Section], Key=Value (keys may repeat), # or ; comments."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        assert not line.endswith("\\"), f"unexpected continuation: {raw!r}"
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"key outside a section: {raw!r}"
        key, sep, value = line.partition("=")
        assert sep and key.strip() and key.strip().isalnum(), f"not Key=Value: {raw!r}"
        current.append((key.strip(), value.strip()))
    return sections


def one(section: list[tuple[str, str]], key: str) -> str:
    values = [v for k, v in section if k == key]
    assert len(values) == 1, f"{key}: {values}"
    return values[0]


def files_under(directory: Path) -> set[Path]:
    return {p for p in directory.rglob("*") if p.is_file()}


def test_timer_mode_renders_a_oneshot_service_and_a_timer(
    root: Path, fake_bin: Path, unit_dir: Path
) -> None:
    result = invoke(root, fake_bin, "llama", "--dry-run", "--interval", "45")
    assert result.exit_code == 0, result.output
    out = root / "state" / "llama" / "systemd"
    service = parse_unit((out / "hedgeform-llama.service").read_text())
    svc = service["Service"]
    assert one(svc, "Type") == "oneshot"
    assert shlex.split(one(svc, "ExecStart")) == [HEDGEFORM, "apply", "llama", "--no-wait"]
    assert Path(HEDGEFORM).is_absolute()
    assert one(svc, "WorkingDirectory") == str(root.resolve())
    assert one(svc, "User") == pwd.getpwuid(root.stat().st_uid).pw_name
    assert one(svc, "KillMode") == "process"
    assert one(svc, "TimeoutStopSec") == "120"
    assert one(svc, "NoNewPrivileges") == "yes"
    assert one(svc, "EnvironmentFile") == "-/etc/hedgeform/llama.env"
    assert ("Environment", "HEDGEFORM_LB_PORT=30123") in svc
    assert "Install" not in service  # started by the timer, never enabled on its own
    timer = parse_unit((out / "hedgeform-llama.timer").read_text())
    assert one(timer["Timer"], "OnUnitActiveSec") == "45s"
    assert one(timer["Timer"], "OnBootSec") == "30s"
    assert one(timer["Timer"], "AccuracySec") == "1s"
    assert one(timer["Timer"], "Persistent") == "false"
    assert one(timer["Timer"], "Unit") == "hedgeform-llama.service"
    assert one(timer["Install"], "WantedBy") == "timers.target"
    assert "hedgeform-llama.timer ---" in result.output


def test_service_mode_renders_a_restarting_loop(root: Path, fake_bin: Path) -> None:
    result = invoke(root, fake_bin, "llama", "--dry-run", "--mode", "service", "--interval", "20")
    assert result.exit_code == 0, result.output
    out = root / "state" / "llama" / "systemd"
    unit = parse_unit((out / "hedgeform-llama.service").read_text())
    svc = unit["Service"]
    assert one(svc, "Type") == "simple"
    assert shlex.split(one(svc, "ExecStart")) == [HEDGEFORM, "run", "llama", "--interval", "20"]
    assert one(svc, "Restart") == "always"
    assert one(svc, "RestartSec") == "5"
    assert one(unit["Install"], "WantedBy") == "multi-user.target"
    assert not (out / "hedgeform-llama.timer").exists()


def test_no_secret_value_reaches_any_file_or_output(root: Path, fake_bin: Path) -> None:
    spec = root / "services" / "llama.yaml"  # a service that takes a token from the env
    spec.write_text(spec.read_text().replace("envs:\n", "envs:\n  HF_TOKEN: null\n", 1))
    for args in (["--dry-run"], ["--dry-run", "--mode", "service"], ["--dry-run", "--user"]):
        result = invoke(root, fake_bin, "llama", *args)
        assert result.exit_code == 0, result.output
        assert SENTINEL not in result.output
        assert "HF_TOKEN" in result.output  # named, so the user knows what the env file needs
    for path in files_under(root / "state"):
        assert SENTINEL not in path.read_text(), path


def test_an_unsafe_setting_value_is_refused(root: Path, fake_bin: Path, unit_dir: Path) -> None:
    result = invoke(
        root,
        fake_bin,
        "llama",
        "--unit-dir",
        str(unit_dir),
        extra_env={"HEDGEFORM_LB_PORT": "30001\nExecStartPre=/bin/evil"},
    )
    assert result.exit_code != 0
    assert "control character" in result.output
    assert not unit_dir.exists()
    assert calls(fake_bin) == []


@pytest.mark.parametrize("name", ["../x", "A", "", "-x", "a/b", "llama\n"])
def test_bad_service_names_are_refused(root: Path, fake_bin: Path, name: str) -> None:
    result = invoke(root, fake_bin, "--dry-run", "--", name)
    assert result.exit_code != 0
    assert "not a plain name" in result.output
    assert not (root / "state").exists()


def test_a_missing_service_file_is_refused(root: Path, fake_bin: Path, unit_dir: Path) -> None:
    result = invoke(root, fake_bin, "nosuch", "--unit-dir", str(unit_dir))
    assert result.exit_code != 0
    assert "no such service file" in result.output
    assert not unit_dir.exists() and not (root / "state").exists()
    assert calls(fake_bin) == []


def test_a_bad_spec_is_refused_before_installing(
    root: Path, fake_bin: Path, unit_dir: Path
) -> None:
    (root / "services" / "broken.yaml").write_text("service:\n  replica_policy: [\n")
    result = invoke(root, fake_bin, "broken", "--unit-dir", str(unit_dir))
    assert result.exit_code != 0
    assert "broken.yaml" in result.output
    assert not unit_dir.exists()
    assert calls(fake_bin) == []


def test_dry_run_writes_only_under_state_service_systemd(
    root: Path, fake_bin: Path, unit_dir: Path
) -> None:
    before = files_under(root)
    result = invoke(root, fake_bin, "llama", "--dry-run", "--unit-dir", str(unit_dir))
    assert result.exit_code == 0, result.output
    new = files_under(root) - before
    out = root / "state" / "llama" / "systemd"
    assert {p.name for p in new} == {
        "hedgeform-llama.service",
        "hedgeform-llama.timer",
        "hedgeform-llama.crontab",
    }
    assert all(p.parent == out for p in new)
    assert not unit_dir.exists()
    assert calls(fake_bin) == []
    assert "nothing installed" in result.output


def test_dry_run_in_service_mode_drops_a_stale_timer(root: Path, fake_bin: Path) -> None:
    assert invoke(root, fake_bin, "llama", "--dry-run").exit_code == 0
    assert invoke(root, fake_bin, "llama", "--dry-run", "--mode", "service").exit_code == 0
    assert not (root / "state" / "llama" / "systemd" / "hedgeform-llama.timer").exists()


def test_cron_line(root: Path, fake_bin: Path) -> None:
    result = invoke(root, fake_bin, "llama", "--dry-run")
    line = next(x for x in result.output.splitlines() if x.startswith("* * * * * "))
    assert line == (
        f"* * * * * cd {shlex.quote(str(root.resolve()))} && flock -n state/llama/.cron.lock "
        f"{shlex.quote(HEDGEFORM)} apply llama --no-wait >> state/llama/cron.log 2>&1"
    )
    crontab = (root / "state" / "llama" / "systemd" / "hedgeform-llama.crontab").read_text()
    assert crontab.rstrip("\n").endswith(line)


def test_install_reloads_then_enables_the_timer(root: Path, fake_bin: Path, unit_dir: Path) -> None:
    result = invoke(root, fake_bin, "llama", "--unit-dir", str(unit_dir))
    assert result.exit_code == 0, result.output
    assert calls(fake_bin) == ["daemon-reload", "enable --now hedgeform-llama.timer"]
    assert {p.name for p in unit_dir.iterdir()} == {
        "hedgeform-llama.service",
        "hedgeform-llama.timer",
    }
    assert not (root / "state").exists()  # only the unit dir changes
    lines = result.output.splitlines()
    assert lines.index("ran      systemctl daemon-reload") < lines.index(
        "ran      systemctl enable --now hedgeform-llama.timer"
    )
    assert "journalctl -u hedgeform-llama.service" in result.output


def test_install_service_mode_with_user_units(root: Path, fake_bin: Path, unit_dir: Path) -> None:
    result = invoke(
        root, fake_bin, "llama", "--mode", "service", "--user", "--unit-dir", str(unit_dir)
    )
    assert result.exit_code == 0, result.output
    assert calls(fake_bin) == [
        "--user daemon-reload",
        "--user enable --now hedgeform-llama.service",
    ]
    unit = parse_unit((unit_dir / "hedgeform-llama.service").read_text())
    assert "User" not in dict(unit["Service"])
    assert one(unit["Install"], "WantedBy") == "default.target"
    assert one(unit["Service"], "EnvironmentFile").endswith("/hedgeform/llama.env")


def test_switching_mode_disables_the_old_unit_first(
    root: Path, fake_bin: Path, unit_dir: Path
) -> None:
    assert invoke(root, fake_bin, "llama", "--unit-dir", str(unit_dir)).exit_code == 0
    result = invoke(root, fake_bin, "llama", "--mode", "service", "--unit-dir", str(unit_dir))
    assert result.exit_code == 0, result.output
    assert calls(fake_bin)[2:] == [
        "disable --now hedgeform-llama.timer",
        "daemon-reload",
        "enable --now hedgeform-llama.service",
    ]
    assert not (unit_dir / "hedgeform-llama.timer").exists()


def test_a_unit_not_written_by_us_is_not_overwritten(
    root: Path, fake_bin: Path, unit_dir: Path
) -> None:
    unit_dir.mkdir()
    (unit_dir / "hedgeform-llama.service").write_text("[Service]\nExecStart=/bin/true\n")
    result = invoke(root, fake_bin, "llama", "--unit-dir", str(unit_dir))
    assert result.exit_code != 0
    assert "not written by hedgeform install-timer" in result.output
    assert (unit_dir / "hedgeform-llama.service").read_text() == "[Service]\nExecStart=/bin/true\n"
    assert calls(fake_bin) == []


def test_a_failing_systemctl_is_one_clear_line(root: Path, fake_bin: Path, unit_dir: Path) -> None:
    result = invoke(root, fake_bin, "llama", "--unit-dir", str(unit_dir), fail=True)
    assert result.exit_code != 0
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1
    assert "systemctl daemon-reload` failed (exit 1: System has not been booted" in errors[0]
    assert "--dry-run" in errors[0]
    assert calls(fake_bin) == ["daemon-reload"]  # never enabled after a failed reload
    for name in ("hedgeform-llama.service", "hedgeform-llama.timer"):
        assert (unit_dir / name).is_file()
        assert f"wrote    {unit_dir / name}" in result.output


def test_no_systemctl_at_all(root: Path, fake_bin: Path, unit_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    result = invoke(root, fake_bin, "llama", "--unit-dir", str(unit_dir), path=str(empty))
    assert result.exit_code != 0
    assert "systemctl not found" in result.output
    assert (unit_dir / "hedgeform-llama.timer").is_file()


def test_an_unwritable_unit_dir_says_what_to_do(root: Path, fake_bin: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    result = invoke(root, fake_bin, "llama", "--unit-dir", str(blocker / "units"))
    assert result.exit_code != 0
    assert "sudo" in result.output and "--dry-run" in result.output
    assert calls(fake_bin) == []


def test_help_explains_both_modes() -> None:
    result = CliRunner().invoke(install_timer, ["--help"])
    assert result.exit_code == 0
    assert "--mode timer" in result.output and "--mode service" in result.output
    assert "--root" not in result.output


def test_quoting_for_systemd_and_cron() -> None:
    assert sd_arg("llama") == "llama"
    assert sd_arg('a b"c\\d%e$f') == '"a b\\"c\\\\d%%e$$f"'
    assert sd_exec("/opt/my venv/bin/hedgeform") == '"/opt/my venv/bin/hedgeform"'
    assert sd_exec("/opt/a$b%c/hedgeform") == '"/opt/a$b%%c/hedgeform"'  # no $ expansion there
    assert sd_env("TERRAFORM_BIN=/a b/$x") == '"TERRAFORM_BIN=/a b/$x"'
    assert sd_path("/srv/my project%1") == "/srv/my project%%1"
    assert cron_sh("/srv/a b%c") == "'/srv/a b\\%c'"
    for bad in ("/a\nb", "/a\tb"):
        for quote in (sd_arg, sd_exec, sd_env, sd_path, cron_sh):
            with pytest.raises(UnitValueError):
                quote(bad)
    for bad_path in ("relative/dir", "/trailing ", "/back\\slash"):
        with pytest.raises(UnitValueError):
            sd_path(bad_path)
    with pytest.raises(UnitValueError):
        sd_exec('/a"b/hedgeform')


def test_protect_system_only_where_state_stays_writable() -> None:
    assert protect_system_ok(Path("/srv/hedgeform"))
    assert protect_system_ok(Path("/home/me/usr/hedgeform"))
    assert not protect_system_ok(Path("/usr/local/hedgeform"))
    assert not protect_system_ok(Path("/etc/hedgeform"))


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
@pytest.mark.parametrize("mode", ["timer", "service"])
def test_systemd_accepts_the_units(root: Path, fake_bin: Path, mode: str) -> None:
    """systemd's own parser (offline `systemd-analyze verify`, read-only) finds no problem."""
    assert invoke(root, fake_bin, "llama", "--dry-run", "--mode", mode).exit_code == 0
    out = root / "state" / "llama" / "systemd"
    units = sorted(str(p) for p in out.glob("hedgeform-llama.*") if p.suffix != ".crontab")
    proc = subprocess.run(
        ["systemd-analyze", "verify", *units],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    problems = [
        line for line in (proc.stdout + proc.stderr).splitlines() if "hedgeform-llama" in line
    ]
    assert proc.returncode == 0 and not problems, proc.stdout + proc.stderr


def test_units_reach_the_same_state_backend_and_emulator_as_the_installing_shell() -> None:
    """Several hosts' timers must all see the remote state (and take its lease); a unit that
    fell back to local state would start a second fleet."""
    from reconciler.ops.timers import unit_environment

    environ = {
        "HEDGEFORM_STATE_BACKEND": "s3://hf-state/prod?dynamodb_table=hf-locks&region=us-east-1",
        "HEDGEFORM_AWS_ENDPOINT_URL": "http://127.0.0.1:4566",
        "AWS_SECRET_ACCESS_KEY": "never-in-a-unit",
    }
    passed = dict(unit_environment(environ, set()))
    assert passed["HEDGEFORM_STATE_BACKEND"] == environ["HEDGEFORM_STATE_BACKEND"]
    assert passed["HEDGEFORM_AWS_ENDPOINT_URL"] == "http://127.0.0.1:4566"
    assert "AWS_SECRET_ACCESS_KEY" not in passed
