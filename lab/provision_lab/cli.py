"""`provision lab ...`: local test VMs that behave like bare GPU cloud hosts."""

from __future__ import annotations

import json
import sys

import click

from provision_lab import accounting, paths
from provision_lab.profiles import load_profiles
from provision_lab.system import LabError

NONNEGATIVE = click.FloatRange(min=0)  # a negative size or rate is a usage error (exit 2)


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
@click.option("--no-seed-weights", is_flag=True, help="Hosts without the stand-in weights: "
              "their server downloads them from the lab's model hub at first start.")
@click.option("--pad-mb", type=NONNEGATIVE,
              help="Pad the paddlepaddle-gpu wheels to this many MB "
              "(fastdeploy-gpu to a quarter); 0 is today's small wheels. Kept for later runs.")
@click.option("--weights-mb", type=NONNEGATIVE,
              help="MB of weights per model on the lab's hub "
              "(default 1). Kept for later runs.")
@click.option("--index-rate", type=NONNEGATIVE,
              help="Total MB/s the lab's indexes and hub send, "
              "all clients together (0: unlimited, the default). Kept for later runs.")
def up(count: int, profiles: str, bare: bool, no_mirror: bool, no_seed_weights: bool,
       pad_mb: float | None, weights_mb: float | None, index_rate: float | None) -> None:
    """Start COUNT hosts gpu1..gpuN (a previous lab is stopped first).

    The upstream options change the lab's setting (`lab access` shows what it sent); those
    not given keep the lab's current one."""
    names = [p.strip() for p in profiles.split(",") if p.strip()]
    unknown = [p for p in names if p not in load_profiles()]
    if unknown:
        _fail(ValueError(f"unknown profile {', '.join(unknown)}; known: "
                         f"{', '.join(load_profiles())}"))
    try:
        lab_ = _lab()
        _apply_upstream(lab_, pad_mb, weights_mb, index_rate)
        hosts = lab_.up(count, names, bare=bare, pip_mirror=not no_mirror,
                        seed_weights=not no_seed_weights)
    except LabError as exc:
        _fail(exc)
    for host in hosts:
        click.echo(f"{host.name}\t{host.address}\t{host.profile}{' (bare)' if host.bare else ''}"
                   f"{'' if host.pip_mirror else ' (no mirror)'}"
                   f"{'' if host.seed_weights else ' (no weights)'}")


def _apply_upstream(lab_, pad_mb: float | None, weights_mb: float | None,
                    index_rate: float | None) -> None:
    """Change the options given (None: keep the lab's current value); none given: no change."""
    if (pad_mb, weights_mb, index_rate) != (None, None, None):
        now = lab_.upstream
        lab_.set_upstream(now.pad_mb if pad_mb is None else pad_mb,
                          now.weights_mb if weights_mb is None else weights_mb,
                          now.rate_mbps if index_rate is None else index_rate)


@lab.command(name="upstream")
@click.option("--pad-mb", type=NONNEGATIVE,
              help="MB of padding in each paddlepaddle-gpu wheel.")
@click.option("--weights-mb", type=NONNEGATIVE,
              help="MB of weights per model on the hub.")
@click.option("--index-rate", type=NONNEGATIVE,
              help="Total MB/s the indexes and hub send (0: "
              "unlimited).")
@click.option("--defaults", is_flag=True, help="Back to today's lab (0, 1, 0).")
def upstream_(pad_mb: float | None, weights_mb: float | None, index_rate: float | None,
              defaults: bool) -> None:
    """Show or change the lab's upstream (rebuilds and restarts what must change)."""
    try:
        lab_ = _lab()
        if defaults:
            lab_.set_upstream()
        _apply_upstream(lab_, pad_mb, weights_mb, index_rate)
    except LabError as exc:
        _fail(exc)
    click.echo(json.dumps(lab_.upstream.as_dict(), sort_keys=True))


@lab.command()
@click.option("--since", type=click.IntRange(0), help="A mark printed by an earlier "
              "`lab access` (count only what was sent after it).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object (with the mark).")
def access(since: int | None, as_json: bool) -> None:
    """Bytes the lab's indexes and hub sent (response bodies), per server and per client,
    and a mark for a later `--since`."""
    lab_ = _lab()
    mark = lab_.index_mark()
    totals = accounting.totals(paths.ACCESS_LOG, since, until=mark)
    if as_json:
        click.echo(json.dumps({**totals, "mark": mark}, indent=2))
        return
    for kind in ("paddle", "general", "pypi", "hub", "total"):
        click.echo(f"{kind}\t{totals[kind]}")
    for client, sent in sorted(totals["by_client"].items()):
        click.echo(f"client {client}\t{sent}")
    setting = lab_.upstream
    click.echo(f"mark\t{mark}\t(upstream: pad {setting.pad_mb:g} MB, weights "
               f"{setting.weights_mb:g} MB, rate {setting.rate_mbps:g} MB/s, 0 = unlimited)")


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
