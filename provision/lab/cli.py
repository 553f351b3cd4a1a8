"""`provision lab ...`: local test VMs that behave like bare GPU cloud hosts."""

from __future__ import annotations

import sys

import click

from provision.lab.profiles import load_profiles
from provision.model import ProvisionError


def _lab():
    from provision.lab.lab import Lab

    return Lab()


def _fail(exc: Exception) -> None:
    click.echo(f"ERROR: {exc}", err=True)
    sys.exit(1)


@click.group()
def lab() -> None:
    """Local test hosts (systemd-nspawn + sshd, stand-in GPUs and wheels). Needs root."""


@lab.command()
@click.argument("count", type=click.IntRange(1, 50), default=1)
@click.option("--profile", "profiles", default="a100", show_default=True,
              help="GPU profiles, comma-separated, assigned to the hosts in turn.")
@click.option("--bare", is_flag=True, help="Hosts without python3-venv and pip, "
              "as a fresh Ubuntu 22.04 cloud image ships.")
def up(count: int, profiles: str, bare: bool) -> None:
    """Start COUNT hosts gpu1..gpuN (a previous lab is stopped first)."""
    names = [p.strip() for p in profiles.split(",") if p.strip()]
    unknown = [p for p in names if p not in load_profiles()]
    if unknown:
        _fail(ValueError(f"unknown profile {', '.join(unknown)}; known: "
                         f"{', '.join(load_profiles())}"))
    try:
        hosts = _lab().up(count, names, bare=bare)
    except ProvisionError as exc:
        _fail(exc)
    for host in hosts:
        click.echo(f"{host.name}\t{host.address}\t{host.profile}{' (bare)' if host.bare else ''}")


@lab.command()
def status() -> None:
    """List the running hosts."""
    for host in _lab().status():
        click.echo(f"{host.name}\t{host.address}\t{host.profile}"
                   f"{' (bare)' if host.bare else ''}\tpid {host.pid}")


@lab.command()
def down() -> None:
    """Stop every host and the index; leave no process, mount or namespace behind."""
    try:
        _lab().down()
    except ProvisionError as exc:
        _fail(exc)
    click.echo("lab: down")


@lab.command()
def inventory() -> None:
    """Write an Ansible YAML inventory of the running hosts and print its path."""
    click.echo(str(_lab().inventory()))


@lab.command(name="break")
@click.option("--version", "version", required=True, help="FastDeploy version to break.")
@click.option("--host", "hosts", multiple=True, help="Only these hosts (default: all).")
def break_(version: str, hosts: tuple[str, ...]) -> None:
    """Make VERSION's stand-in server install fine but never become healthy."""
    try:
        _lab().break_version(version, list(hosts) or None)
    except ProvisionError as exc:
        _fail(exc)


@lab.command()
@click.option("--host", "hosts", multiple=True, help="Only these hosts (default: all).")
def mend(hosts: tuple[str, ...]) -> None:
    """Undo `lab break`."""
    try:
        _lab().mend(list(hosts) or None)
    except ProvisionError as exc:
        _fail(exc)


def _register_faults() -> None:
    from provision.lab.fault_cli import fault

    lab.add_command(fault)


_register_faults()
