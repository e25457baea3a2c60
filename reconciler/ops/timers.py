"""`hedgeform install-timer SERVICE`: run the reconciler unattended under systemd (or cron).

Unit files are rendered from `templates/systemd/` with StrictUndefined, and every value that
reaches them goes through a filter here that validates it and quotes it the way systemd parses
that key (`sd_arg` for ExecStart words, `sd_path` for path keys, `sd_value` for User=), so a
project path with spaces, `%` or `$` cannot change what the unit runs. Secrets never reach a
unit: the unit only names an EnvironmentFile that hedgeform never writes.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import click
import jinja2

from reconciler.click_types import Whole
from reconciler.errors import BadNameError, SpecError, UnitValueError
from reconciler.files import write_atomic
from reconciler.paths import NAME_RE, PROJECT_ROOT, ServicePaths, check_name
from reconciler.rendering import TEMPLATES_DIR
from reconciler.spec import load_spec

MODES = ("timer", "service")
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
SECRETS_DIR = Path("/etc/hedgeform")
# Settings the reconciler reads from its environment that are never secret; only these are
# copied into the unit (as Environment=), and only when set where install-timer runs.
UNIT_ENV_NAMES = (
    "HEDGEFORM_LB_PORT",
    "HEDGEFORM_SANDBOX_SPEED",
    "HEDGEFORM_SANDBOX_OFFSET_HOURS",
    "HEDGEFORM_SANDBOX_WARNING",
    "HEDGEFORM_SANDBOX_COLD_START",
    "HEDGEFORM_SANDBOX_LATENCY_MS",
    "TERRAFORM_BIN",
    # Where the state lives, and an AWS emulator: a unit must reach the same backend (and
    # lease) as the shell that installed it. Neither may hold a secret (both are validated).
    "HEDGEFORM_STATE_BACKEND",
    "HEDGEFORM_AWS_ENDPOINT_URL",
)
# ProtectSystem=full makes these read-only: a project under one of them could not write state/.
READ_ONLY_UNDER_PROTECT_SYSTEM = ("/usr", "/etc", "/boot", "/efi")
START_TIMEOUT = "30min"
MODE_MARKER = re.compile(r"^# Written by `hedgeform install-timer [^`]*` \(mode: (\w+)\)")
_SAFE_WORD = re.compile(r"[A-Za-z0-9/._+:,@=-]+")
_USER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}")


def _check_text(value: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise UnitValueError(f"{value!r} contains a control character (newline, tab ...)")
    return value


def _sd_quote(text: str, dollar: bool) -> str:
    if _SAFE_WORD.fullmatch(text):
        return text
    quoted = text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return '"' + (quoted.replace("$", "$$") if dollar else quoted) + '"'


def sd_exec(value: object) -> str:
    """ExecStart's executable: absolute, double-quoted when needed, `%` doubled. systemd does
    not expand `$` in it and refuses quotes and backslashes in an executable's name."""
    text = _check_text(str(value))
    if not text.startswith("/") or any(c in text for c in "\"'\\"):
        raise UnitValueError(f"{text!r}: an executable needs an absolute path without quotes")
    return _sd_quote(text, dollar=False)


def sd_arg(value: object) -> str:
    """One ExecStart argument: bare when plainly safe, else double-quoted with `\\` and `"`
    escaped; `%` (specifiers) and `$` (variable expansion) are doubled."""
    return _sd_quote(_check_text(str(value)), dollar=True)


def sd_env(value: object) -> str:
    """One Environment= assignment: quoted like an argument, but `$` stays (not expanded)."""
    return _sd_quote(_check_text(str(value)), dollar=False)


def sd_path(value: object) -> str:
    """An absolute path for WorkingDirectory=/EnvironmentFile=: systemd takes the rest of the
    line verbatim (no quotes, spaces kept) but strips edge whitespace, expands `%` and joins a
    line ending in `\\` with the next; so refuse those and double `%`."""
    text = _check_text(str(value))
    if not text.startswith("/"):
        raise UnitValueError(f"{text!r} is not an absolute path")
    if text != text.strip() or "\\" in text:
        raise UnitValueError(f"{text!r}: a unit path cannot hold a backslash or edge spaces")
    return text.replace("%", "%%")


