"""From command-line arguments to validated (HostSpec, Settings) pairs, before any connection.

Every configuration error of every selected host is collected and reported at
once, so a fleet run never stops at the first typo and never half-starts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from provision.inventory import load_inventory
from provision.model import ConfigError, HostSpec, ProvisionError, Settings
from provision.templating import VaultKeys
from provision.variables import apply_extra_vars, check_all, parse_extra_vars, settings_for

# A host name is printed at the start of every line about it: nothing that could forge a
# line (newline, control characters) or read like shell (spaces, quotes, ;).
_HOST_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:@\[\]-]{0,252}$")


@dataclass(frozen=True)
class InventoryArgs:
    """Every `-i` given, in order, and how to open vault secrets in them."""

    paths: tuple[str, ...] = ()
    vault: VaultKeys | None = None

    def __str__(self) -> str:
        return ", ".join(self.paths) or "inventory"


class ConfigErrors(ProvisionError):
    """All the configuration errors found, each naming its file, key, value and fix."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


def _args(inventory: InventoryArgs | str | None) -> InventoryArgs:
    if isinstance(inventory, InventoryArgs):
        return inventory
    return InventoryArgs((inventory,) if inventory else ())


def load_selected(inventory: InventoryArgs | str | None, host: str | None, limit: str | None,
                  extra: tuple[str, ...]) -> list[HostSpec]:
    """The selected hosts' specs, -e applied, in run order; nothing validated beyond that."""
    args = _args(inventory)
    extra_vars = parse_extra_vars(list(extra))
    inv = load_inventory(list(args.paths) or None, args.vault, extra_vars)
    specs = [inv.resolve_host(host)] if host else list(inv.select(limit or "all"))
    return [apply_extra_vars(spec, extra_vars) for spec in specs]


def resolve_targets(
    inventory: InventoryArgs | str | None, host: str | None, limit: str | None,
    extra: tuple[str, ...],
) -> list[tuple[HostSpec, Settings]]:
    """The hosts to work on, with their settings; raises ConfigErrors listing every problem."""
    try:
        specs = load_selected(inventory, host, limit, extra)
        bad = [spec.name for spec in specs if not _HOST_NAME.match(spec.name)]
        if bad:
            raise ConfigErrors([ConfigError(str(_args(inventory)), "host", name,
                                            "a host name is letters, digits and . _ - : @ [ ] "
                                            "(no spaces, quotes or line breaks); rename it and "
                                            "put the address in ansible_host")
                                for name in bad])
        if not specs:
            raise ConfigError(str(_args(inventory)), "--limit", limit,
                              "the pattern matches no host; check the names and groups")
        errors = check_all(specs)
        if errors:
            raise ConfigErrors(list(errors))
        return [(spec, settings_for(spec)) for spec in specs]
    except ConfigError as exc:
        raise ConfigErrors([exc]) from None
