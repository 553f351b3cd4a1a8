"""Ansible inventories, read as Ansible reads them: sources, variables, patterns, `--host`.

An inventory that works with Ansible works here unchanged, and the tests
prove it against ansible-core itself (tests/unit/test_inventory_oracle.py):

- sources: one or several `-i`, each a YAML file (inventory_yaml.py), an INI
  file (inventory_ini.py), a directory (every file in it, sorted by name,
  skipping what Ansible skips), or a dynamic inventory run through ansible-core
  (inventory_dynamic.py);
- variables, lowest first, as Ansible's VariableManager: `all`'s inventory
  vars, every other group's inventory vars, `group_vars/all`, then the other
  groups' `group_vars/` files (groups ordered by depth, `ansible_group_priority`,
  name: Ansible's default VARIABLE_PRECEDENCE), the host's inventory vars,
  `host_vars/`, then `-e` (extra_vars.py); group_vars/host_vars files are chosen
  as Ansible chooses them
  (inventory_vars.py);
- Jinja and vault values of the variables provision uses are templated by
  ansible-core, imported only then (templating.py);
- connection fields with Ansible's spelling precedence (connection_vars.py);
- `--limit` patterns (inventory_patterns.py) over hosts in Ansible's order.

A relative `known_hosts_file` is resolved against the first source's
directory, so an inventory and its known_hosts can travel together. Nothing
here connects anywhere; `~/.ssh/config` is applied by connection.py beneath
every inventory setting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from provision.connection_vars import (
    ADDRESS_VARS,
    BECOME_PASS_VARS,
    BECOME_USER_VARS,
    CONNECTION_VARS,
    KEY_VARS,
    PASSWORD_VARS,
    PORT_VARS,
    SSH_ARG_VARS,
    USER_VARS,
    connection_spec,
    split_target,
)
from provision.extra_vars import ExtraVars, apply_extra_vars, parse_extra_vars
from provision.inventory_dynamic import dynamic_kind, read_dynamic
from provision.inventory_graph import Graph
from provision.inventory_ini import read_ini
from provision.inventory_patterns import Matcher
from provision.inventory_vars import load_var_files, source_dir
from provision.inventory_yaml import load_yaml, read_text, read_yaml_inventory
from provision.model import ConfigError, HostSpec
from provision.templating import AnsibleView, VaultKeys, needs_ansible

__all__ = ["ExtraVars", "Inventory", "apply_extra_vars", "load_inventory", "parse_extra_vars",
           "tool_variable_names"]

LOCAL_PATH_VARS = ("known_hosts_file",)  # files on this machine: relative to the inventory
YAML_SUFFIXES = (".yml", ".yaml", ".json")
# what Ansible skips in a directory source: hidden files, vars dirs, editor/package leftovers
_IGNORED = re.compile(r"^\.|^host_vars$|^group_vars$|^vars_plugins$|"
                      r"(\.pyc|\.pyo|\.swp|\.bak|~|\.rpm|\.md|\.txt|\.rst|\.orig|\.cfg|\.retry)$")
CONNECTION_NAMES = (*ADDRESS_VARS, *PORT_VARS, *USER_VARS, *KEY_VARS, *PASSWORD_VARS,
                    *SSH_ARG_VARS, *BECOME_USER_VARS, *BECOME_PASS_VARS, *CONNECTION_VARS,
                    "ansible_become", "ansible_become_method")


def tool_variable_names() -> tuple[str, ...]:
    """Every variable provision reads: its settings table, then the connection variables."""
    from provision.variables import VARIABLES

    return (*(v.name for v in VARIABLES), *CONNECTION_NAMES)


@dataclass
class Inventory:
    """Hosts with merged variables, in Ansible's order, and groups (`all`, `ungrouped` too)."""

    sources: list[Path] = field(default_factory=list)
    hosts: dict[str, HostSpec] = field(default_factory=dict)  # in the order of `all`
    groups: dict[str, list[str]] = field(default_factory=dict)  # group -> hosts, nested included
    first_seen: list[str] = field(default_factory=list)  # host names in the order first read
    base_vars: dict = field(default_factory=dict)  # `all`'s vars: what a --host outside gets
    base_sources: dict = field(default_factory=dict)
    templater: _Templater | None = None  # for a --host outside, whose `all` vars may need it

    @property
    def path(self) -> Path | None:
        """The first source (for messages)."""
        return self.sources[0] if self.sources else None

    def _names(self) -> str:
        hosts = ", ".join(self.hosts) or "none"
        groups = ", ".join(g for g in self.groups if g not in ("all", "ungrouped")) or "none"
        where = ", ".join(map(str, self.sources)) or "no inventory (-i) given"
        return f"hosts in {where}: {hosts}; groups: {groups}"

    def select(self, pattern: str) -> list[HostSpec]:
        """The hosts `--limit PATTERN` selects, in the order of `all` (a run's order)."""
        matcher = Matcher(self.groups, self.first_seen, self._names())
        return [self.hosts[h] for h in matcher.limit(pattern)]

    def resolve_host(self, target: str) -> HostSpec:
        """`--host`: an inventory host, else `[user@]host[:port]` (IPv6 as `[::1]:2222`).

        A name that is not in the inventory is used as the address itself, so
        an ssh_config alias works (connection.py applies ~/.ssh/config). Such a
        host still gets the `all` group's variables, so a lab or site inventory
        can supply the index URLs and known_hosts_file for ad-hoc hosts.
        """
        if target in self.hosts:
            return self.hosts[target]
        if target in self.groups:
            raise ConfigError("--host", "host", target,
                              f"{target!r} is a group; use --limit {target} for its hosts")
        user, address, port = split_target(target, "--host", "host")
        values, sources = dict(self.base_vars), dict(self.base_sources)
        values["ansible_host"], sources["ansible_host"] = address, "--host"
        if user is not None:
            values["ansible_user"], sources["ansible_user"] = user, "--host"
        if port is not None:
            values["ansible_port"], sources["ansible_port"] = port, "--host"
        if self.templater is not None:
            self.templater.apply(target, values, sources)
        return connection_spec(target, address, values, sources)


