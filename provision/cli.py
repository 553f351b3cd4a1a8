"""Command line: click commands only; the work lives in the modules they call."""

from __future__ import annotations

import click


@click.group()
@click.version_option(package_name="provision")
def main() -> None:
    """Take GPU hosts to a running, verified FastDeploy ERNIE-4.5 API server."""


def _register_subcommands() -> None:
    from provision.lab.cli import lab

    main.add_command(lab)


_register_subcommands()