def sd_value(value: object) -> str:
    """User=: a plain user name or a numeric uid."""
    text = str(value)
    if not _USER_NAME.fullmatch(text):
        raise UnitValueError(f"{text!r} is not a user name systemd accepts")
    return text


def cron_sh(value: object) -> str:
    """A shell word in a crontab line: shell-quoted, and `%` escaped (cron turns a bare `%`
    into a newline)."""
    return shlex.quote(_check_text(str(value))).replace("%", "\\%")


@cache
def _templates(directory: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(directory)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        sd_exec=sd_exec,
        sd_arg=sd_arg,
        sd_env=sd_env,
        sd_path=sd_path,
        sd_value=sd_value,
        cron_sh=cron_sh,
    )
    return env


def render(template: str, context: Mapping[str, Any], directory: Path = TEMPLATES_DIR) -> str:
    return _templates(directory).get_template(template).render(**context)


def check_service(name: str) -> str:
    """check_name, whole string: its `re.match` with `$` also accepts a trailing newline,
    which must never reach a unit file."""
    check_name(name)
    if not NAME_RE.fullmatch(name):
        raise BadNameError(f"service name {name!r} is not a plain name (a trailing newline?)")
    return name


def hedgeform_executable() -> Path:
    """The `hedgeform` script of this interpreter's environment (not resolved: a venv's python
    is a symlink, and resolving it would point at the system Python's bin/)."""
    path = Path(sys.executable).absolute().parent / "hedgeform"
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise click.ClickException(
            f"no hedgeform executable at {path}: install the project first (`make setup`)"
        )
    return path


def unit_environment(environ: Mapping[str, str], secret_names: set[str]) -> list[tuple[str, str]]:
    """The non-secret settings to pin in the unit: allow-listed names set here, never a name
    the spec declares secret."""
    return [
        (name, environ[name])
        for name in UNIT_ENV_NAMES
        if environ.get(name) and name not in secret_names
    ]


def project_owner(root: Path) -> str:
    """System units run as whoever owns the project, so state/ keeps one owner (installing
    needs root, but the reconciler should not run as root)."""
    uid = root.stat().st_uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def protect_system_ok(root: Path) -> bool:
    """ProtectSystem=full would make a project under /usr, /etc, /boot or /efi read-only."""
    return not any(
        root == Path(p) or Path(p) in root.parents for p in READ_ONLY_UNDER_PROTECT_SYSTEM
    )


def user_config_dir(environ: Mapping[str, str]) -> Path:
    xdg = environ.get("XDG_CONFIG_HOME", "")
    return Path(xdg) if xdg.startswith("/") else Path.home() / ".config"


@dataclass(frozen=True)
class Install:
    """What install-timer writes for one service, and the unit it enables."""

    service: str
    mode: str
    files: dict[str, str]  # file name -> content
    cron: str
    env_file: Path
    secret_names: tuple[str, ...]

    @property
    def service_unit(self) -> str:
        return f"hedgeform-{self.service}.service"

    @property
    def timer_unit(self) -> str:
        return f"hedgeform-{self.service}.timer"

    @property
    def enable_unit(self) -> str:
        return self.timer_unit if self.mode == "timer" else self.service_unit


def build_install(
    paths: ServicePaths,
    mode: str,
    interval: int,
    *,
    user_mode: bool,
    hedgeform: Path,
    environ: Mapping[str, str],
) -> Install:
    """Render the unit(s) and the cron alternative; raises UnitValueError on an unsafe value."""
    spec = load_spec(paths.spec_file)
    secret_names = set(spec.secret_env_names)
    root = paths.root
    if user_mode:
        env_file = user_config_dir(environ) / "hedgeform" / f"{paths.service}.env"
    else:
        env_file = SECRETS_DIR / f"{paths.service}.env"
    context: dict[str, Any] = {
        "service": paths.service,
        "mode": mode,
        "interval": interval,
        "hedgeform": hedgeform,
        "root": root,
        "run_as": None if user_mode else project_owner(root),
        "environment": unit_environment(environ, secret_names),
        "env_file": env_file,
        "start_timeout": START_TIMEOUT,
        # Namespacing options need user namespaces in user units: keep those to NoNewPrivileges.
        "protect_system": not user_mode and protect_system_ok(root),
        "wanted_by": "default.target" if user_mode else "multi-user.target",
    }
    install = Install(
        service=paths.service,
        mode=mode,
        files={},
        cron=render("cron.j2", context),
        env_file=env_file,
        secret_names=tuple(sorted(secret_names)),
    )
    install.files[install.service_unit] = render("systemd/hedgeform.service.j2", context)
    if mode == "timer":
        install.files[install.timer_unit] = render("systemd/hedgeform.timer.j2", context)
    return install


