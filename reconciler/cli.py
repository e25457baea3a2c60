"""The `hedgeform` command line."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hedgeform")
def main() -> None:
    """Hedgeform: serve an AI model on spot and on-demand GPUs across zones and clouds.

    Runs the SpotHedge policy (spread spot replicas across failure domains, overprovision a
    few, fall back to on-demand while spot is gone) and applies the result with Terraform.
    """


def _register() -> None:
    from reconciler.backtest.command import backtest
    from reconciler.engine.commands import apply, destroy, plan, status
    from reconciler.sandbox.cli import sandbox

    for command in (backtest, plan, apply, status, destroy, sandbox):
        main.add_command(command)


_register()
