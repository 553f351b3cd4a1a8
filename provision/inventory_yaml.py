"""YAML inventories and vars files, read with their line numbers, as Ansible's `yaml` plugin.

A YAML inventory is a mapping of groups (usually just `all`), each with
`hosts` (name -> vars or null), `children` (more groups, nested the same way)
and `vars`, processed in the order written, as Ansible does (the order decides
host order). A bare string where a mapping belongs (`hosts: gpu1`) is one name,
as in Ansible. Stricter than Ansible, on purpose: an unknown key next to
`hosts`/`children`/`vars`, a `hosts` list, a group that is not a mapping are
errors naming the file and line, not warnings, so a typo cannot silently drop
a host from a fleet run.

`!vault |` values load as `Vault` objects (decrypted later, by templating.py);
a whole file encrypted with ansible-vault is decrypted before it is parsed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from provision.inventory_graph import Graph
from provision.inventory_names import expand_host_key
from provision.model import ConfigError

GROUP_KEYS = ("hosts", "children", "vars")
VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
VAULT_HEADER = "$ANSIBLE_VAULT;"


@dataclass(frozen=True)
class Vault:
    """A `!vault` value: ciphertext, and where it was, until a vault password opens it."""

    ciphertext: str
    where: str

    def __repr__(self) -> str:
        return "<vault-encrypted>"


class _Map(dict):
    """A YAML mapping that remembers its own line and each key's line, for error messages."""

    line: int = 0
    key_lines: dict


class _LineLoader(yaml.SafeLoader):
    """SafeLoader whose mappings are _Map, so every error can say `file:line`."""

    where = ""


def _construct_map(loader: _LineLoader, node: yaml.MappingNode):
    data = _Map()
    data.line = node.start_mark.line + 1
    data.key_lines = {}
    yield data
    data.update(loader.construct_mapping(node))
    data.key_lines = {str(k.value): k.start_mark.line + 1 for k, _ in node.value
                      if isinstance(k, yaml.ScalarNode)}


def _construct_vault(loader: _LineLoader, node: yaml.ScalarNode) -> Vault:
    return Vault(loader.construct_scalar(node), f"{loader.where}:{node.start_mark.line + 1}")


def _construct_unsafe(loader: _LineLoader, node: yaml.Node) -> object:
    """`!unsafe` text is never templated: wrap it so templating.py passes it through."""
    return Unsafe(loader.construct_scalar(node))


class Unsafe(str):
    """Text marked `!unsafe`: used literally, never templated (Ansible's meaning)."""


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)
_LineLoader.add_constructor("!vault", _construct_vault)
_LineLoader.add_constructor("!unsafe", _construct_unsafe)


def load_yaml(text: str, where: str) -> object:
    """Parse YAML; a syntax error becomes a ConfigError at `file:line` with the parser's words."""
    loader = _LineLoader(text)
    loader.where = where
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"{where}:{mark.line + 1}" if mark is not None else where
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(at, "(yaml)", problem,
                          "fix the YAML syntax there (indentation, a missing ':' or quote)"
                          ) from None
    finally:
        loader.dispose()


def read_text(path: Path, vault=None) -> str:
    """A file's text; a whole-file ansible-vault file is decrypted (templating.py does it)."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(str(path), "(file)", str(path),
                          f"cannot read it ({why}); check the path") from None
    if text.startswith(VAULT_HEADER):
        from provision.templating import decrypt_file

        return decrypt_file(text, str(path), vault)
    return text


def read_yaml_file(path: Path, vault=None) -> object:
    """A YAML (or JSON) file's data, with lines for errors."""
    return load_yaml(read_text(path, vault), str(path))


def at(where: str, data: object, key: object = None) -> str:
    """`file:line` of a key of a _Map (or of the map itself), else just the file."""
    if isinstance(data, _Map):
        line = data.key_lines.get(str(key), data.line) if key is not None else data.line
        if line:
            return f"{where}:{line}"
    return where


def check_var_name(name: object, where: str, value: object) -> str:
    """A variable name Ansible accepts without deprecation: letters, digits, '_'."""
    if not isinstance(name, str) or not VAR_NAME.match(name):
        raise ConfigError(where, str(name), value,
                          "a variable name is letters, digits and '_', not starting with a digit")
    return name


class _YamlReader:
    """Walks the YAML tree in the order written, filling the graph as Ansible's plugin does."""

    def __init__(self, graph: Graph, path: Path) -> None:
        self.graph, self.where = graph, str(path)

    def mapping(self, value: object, parent: object, key: str, path: str) -> dict:
        if value is None:
            return {}
        if isinstance(value, str) and key in GROUP_KEYS:
            return {value: None}
        if not isinstance(value, dict):
            fix = {"hosts": "write hosts as a mapping of names, e.g. `hosts:` then "
                            "`  gpu1:` on its own line (a trailing ':' each, not '- gpu1')",
                   "children": "write children as a mapping of group names "
                               "(`children:` then `  a100:`)",
                   }.get(key, "write it as a mapping of `name: value` lines")
            raise ConfigError(at(self.where, parent, key), path, value, fix)
        for name in value:
            if not isinstance(name, str) and key != "hosts":
                raise ConfigError(at(self.where, value, name), f"{path}.{name}", name,
                                  "names here must be text; quote it")
        return value

    def group(self, name: str, data: object, path: str, container: object) -> str:
        body = self.mapping(data, container, name, path)
        for key in body:
            if key not in GROUP_KEYS:
                raise ConfigError(at(self.where, body, key), f"{path}.{key}", key,
                                  "a group holds only `hosts`, `children` and `vars` "
                                  f"(is {key!r} a host? put it under `hosts:`; "
                                  "a variable? under `vars:`)")
        self.graph.add_group(name)
        for key in body:
            section = self.mapping(body[key], body, key, f"{path}.{key}")
            if key == "vars":
                for var, value in section.items():
                    where = at(self.where, section, var)
                    self.graph.set_group_var(name, check_var_name(var, where, value),
                                             value, where)
            elif key == "children":
                for child, child_data in section.items():
                    self.group(child, child_data, f"{path}.children.{child}", section)
                    self.graph.add_child(name, child, at(self.where, section, child))
            else:
                self.hosts(name, section, path)
        return name

    def hosts(self, group: str, section: dict, path: str) -> None:
        for key, data in section.items():
            where = at(self.where, section, key)
            names, port = expand_host_key(key, where)
            values = self.mapping(data, section, key, f"{path}.hosts.{key}")
            for host in names:
                self.graph.add_host(host, group, port, where)
                for var, value in values.items():
                    var_at = at(self.where, values, var)
                    self.graph.set_host_var(host, check_var_name(var, var_at, value),
                                            value, var_at)


def read_yaml_inventory(graph: Graph, path: Path, data: object) -> None:
    """Add a parsed YAML inventory's groups, hosts and variables to the graph."""
    if data is None:
        return
    where = str(path)
    if not isinstance(data, dict):
        raise ConfigError(at(where, data), "(top)", type(data).__name__,
                          "an inventory is a mapping of groups, starting with `all:`")
    reader = _YamlReader(graph, path)
    for name, body in data.items():
        if not isinstance(name, str):
            raise ConfigError(at(where, data, name), str(name), name, "a group name must be text")
        reader.group(name, body, name, data)