def installed_mode(unit_file: Path) -> str | None:
    """The mode an earlier install-timer wrote `unit_file` in; None when there is none.
    Refuses a unit of the same name that install-timer did not write."""
    try:
        first = unit_file.read_text(encoding="utf-8").split("\n", 1)[0]
    except (FileNotFoundError, NotADirectoryError):
        return None
    match = MODE_MARKER.match(first)
    if not match:
        raise click.ClickException(
            f"{unit_file} exists and was not written by hedgeform install-timer: "
            "remove it (or pass another --unit-dir) first"
        )
    return match.group(1)


def run_systemctl(args: Sequence[str], user_mode: bool, hint: str) -> None:
    """Run one systemctl step (list argv, no shell); a missing or failing systemctl is one
    line for the user, with the way to go on without systemd."""
    argv = ["systemctl", *(["--user"] if user_mode else []), *args]
    shown = " ".join(argv)
    binary = shutil.which("systemctl")
    if binary is None:
        raise click.ClickException(f"`{shown}`: systemctl not found (no systemd here?); {hint}")
    proc = subprocess.run(
        [binary, *argv[1:]], capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL
    )
    if proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[0]
        raise click.ClickException(
            f"`{shown}` failed (exit {proc.returncode}: {detail}); is systemd running here "
            f"(not in a container)? {hint}"
        )
    click.echo(f"ran      {shown}")


def _dry_run(paths: ServicePaths, install: Install) -> None:
    out = paths.state_dir / "systemd"
    out.mkdir(parents=True, exist_ok=True)
    cron_file = f"hedgeform-{install.service}.crontab"
    for name, text in [*install.files.items(), (cron_file, install.cron)]:
        write_atomic(out / name, text, mode=0o644)
        click.echo(f"wrote    {out / name}")
    stale = out / install.timer_unit
    if install.mode == "service" and stale.exists():
        stale.unlink()
        click.echo(f"removed  {stale} (timer mode's)")
    for name, text in install.files.items():
        click.echo(f"\n--- {name} ---\n{text}", nl=False)
    click.echo("\ndry run: nothing installed; without --dry-run these go to the unit directory")


def _install(install: Install, unit_dir: Path, user_mode: bool) -> None:
    hint = (
        f"render without installing: `hedgeform install-timer {install.service} --dry-run` "
        "(make install-timer DRY_RUN=1), or use the cron line above"
    )
    service_file = unit_dir / install.service_unit
    timer_file = unit_dir / install.timer_unit
    previous = installed_mode(service_file)
    if previous is not None and previous != install.mode:
        # Disable the old mode's unit before its file changes: disable reads its [Install].
        old = install.timer_unit if previous == "timer" else install.service_unit
        run_systemctl(["disable", "--now", old], user_mode, hint)
    changed = previous == install.mode and any(
        (unit_dir / name).read_text(encoding="utf-8") != text
        for name, text in install.files.items()
        if (unit_dir / name).exists()
    )
    try:
        unit_dir.mkdir(parents=True, exist_ok=True)
        for name, text in install.files.items():
            write_atomic(unit_dir / name, text, mode=0o644)  # systemd units are public
            click.echo(f"wrote    {unit_dir / name}")
        if install.mode == "service" and timer_file.exists():
            timer_file.unlink()
            click.echo(f"removed  {timer_file} (timer mode's)")
    except OSError as exc:
        raise click.ClickException(
            f"cannot write {exc.filename or unit_dir}: {exc.strerror or exc}; run it as root "
            "(sudo), install user units with --user, or preview with --dry-run"
        ) from None
    run_systemctl(["daemon-reload"], user_mode, hint)
    run_systemctl(["enable", "--now", install.enable_unit], user_mode, hint)
    if changed and install.mode == "service":
        flag = "--user " if user_mode else ""
        click.echo(
            f"note: restart to use the new unit: systemctl {flag}restart {service_file.name}"
        )


