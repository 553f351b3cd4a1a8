"""`provision inventory --list`: what the tool reads from an inventory, as JSON, connecting nowhere.

What `ansible-inventory --list` is to Ansible: for a user debugging an
inventory (which hosts a pattern selects, in which order, how each is
reached, which value won and from which file:line) and for the tests that
hold it against ansible-core. Secrets (SSH and sudo passwords, variables the
settings table marks secret) are shown as `<hidden>`.
"""

from __future__ import annotations

import json
import sys

import click

from provision.commands.options import inventory_options
from provision.connection import resolve_endpoint
from provision.connection_vars import become_enabled
from provision.inventory import tool_variable_names
from provision.model import HostSpec, ProvisionError

HIDDEN = "<hidden>"


def _secret_names() -> set[str]:
    from provision.connection_vars import BECOME_PASS_VARS, PASSWORD_VARS
    from provision.variables import VARIABLES

    return {v.name for v in VARIABLES if v.secret} | set(PASSWORD_VARS) | set(BECOME_PASS_VARS)


def host_entry(spec: HostSpec) -> dict:
    """One host as --list shows it: connection resolved (ssh_config applied), tool variables."""
    end = resolve_endpoint(spec)
    secret = _secret_names()
    used = tool_variable_names()
    variables = {k: (HIDDEN if k in secret and spec.vars[k] not in (None, "") else spec.vars[k])
                 for k in used if k in spec.vars}
    return {
        "name": spec.name,
        "groups": list(spec.groups),
        "connection": {
            "type": spec.connection,
            "address": end.address,
            "port": end.port,
            "user": end.user,
            "key_file": end.key_file,
            "jump": [str(hop) for hop in end.jump],
            "password": HIDDEN if spec.password is not None else None,
            "become": {
                "enabled": become_enabled(spec.vars),
                "method": "sudo",
                "user": "root",
                "password": HIDDEN if spec.become_password is not None else None,
                "sudo": spec.connection == "ssh" and end.user != "root",
            },
        },
        "vars": variables,
        "sources": {k: spec.sources[k] for k in variables if k in spec.sources},
    }


def run_inventory(inventory, limit: str | None, host: str | None, extra: tuple[str, ...]) -> int:
    """Print the selected hosts as JSON; 2 on a configuration error (one line each)."""
    from provision.commands.targets import load_selected

    try:
        specs = load_selected(inventory, host, limit, extra)
        hosts = [host_entry(spec) for spec in specs]
    except ProvisionError as exc:
        click.echo(f"ERROR: {exc}", err=True)
        return 2
    json.dump({"hosts": hosts}, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    return 0


@click.command(context_settings={"max_content_width": 100})
@inventory_options
@click.option("--limit", metavar="PATTERN", help="Only these hosts (any Ansible --limit "
                                                 "pattern, @file too).")
@click.option("--host", help="One host: an inventory name, an ssh_config alias or "
                             "user@host[:port].")
@click.option("-e", "--extra-vars", "extra", multiple=True, metavar="KEY=VALUE|@FILE",
              help="Set a variable over every other source (repeatable).")
@click.option("--list", "as_list", is_flag=True, required=True,
              help="Print the selected hosts as JSON (required, as for ansible-inventory).")
def inventory(inventory, limit: str | None, host: str | None, extra: tuple[str, ...],
              as_list: bool) -> None:
    """Show, as JSON and without connecting, the hosts an inventory gives and how each is reached.

    Hosts come in the order a run uses; each has its resolved connection
    (address, port, user, key, jump hosts, become; ~/.ssh/config applied) and
    every variable provision uses, with the file:line it came from.

    \b
    Exit status: 0 printed, 2 configuration error.
    """
    sys.exit(run_inventory(inventory, limit, host, extra))
