"""`provision lab fault ...`: inject one fault into a running lab (see lab/faults.py)."""

from __future__ import annotations

import time

import click

from provision_lab import faults


def _host(name: str):
    from provision_lab.lab import Lab

    hosts = {h.name: h for h in Lab().status()}
    if name not in hosts:
        raise click.BadParameter(f"no running lab host {name!r}; running: "
                                 f"{', '.join(hosts) or 'none'}")
    return hosts[name]


@click.group()
def fault() -> None:
    """Inject a fault: cut a host's link, hold its dpkg lock, shrink its disk, kill it, or
    fail the index."""


@fault.command()
@click.argument("host")
@click.argument("seconds", type=float)
def cut(host: str, seconds: float) -> None:
    """Take HOST's link down for SECONDS (inside its namespace), then up again."""
    faults.ensure_unreachable_route()
    faults.cut_link(_host(host), seconds).join()


@fault.command(name="dpkg-lock")
@click.argument("host")
@click.argument("seconds", type=float)
def dpkg_lock(host: str, seconds: float) -> None:
    """Hold HOST's dpkg frontend lock for SECONDS, as unattended-upgrades would."""
    faults.hold_dpkg_lock(_host(host), seconds)


@fault.command()
@click.argument("host")
@click.argument("path")
@click.argument("mib", type=int)
def disk(host: str, path: str, mib: int) -> None:
    """Leave only MIB MiB free at PATH on HOST (a tmpfs mounted over it); `disk-restore` undoes
    it."""
    faults.shrink_disk(_host(host), path, mib)


@fault.command(name="disk-restore")
@click.argument("host")
@click.argument("path")
def disk_restore(host: str, path: str) -> None:
    """Unmount what `disk` mounted at PATH on HOST."""
    faults.restore_disk(_host(host), path)


@fault.command()
@click.argument("host")
def kill(host: str) -> None:
    """Kill HOST at once (its systemd-nspawn)."""
    faults.kill_host(_host(host))


@fault.command()
@click.argument("mode", type=click.Choice(faults.INDEX_MODES))
@click.option("--seconds", type=float, default=600.0, show_default=True,
              help="How long to serve.")
def index(mode: str, seconds: float) -> None:
    """Serve a failing package index (500, 404, closed, hung, slow); prints its URL."""
    with faults.FaultIndex(mode) as served:
        click.echo(served.url, nl=True)
        time.sleep(seconds)