# --------------------------------------------------------------------------- sources


def _read_source(graph: Graph, path: Path, vault: VaultKeys | None) -> None:
    """One -i source into the graph: a directory's files in Ansible's order, or one file."""
    if path.is_dir():
        for entry in sorted(path.iterdir(), key=lambda p: p.name):
            if not _IGNORED.search(entry.name):
                _read_source(graph, entry, vault)
        return
    if not path.is_file():
        raise ConfigError(str(path), "-i", str(path),
                          "the inventory does not exist; check the path "
                          "(or leave -i out and give --host user@address)")
    kind = dynamic_kind(path)
    if kind:
        read_dynamic(graph, path, kind, vault)
        return
    if path.suffix == ".toml":
        raise ConfigError(str(path), "-i", str(path),
                          "TOML inventories are not read by provision; write it as YAML or INI")
    text = read_text(path, vault)
    if path.suffix in YAML_SUFFIXES or not path.suffix:
        try:
            data = load_yaml(text, str(path))
        except ConfigError:
            if path.suffix:
                raise
            data = None  # no extension: Ansible tries YAML, then INI
        if isinstance(data, dict):
            if dynamic_kind(path, data):
                read_dynamic(graph, path, "plugin", vault)
            else:
                read_yaml_inventory(graph, path, data)
            return
        if path.suffix:
            read_yaml_inventory(graph, path, data)
            return
    read_ini(graph, path, text)


def _as_sources(paths: Path | str | list | tuple | None) -> list[Path]:
    if paths is None:
        return []
    if isinstance(paths, (str, Path)):
        return [Path(paths)]
    return [Path(p) for p in paths if p]


# --------------------------------------------------------------------------- variables


