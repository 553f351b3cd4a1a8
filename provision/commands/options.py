"""Command-line options shared by every command that reads an inventory."""

from __future__ import annotations

import functools

import click


def inventory_options(command):
    """-i (repeatable), --vault-password-file, --ask-vault-pass, handed on as one InventoryArgs."""

    @functools.wraps(command)
    def combined(*args, inventory: tuple[str, ...], vault_password_file: tuple[str, ...],
                 ask_vault_pass: bool, **kwargs):
        from provision.commands.targets import InventoryArgs
        from provision.templating import VaultKeys

        password = None
        if ask_vault_pass:
            password = click.prompt("Vault password", hide_input=True, err=True)
        vault = VaultKeys(tuple(vault_password_file), password)
        return command(*args, inventory=InventoryArgs(tuple(inventory), vault), **kwargs)

    options = [
        click.option("-i", "--inventory", multiple=True, type=click.Path(),
                     envvar="PROVISION_INVENTORY",
                     help="Ansible inventory: a YAML or INI file, a directory of them, or a "
                          "dynamic one (needs ansible-core); repeatable, as with ansible "
                          "(default: $PROVISION_INVENTORY, else none: --host is then an "
                          "ssh_config alias or user@host[:port])."),
        click.option("--vault-password-file", multiple=True, metavar="FILE",
                     help="Open ansible-vault values and files with this password file "
                          "(repeatable; needs ansible-core)."),
        click.option("--ask-vault-pass", is_flag=True,
                     help="Ask for the vault password (never taken from the command line)."),
    ]
    for option in reversed(options):
        combined = option(combined)
    return combined
