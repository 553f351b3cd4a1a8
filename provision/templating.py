"""Jinja values and ansible-vault secrets, through ansible-core itself, imported only when needed.

Why ansible-core and not our own Jinja: Ansible's templating is not plain
Jinja. It resolves variables recursively with its own precedence, adds
`lookup()`, dozens of filters and tests, `hostvars`/`groups` magic variables,
undefined-variable rules and (since 2.19) trust rules; a reimplementation
would differ from Ansible exactly where users would not look. Importing
ansible-core costs start-up time, so it is imported only for an inventory
that needs it: a variable provision uses whose value contains `{{`/`{%` or
is `!vault`-encrypted, a vault-encrypted file, or a dynamic inventory. A plain
inventory never imports it (bench/inventory_bench.py measures both).

Only the variables provision uses are templated, as Ansible templates lazily:
an unused variable that refers to facts (`{{ ansible_default_ipv4.address }}`)
is not an error. A used value that cannot be templated is an error naming the
file:line, the key and the expression; the literal is never used.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from provision.model import ConfigError

INSTALL_HINT = ("install ansible-core next to provision (pip install 'provision[ansible]', "
                "or pip install ansible-core in the same environment)")
_JINJA = re.compile(r"{{|{%")


@dataclass(frozen=True)
class VaultKeys:
    """Where vault passwords come from: --vault-password-file and/or --ask-vault-pass."""

    password_files: tuple[str, ...] = ()
    password: str | None = None  # typed at --ask-vault-pass (never from argv)


def needs_ansible(value: object) -> bool:
    """Whether a value has Jinja or a vault secret in it, at any depth."""
    from provision.inventory_yaml import Unsafe, Vault

    if isinstance(value, Vault):
        return True
    if isinstance(value, Unsafe):
        return False
    if isinstance(value, str):
        return bool(_JINJA.search(value))
    if isinstance(value, dict):
        return any(needs_ansible(k) or needs_ansible(v) for k, v in value.items())
    if isinstance(value, list):
        return any(needs_ansible(v) for v in value)
    return False


_READY: list[bool] = []


def ansible_required(where: str, key: str, value: object, why: str) -> None:
    """Import ansible-core and set up its plugin loader once, or stop with how to get it."""
    try:
        import ansible  # noqa: F401
    except ImportError:
        raise ConfigError(where, key, value, f"{why} needs ansible-core: {INSTALL_HINT}") from None
    if not _READY:
        import sys

        from ansible.plugins.loader import init_plugin_loader

        if not any(type(f).__name__ == "_AnsibleCollectionFinder" for f in sys.meta_path):
            init_plugin_loader()  # as ansible's CLIs do: collections (amazon.aws, ...) resolve
        _READY.append(True)


def use_vault_secrets(secrets: list) -> None:
    """ansible-core >= 2.19 decrypts through one process-wide context; older ones need none."""
    try:
        from ansible.parsing.vault import VaultSecretsContext
    except ImportError:
        return
    VaultSecretsContext._current = VaultSecretsContext(secrets)


def _secrets(vault: VaultKeys | None, where: str):
    """ansible-core's (vault-id, secret) list from our VaultKeys."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.parsing.vault import VaultSecret, get_file_vault_secret

    secrets = []
    if vault is not None:
        loader = DataLoader()
        for path in vault.password_files:
            try:
                secret = get_file_vault_secret(filename=path, loader=loader)
                secret.load()
            except Exception as exc:  # ansible raises several kinds; all mean "unusable file"
                raise ConfigError("--vault-password-file", "--vault-password-file", path,
                                  f"cannot read a vault password from it ({exc})") from None
            secrets.append(("default", secret))
        if vault.password is not None:
            secrets.append(("default", VaultSecret(vault.password.encode())))
    if not secrets:
        raise ConfigError(where, "(vault)", "<vault-encrypted>",
                          "this is vault-encrypted: give --vault-password-file FILE or "
                          "--ask-vault-pass, as with ansible")
    return secrets


def decrypt_file(text: str, where: str, vault: VaultKeys | None) -> str:
    """A whole ansible-vault file's plaintext."""
    ansible_required(where, "(vault)", "<vault-encrypted file>", "a vault-encrypted file")
    from ansible.parsing.vault import VaultLib

    try:
        secrets = _secrets(vault, where)
        use_vault_secrets(secrets)
        return VaultLib(secrets).decrypt(text).decode()
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(where, "(vault)", "<vault-encrypted file>",
                          f"cannot decrypt it ({exc}); check the vault password") from None


def plain(value: object) -> object:
    """ansible-core's tagged values as plain JSON-like Python values."""
    return json.loads(json.dumps(value, default=str))


class AnsibleView:
    """ansible-core's own reading of the same sources, to template values as Ansible would."""

    def __init__(self, sources: list[Path], vault: VaultKeys | None, extra: dict) -> None:
        ansible_required(str(sources[0]) if sources else "-i", "(templating)", "{{ ... }}",
                         "a Jinja or vault value")
        from ansible.inventory.manager import InventoryManager
        from ansible.parsing.dataloader import DataLoader
        from ansible.vars.hostvars import HostVars
        from ansible.vars.manager import VariableManager

        self.loader = DataLoader()
        if sources:  # not the current directory's group_vars/: provision does not read those
            first = sources[0]
            self.loader.set_basedir(str(first if first.is_dir() else first.parent))
        self.unlocked = bool(vault and (vault.password_files or vault.password is not None))
        if self.unlocked:
            secrets = _secrets(vault, "--vault-password-file")
            self.loader.set_vault_secrets(secrets)
            use_vault_secrets(secrets)
        self.inventory = InventoryManager(loader=self.loader,
                                          sources=[str(s) for s in sources])
        self.variables = VariableManager(loader=self.loader, inventory=self.inventory)
        HostVars(inventory=self.inventory, variable_manager=self.variables,
                 loader=self.loader)  # gives templates `hostvars`, as a play would
        self.extra = dict(extra)

    def template(self, host: str, values: dict, sources: dict, keys: list[str]) -> dict:
        """The given keys of one host's variables, templated (and decrypted) by Ansible."""
        from ansible.errors import AnsibleError
        from ansible.template import Templar

        target = self.inventory.get_host(host)
        if target is None:  # a --host outside the inventory: it gets `all`'s variables
            self.inventory.add_host(host, group="all")
            target = self.inventory.get_host(host)
        context = self.variables.get_vars(host=target, include_hostvars=True)
        context.update(self.extra)
        templar = Templar(loader=self.loader, variables=context)
        out = {}
        for key in keys:
            where = sources.get(key, host)
            raw = context.get(key, values.get(key))
            if _has_vault(values.get(key)) and not self.unlocked:
                _secrets(None, where)
            try:
                out[key] = plain(templar.template(raw))
            except AnsibleError as exc:
                message = str(getattr(exc, "message", "") or exc).splitlines()[0]
                raise ConfigError(where, key, _shown(values.get(key)),
                                  f"cannot be templated ({message}); define what it refers "
                                  "to, or give the value itself") from None
            if needs_ansible(out[key]) and isinstance(out[key], str):
                raise ConfigError(where, key, _shown(values.get(key)),
                                  "still contains a template after templating; give the "
                                  "value itself")
        return out


def _has_vault(value: object) -> bool:
    from provision.inventory_yaml import Vault

    if isinstance(value, Vault):
        return True
    if isinstance(value, dict):
        return any(_has_vault(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_vault(v) for v in value)
    return False


def _shown(value: object) -> object:
    """The raw value for an error message: a vault secret is never shown."""
    return "<vault-encrypted>" if _has_vault(value) else value
