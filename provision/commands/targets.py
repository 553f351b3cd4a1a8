"""From command-line arguments to validated (HostSpec, Settings) pairs, before any connection.

Every configuration error of every selected host is collected and reported at
once, so a fleet run never stops at the first typo and never half-starts.
"""

from __future__ import annotations

import re

from provision.inventory import load_inventory
from provision.model import ConfigError, HostSpec, ProvisionError, Settings
from provision.variables import apply_extra_vars, check_all, parse_extra_vars, settings_for

# A host name is printed at the start of every line about it: nothing that could forge a
# line (newline, control characters) or read like shell (spaces, quotes, ;).
_HOST_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:@\[\]-]{0,252}$")


class ConfigErrors(ProvisionError):
    """All the configuration errors found, each naming its file, key, value and fix."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


def resolve_targets(
    inventory: str | None, host: str | None, limit: str | None, extra: tuple[str, ...]
) -> list[tuple[HostSpec, Settings]]:
    """The hosts to work on, with their settings; raises ConfigErrors listing every problem."""
    try:
        try:
            inv = load_inventory(inventory)
            specs = [inv.resolve_host(host)] if host else list(inv.select(limit or "all"))
        except RecursionError:
            raise ConfigError(inventory or "inventory", "children", "(a cycle)",
                              "a group is its own child, directly or through others; "
                              "remove the child entry that closes the loop") from None
        bad = [spec.name for spec in specs if not _HOST_NAME.match(spec.name)]
        if bad:
            raise ConfigErrors([ConfigError(inventory or "inventory", "host", name,
                                            "a host name is letters, digits and . _ - : @ [ ] "
                                            "(no spaces, quotes or line breaks); rename it and "
                                            "put the address in ansible_host")
                                for name in bad])
        if not specs:
            raise ConfigError(inventory or "inventory", "--limit", limit,
                              "the pattern matches no host; check the names and groups")
        extra_vars = parse_extra_vars(list(extra))
        specs = [apply_extra_vars(spec, extra_vars) for spec in specs]
        errors = check_all(specs)
        if errors:
            raise ConfigErrors(list(errors))
        return [(spec, settings_for(spec)) for spec in specs]
    except ConfigError as exc:
        raise ConfigErrors([exc]) from None