class _Layers:
    """Each source directory's group_vars/ and host_vars/, read once per name."""

    def __init__(self, sources: list[Path], vault: VaultKeys | None) -> None:
        self.dirs = [source_dir(s) for s in sources]
        self.vault = vault
        self.cache: dict[tuple[str, str], tuple[dict, dict]] = {}

    def files(self, kind: str, name: str) -> tuple[dict, dict]:
        """(values, sources) of `kind`/NAME over every source directory, later winning."""
        if (kind, name) not in self.cache:
            values: dict = {}
            sources: dict = {}
            for base in self.dirs:
                more, where = load_var_files(base / kind, name, self.vault)
                values.update(more)
                sources.update(where)
            self.cache[(kind, name)] = (values, sources)
        return self.cache[(kind, name)]


def _merge(layers: list[tuple[dict, dict]]) -> tuple[dict, dict]:
    values: dict = {}
    sources: dict = {}
    for more, where in layers:
        values.update(more)
        sources.update(where)
    return values, sources


def _host_layers(graph: Graph, files: _Layers, host: str) -> tuple[dict, dict]:
    """A host's variables from every layer, in Ansible's order (lowest first)."""
    groups = graph.sorted_groups(graph.host_groups(host) - {"all"})
    everyone = graph.groups["all"]
    layers = [(everyone.vars, everyone.sources)]
    layers += [(graph.groups[g].vars, graph.groups[g].sources) for g in groups]
    layers += [files.files("group_vars", "all")]
    layers += [files.files("group_vars", g) for g in groups]
    layers += [(graph.hosts[host].vars, graph.hosts[host].sources),
               files.files("host_vars", host)]
    return _merge(layers)


def _resolve_local_paths(values: dict, base: Path) -> None:
    for name in LOCAL_PATH_VARS:
        value = values.get(name)
        if isinstance(value, str) and value and not value.startswith(("/", "~")):
            values[name] = str(base / value)


class _Templater:
    """Templates the used variables that need it, through one AnsibleView made on demand."""

    def __init__(self, sources: list[Path], vault: VaultKeys | None, extra: dict) -> None:
        self.sources, self.vault, self.extra = sources, vault, extra
        self.view: AnsibleView | None = None

    def apply(self, host: str, values: dict, sources: dict) -> None:
        if not any(needs_ansible(v) for v in values.values()):
            return  # the common case: no Jinja, no vault; nothing more is imported
        used = tool_variable_names()
        keys = [k for k in used if k in values and needs_ansible(values[k])]
        if not keys:
            return
        if self.view is None:
            self.view = AnsibleView(self.sources, self.vault, self.extra)
        values.update(self.view.template(host, values, sources, keys))


def load_inventory(paths: Path | str | list | tuple | None, vault: VaultKeys | None = None,
                   extra: dict | None = None) -> Inventory:
    """Read every -i source (None: an empty inventory, for `--host` alone).

    `extra` (-e) is only the context for templating here; apply_extra_vars puts
    it over the result. Every error names the file and line.
    """
    sources = _as_sources(paths)
    graph = Graph()
    for source in sources:
        _read_source(graph, source, vault)
    graph.reconcile()
    files = _Layers(sources, vault)
    templater = _Templater(sources, vault, dict(extra or {}))
    base = source_dir(sources[0]) if sources else Path.cwd()
    order = graph.hosts_of("all")
    hosts: dict[str, HostSpec] = {}
    for host in order:
        values, where = _host_layers(graph, files, host)
        templater.apply(host, values, where)
        _resolve_local_paths(values, base)
        groups = tuple(sorted(graph.host_groups(host) - {"all"}))
        hosts[host] = connection_spec(host, host, values, where, groups)
    groups = {g: graph.hosts_of(g) for g in graph.groups}
    base_vars, base_sources = _merge([(graph.groups["all"].vars, graph.groups["all"].sources),
                                      files.files("group_vars", "all")])
    _resolve_local_paths(base_vars, base)
    return Inventory(sources, hosts, groups, list(graph.hosts), base_vars, base_sources,
                     templater)