def _notes(install: Install) -> None:
    """Where secrets go, and the cron line for machines without systemd."""
    if install.secret_names:
        click.echo(
            f"secrets from the environment ({', '.join(install.secret_names)}): put NAME=value "
            f"lines in {install.env_file} (chmod 600); the unit reads it, hedgeform never writes it"
        )
    click.echo("cron alternative (one run a minute; cron cannot go below a minute):")
    click.echo(install.cron.rstrip("\n").rsplit("\n", 1)[-1])


HELP = """Run SERVICE unattended under systemd: write hedgeform-SERVICE.service (and .timer),
then `systemctl daemon-reload` and `systemctl enable --now`.

\b
--mode timer (default): a timer starts a oneshot `hedgeform apply SERVICE --no-wait` every
  --interval seconds. Each tick is a fresh process (a crash or leak ends with the tick), and
  systemd never starts a tick while the previous one runs. Choose it unless you need the loop.
--mode service: one long-running `hedgeform run SERVICE --interval N`, restarted 5 s after any
  exit. It keeps memory between ticks and reacts without process start-up; choose it for short
  intervals or when startup cost matters.

Secrets (HF_TOKEN, cloud keys) go in /etc/hedgeform/SERVICE.env (with --user:
~/.config/hedgeform/SERVICE.env), which the unit reads and hedgeform never writes. Also prints
a cron line (one run a minute) for machines without systemd. With --dry-run the files go to
state/SERVICE/systemd/ and nothing else changes. See docs/operations.md.
"""


@click.command("install-timer", help=HELP)
@click.argument("service")
@click.option(
    "--mode",
    type=click.Choice(MODES),
    default="timer",
    show_default=True,
    help="timer: one apply per tick; service: one long-running `hedgeform run` loop.",
)
@click.option(
    "--interval",
    type=Whole(1, 86400),
    default=30,
    show_default=True,
    help="Seconds between reconciles.",
)
@click.option(
    "--dry-run", is_flag=True, help="Only write the files under state/SERVICE/systemd/ and print."
)
@click.option(
    "--unit-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where units go [default: /etc/systemd/system; ~/.config/systemd/user with --user].",
)
@click.option("--user", "user_mode", is_flag=True, help="Install user units (systemctl --user).")
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    hidden=True,
    help="Project root (tests).",
)
def install_timer(
    service: str,
    mode: str,
    interval: int,
    dry_run: bool,
    unit_dir: Path | None,
    user_mode: bool,
    root: Path | None,
) -> None:
    try:
        paths = ServicePaths.for_service(check_service(service), (root or PROJECT_ROOT).resolve())
        install = build_install(
            paths,
            mode,
            interval,
            user_mode=user_mode,
            hedgeform=hedgeform_executable(),
            environ=os.environ,
        )
    except (BadNameError, SpecError, UnitValueError) as exc:
        raise click.ClickException(str(exc)) from None
    if dry_run:
        _dry_run(paths, install)
        _notes(install)
        return
    _notes(install)
    default_dir = user_config_dir(os.environ) / "systemd" / "user"
    target = (unit_dir or (default_dir if user_mode else SYSTEM_UNIT_DIR)).absolute()
    _install(install, target, user_mode)
    journal = f"journalctl {'--user ' if user_mode else ''}-u {install.service_unit} -f"
    every = f"a tick every {interval} s" if mode == "timer" else f"looping every {interval} s"
    click.echo(f"{install.enable_unit} is enabled and started ({every}); logs: {journal}")
    if user_mode:
        click.echo("user units stop at logout unless `loginctl enable-linger` is set")
