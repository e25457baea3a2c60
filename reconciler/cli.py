"""The `hedgeform` command line."""

from __future__ import annotations

import contextlib
import errno
import importlib
import io
import os
import sys
from typing import Any

import click

from reconciler.errors import HedgeformError
from reconciler.sandbox.processes import OWNER_ENV

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer killed by it


class _OneLineUsage(click.UsageError):
    """A mistake on the command line, said in one line with where to read more (click's own
    form is three: the usage, a hint and the error)."""

    def show(self, file: Any = None) -> None:
        where = f" (see '{self.ctx.command_path} --help')" if self.ctx is not None else ""
        click.echo(f"Error: {self.format_message()}{where}", file=file, err=file is None)


class _ClosedStdout(io.TextIOBase):
    """`sys.stdout` once standard output was found closed (`hedgeform mix ... >&-`): writing
    any text raises OSError (EBADF), which the group reports in one line on stderr, exit 1,
    as coreutils do (`ls >&-`): output asked for and lost is not a success. Python's own
    stand-in, None, makes click drop the output silently and `print` crash elsewhere."""

    encoding = "utf-8"
    errors = "strict"

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not isinstance(text, str):  # click probes for a binary stream with b""
            raise TypeError("a text stream")
        if text:
            raise OSError(errno.EBADF, "cannot print: standard output is closed")
        return 0


def _guard_closed_stdout() -> None:
    """When fd 1 was closed before Hedgeform started (Python then sets `sys.stdout` to None),
    hold fd 1 open on /dev/null, so that no file Hedgeform opens gets fd 1, where HiGHS
    prints its banner (solver_output.py), and make printing an error (`_ClosedStdout`)."""
    if sys.stdout is not None:
        return
    with contextlib.suppress(OSError):
        fd = os.open(os.devnull, os.O_WRONLY)  # fd 1 itself, the lowest free descriptor
        if fd != 1:
            os.dup2(fd, 1)
            os.close(fd)
    sys.stdout = _ClosedStdout()


class LazyGroup(click.Group):
    """Imports a subcommand's module only when it runs: `hedgeform sandbox ...` is called by
    Terraform provisioners for every replica, and must not pay for numpy or the engine."""

    def __init__(self, *args: Any, lazy: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def invoke(self, ctx: click.Context) -> Any:
        """An environment fault that reaches the top (a full disk, a permission) is one line
        naming the file, never a traceback."""
        _guard_closed_stdout()
        try:
            return super().invoke(ctx)
        except _OneLineUsage:
            raise
        except click.UsageError as exc:  # a subcommand's bad option or argument
            raise _OneLineUsage(exc.format_message(), exc.ctx) from None
        except HedgeformError as exc:  # every error a user can see: one line, no traceback
            raise click.ClickException(str(exc)) from None
        except BrokenPipeError:  # `hedgeform status | head`: the reader had enough
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise SystemExit(EXIT_BROKEN_PIPE) from None
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            raise click.ClickException(f"{where}{exc.strerror or exc}") from None

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            module, attr = self.lazy[cmd_name].split(":")
            command: click.Command = getattr(importlib.import_module(module), attr)
            return command
        return super().get_command(ctx, cmd_name)


COMMANDS = {
    "backtest": "reconciler.backtest.command:backtest",
    "plan": "reconciler.engine.commands:plan",
    "apply": "reconciler.engine.commands:apply",
    "status": "reconciler.engine.commands:status",
    "logs": "reconciler.engine.logs_cmd:logs",
    "destroy": "reconciler.engine.commands:destroy",
    "drift": "reconciler.engine.drift:drift",
    "run": "reconciler.engine.commands:run",
    "install-timer": "reconciler.ops.timers:install_timer",
    "soak": "reconciler.ops.soak:soak",
    "sandbox": "reconciler.sandbox.cli:sandbox",
    "signals": "reconciler.engine.signals:signals",
    "state": "reconciler.engine.commands:state",
    "history": "reconciler.engine.versions:history",
    "rollback": "reconciler.engine.versions:rollback",
    "mix": "reconciler.engine.mix:mix",
    "profile": "reconciler.engine.profile_cmd:profile",
    "cost": "reconciler.engine.cost_cmd:cost",
    "prices": "reconciler.engine.prices_cmd:prices",
}


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(package_name="hedgeform")
def main() -> None:
    """Hedgeform: serve an AI model on spot and on-demand GPUs across zones and clouds.

    Runs the SpotHedge policy (spread spot replicas across failure domains, overprovision a
    few, fall back to on-demand while spot is gone) and applies the result with Terraform.
    """
    # Only the sandbox's daemons carry their state dir's ownership marker; a command that
    # inherited it must not pass it on to Terraform and its providers, or `destroy` would
    # take them for the service's own processes.
    os.environ.pop(OWNER_ENV, None)
