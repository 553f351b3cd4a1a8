"""`provision lab ...`: local test VMs that behave like bare GPU cloud hosts."""

from __future__ import annotations

import json
import sys

import click

from provision_lab.profiles import load_profiles
from provision_lab.system import LabError


def _lab():
    from provision_lab.lab import Lab

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
@click.option("--no-mirror", is_flag=True, help="Hosts without /etc/pip.conf: pip's default "
              "index, https://pypi.org/simple/, is the lab's general index over HTTPS "
              "(the lab's CA in the host's trust store).")
def up(count: int, profiles: str, bare: bool, no_mirror: bool) -> None:
    """Start COUNT hosts gpu1..gpuN (a previous lab is stopped first)."""
    names = [p.strip() for p in profiles.split(",") if p.strip()]
    unknown = [p for p in names if p not in load_profiles()]
    if unknown:
        _fail(ValueError(f"unknown profile {', '.join(unknown)}; known: "
                         f"{', '.join(load_profiles())}"))
    try:
        hosts = _lab().up(count, names, bare=bare, pip_mirror=not no_mirror)
    except LabError as exc:
        _fail(exc)
    for host in hosts:
        click.echo(f"{host.name}\t{host.address}\t{host.profile}{' (bare)' if host.bare else ''}"
                   f"{'' if host.pip_mirror else ' (no mirror)'}")


@lab.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per host, as a list.")
def status(as_json: bool) -> None:
    """List the running hosts."""
    hosts = _lab().status()
    if as_json:
        click.echo(json.dumps([h.as_dict() for h in hosts], indent=2))
        return
    for host in hosts:
        click.echo(f"{host.name}\t{host.address}\t{host.profile}"
                   f"{' (bare)' if host.bare else ''}{'' if host.pip_mirror else ' (no mirror)'}"
                   f"\tpid {host.pid}")


@lab.command()
@click.argument("name")
def address(name: str) -> None:
    """Print the IP address of the running host NAME (e.g. for curl in scripts)."""
    running = {h.name: h for h in _lab().status()}
    if name not in running:
        _fail(LabError(f"no running lab host named {name!r}; running: "
                       f"{', '.join(running) or 'none'} (start one with `provision lab up`)"))
    click.echo(running[name].address)


@lab.command()
def down() -> None:
    """Stop every host and the index; leave no process, mount or namespace behind."""
    try:
        _lab().down()
    except LabError as exc:
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
    except LabError as exc:
        _fail(exc)


@lab.command()
@click.option("--host", "hosts", multiple=True, help="Only these hosts (default: all).")
def mend(hosts: tuple[str, ...]) -> None:
    """Undo `lab break`."""
    try:
        _lab().mend(list(hosts) or None)
    except LabError as exc:
        _fail(exc)


def _register_faults() -> None:
    from provision_lab.fault_cli import fault

    lab.add_command(fault)


_register_faults()
