"""Dynamic inventories (plugin configurations, executable scripts), read through ansible-core.

`plugin: amazon.aws.aws_ec2` files and executable inventory scripts are
Ansible's own extension points: only ansible-core (and its collections) can
run them faithfully, so provision asks it to, and copies the groups, hosts
and variables it reports into the same graph a static file fills. Without
ansible-core the error says how to install it. The script is run by
ansible-core exactly as `ansible-inventory -i SCRIPT` would run it: giving it
with -i is the user's explicit choice, as with Ansible.
"""

from __future__ import annotations

import os
from pathlib import Path

from provision.inventory_graph import Graph
from provision.templating import VaultKeys, ansible_required, plain

HIDDEN_VARS = ("inventory_file", "inventory_dir")


def dynamic_kind(path: Path, data: object = None) -> str | None:
    """'script' or 'plugin' when the file is a dynamic inventory, else None."""
    if data is not None:
        return "plugin" if isinstance(data, dict) and data.get("plugin") else None
    if os.access(path, os.X_OK):
        return "script"
    try:
        with path.open("rb") as handle:
            return "script" if handle.read(2) == b"#!" else None
    except OSError:
        return None


def read_dynamic(graph: Graph, path: Path, kind: str, vault: VaultKeys | None) -> None:
    """Let ansible-core run the plugin or script, then copy what it found into the graph."""
    what = ("an inventory plugin configuration" if kind == "plugin"
            else "an executable inventory script")
    ansible_required(str(path), "-i", str(path), f"{path.name} is {what}; reading it")
    from ansible.errors import AnsibleError
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader

    from provision.model import ConfigError
    from provision.templating import _secrets, use_vault_secrets

    loader = DataLoader()
    if vault and (vault.password_files or vault.password is not None):
        secrets = _secrets(vault, str(path))
        loader.set_vault_secrets(secrets)
        use_vault_secrets(secrets)
    try:
        found = InventoryManager(loader=loader, sources=[str(path)])
    except AnsibleError as exc:
        raise ConfigError(str(path), "-i", str(path),
                          f"ansible-core could not read it: {str(exc).splitlines()[0]}") from None
    if not found.hosts and not set(found.groups) - {"all", "ungrouped"}:
        raise ConfigError(str(path), "-i", str(path),
                          f"ansible-core found nothing in {what} (run ansible-inventory -i "
                          f"{path} --list to see its warnings)")
    where = f"{path} (via ansible-core)"
    for host in found.hosts.values():
        graph.add_host(host.name, None, None, where)
        for key, value in host.vars.items():
            if key not in HIDDEN_VARS:
                graph.set_host_var(host.name, key, plain(value), where)
    for group in found.groups.values():
        graph.add_group(group.name)
        graph.groups[group.name].priority = group.priority
        for key, value in group.vars.items():
            graph.set_group_var(group.name, key, plain(value), where)
    for group in found.groups.values():
        for host in group.hosts:
            graph.add_host(host.name, group.name, None, where)
        for child in group.child_groups:
            graph.add_child(group.name, child.name, where)
