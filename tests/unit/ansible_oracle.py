"""What ansible-core itself makes of an inventory: the oracle the inventory tests compare against.

Uses Ansible's own objects the way its CLIs do: InventoryManager (what
`ansible -i X all --limit P --list-hosts` prints), VariableManager.get_vars
(what `ansible-inventory --list` prints), Templar (what a task would see),
and the `ssh` connection and `sudo` become plugins' option resolution (which
spelling wins). Nothing here is provision code.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ansible.inventory.manager import InventoryManager
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.parsing.dataloader import DataLoader
from ansible.parsing.vault import VaultSecret, VaultSecretsContext
from ansible.playbook.play_context import PlayContext
from ansible.plugins.loader import become_loader, connection_loader, init_plugin_loader
from ansible.template import Templar
from ansible.vars.hostvars import HostVars
from ansible.vars.manager import VariableManager

SSH_OPTIONS = {"address": "host", "port": "port", "user": "remote_user",
               "key_file": "private_key_file", "password": "password",
               "common_args": "ssh_common_args", "extra_args": "ssh_extra_args"}


def plain(value: object) -> object:
    return json.loads(json.dumps(value, default=str))


@dataclass
class AnsibleHost:
    """One host as Ansible resolves it."""

    name: str
    connection: str
    ssh: dict
    become: bool
    become_user: str
    become_pass: str | None
    variables: dict = field(default_factory=dict)  # templated, for the names asked for


class Oracle:
    """ansible-core's reading of one set of sources."""

    def __init__(self, sources: list[Path], basedir: Path, vault_password: bytes | None) -> None:
        self.loader = DataLoader()
        self.loader.set_basedir(str(basedir))
        if not any(type(f).__name__ == "_AnsibleCollectionFinder" for f in sys.meta_path):
            init_plugin_loader()  # once per process, as ansible's CLIs do
        if vault_password is not None:
            secrets = [("default", VaultSecret(vault_password))]
            self.loader.set_vault_secrets(secrets)
            VaultSecretsContext._current = VaultSecretsContext(secrets)
        self.inventory = InventoryManager(loader=self.loader, sources=[str(s) for s in sources])
        self.variables = VariableManager(loader=self.loader, inventory=self.inventory)
        HostVars(inventory=self.inventory, variable_manager=self.variables, loader=self.loader)

    def limit(self, pattern: str) -> list[str]:
        """`ansible -i SOURCES all --limit PATTERN --list-hosts`."""
        self.inventory.subset(pattern)
        try:
            return [h.name for h in self.inventory.get_hosts("all")]
        finally:
            self.inventory.subset(None)

    def groups(self) -> list[str]:
        return list(self.inventory.groups)

    def host(self, name: str, names: tuple[str, ...]) -> AnsibleHost:
        host = self.inventory.get_host(name)
        context = self.variables.get_vars(host=host, include_hostvars=True)
        templar = Templar(loader=self.loader, variables=context)

        def value(key: str) -> object:
            return plain(templar.template(context[key]))

        wanted = {k: value(k) for k in names if k in context}
        options = {k: value(k) for k in context
                   if k.startswith("ansible_") and k in names}
        options["inventory_hostname"] = name
        ssh = connection_loader.get("ssh", PlayContext())
        ssh.set_options(var_options=options)
        sudo = become_loader.get("sudo")
        sudo.set_options(var_options=options)
        become_pass = sudo.get_option("become_pass")
        return AnsibleHost(
            name=name,
            connection=str(options.get("ansible_connection") or "ssh"),
            ssh={k: ssh.get_option(v) for k, v in SSH_OPTIONS.items()},
            become=boolean(options.get("ansible_become", False), strict=False),
            become_user=sudo.get_option("become_user"),
            become_pass=None if become_pass is None else str(become_pass),
            variables=wanted,
        )
