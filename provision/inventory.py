"""Ansible YAML inventories, `--limit` patterns, `--host` targets and `-e` extra variables.

The point is that an inventory people already use with Ansible works here
unchanged, so this reads the same structure Ansible's `yaml` inventory plugin
reads: top-level groups (usually just `all`), each with `hosts` (name -> vars
or null), `children` (more groups, nested the same way) and `vars`; host
ranges such as `gpu[01:04]` and `name:port` keys; the connection variables
`ansible_host`, `ansible_port`, `ansible_user`, `ansible_ssh_private_key_file`
(and their older `ansible_ssh_host` / `ansible_ssh_port` / `ansible_ssh_user`
/ `ansible_private_key_file` spellings); and `group_vars/` and `host_vars/`
beside the inventory file (`NAME`, `NAME.yml`, `NAME.yaml`, `NAME.json`, or a
directory `NAME/` whose files are read in name order).

Precedence, lowest first, as Ansible's documented order for the sources we
read:
  1. inventory group `vars`: `all`, then parents before children (by depth),
     groups of the same depth in alphabetical order;
  2. `group_vars/` files, in the same group order;
  3. the inventory's host vars;
  4. `host_vars/` files;
  5. `-e` (applied later by `apply_extra_vars`), which beats everything.

Unlike Ansible, a structure error (a `hosts` list, an unknown key next to
`hosts`/`children`/`vars`, a bad port) is fatal, not a warning, and names the
file and line: a typo must not silently drop a host from a fleet run. A
relative `known_hosts_file` is resolved against the inventory file's
directory, so an inventory and its known_hosts can travel together.

Nothing here connects anywhere; `~/.ssh/config` (User, Port, ProxyJump, ...)
is applied by provision/connection.py when it connects.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
import shlex
import string
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from provision.model import ConfigError, HostSpec

GROUP_KEYS = ("hosts", "children", "vars")
# (preferred name, older alias) for each connection field, as Ansible accepts them
ADDRESS_VARS = ("ansible_host", "ansible_ssh_host")
PORT_VARS = ("ansible_port", "ansible_ssh_port")
USER_VARS = ("ansible_user", "ansible_ssh_user")
KEY_VARS = ("ansible_ssh_private_key_file", "ansible_private_key_file")
LOCAL_PATH_VARS = ("known_hosts_file",)  # files on this machine: relative to the inventory
VAR_FILE_SUFFIXES = ("", ".yml", ".yaml", ".json")

_SAFE_ADDRESS = re.compile(r"^[A-Za-z0-9._:%\[\]-]+$")
_SAFE_USER = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._-]*\$?$")
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RANGE = re.compile(r"^(.*?)\[([0-9]+|[a-z]):([0-9]+|[a-z])(?::([0-9]+))?\](.*)$")
_NAME_PORT = re.compile(r"^([^:\[\]]+):([0-9]+)$")


# --------------------------------------------------------------------------- YAML with lines


class _Map(dict):
    """A YAML mapping that remembers its own line and each key's line, for error messages."""

    line: int = 0
    key_lines: dict


class _LineLoader(yaml.SafeLoader):
    """SafeLoader whose mappings are _Map, so every error can say `file:line`."""


def _construct_map(loader: _LineLoader, node: yaml.MappingNode):
    data = _Map()
    data.line = node.start_mark.line + 1
    data.key_lines = {}
    yield data
    data.update(loader.construct_mapping(node))
    data.key_lines = {str(k.value): k.start_mark.line + 1 for k, _ in node.value
                      if isinstance(k, yaml.ScalarNode)}


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)


def load_yaml(text: str, where: str) -> object:
    """Parse YAML; a syntax error becomes a ConfigError at `file:line` with the parser's words."""
    try:
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"{where}:{mark.line + 1}" if mark is not None else where
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(at, "(yaml)", problem,
                          "fix the YAML syntax there (indentation, a missing ':' or quote)"
                          ) from None


def _read_yaml_file(path: Path) -> object:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(str(path), "(file)", str(path),
                          f"cannot read it ({exc.strerror}); check the path") from None
    return load_yaml(text, str(path))


def _at(where: str, data: object, key: object = None) -> str:
    """`file:line` of a key of a _Map (or of the map itself), else just the file."""
    if isinstance(data, _Map):
        line = data.key_lines.get(str(key), data.line) if key is not None else data.line
        if line:
            return f"{where}:{line}"
    return where


# --------------------------------------------------------------------------- connection fields


def _first(values: dict, names: tuple[str, ...]) -> tuple[str | None, object]:
    for name in names:
        if name in values:
            return name, values[name]
    return None, None


def parse_port(value: object, where: str, key: str) -> int:
    """An int 1-65535 (YAML int or digit string); anything else names the key and the range."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) or (
            isinstance(value, str) and not value.strip().isdigit()):
        raise ConfigError(where, key, value, "a TCP port is a whole number from 1 to 65535")
    port = int(value)
    if not 1 <= port <= 65535:
        raise ConfigError(where, key, value, "a TCP port is a whole number from 1 to 65535")
    return port


def _check_address(value: object, where: str, key: str) -> str:
    # A leading '-' would read as an ssh option; spaces and quotes have no place in a host name.
    if not isinstance(value, str) or not value or value.startswith("-") \
            or not _SAFE_ADDRESS.match(value):
        raise ConfigError(where, key, value,
                          "give a host name or IP address (letters, digits, '.', '-', ':'), "
                          "not starting with '-'")
    return value


def _check_user(value: object, where: str, key: str) -> str:
    if not isinstance(value, str) or not _SAFE_USER.match(value):
        raise ConfigError(where, key, value,
                          "give a login name (letters, digits, '.', '_', '-'), "
                          "not starting with '-'")
    return value


def connection_spec(name: str, default_address: str, values: dict, sources: dict,
                    groups: tuple[str, ...] = ()) -> HostSpec:
    """A HostSpec whose address/port/user/key come from the merged variables (else defaults)."""

    def where(var: str | None) -> str:
        return sources.get(var, name) if var else name

    var, raw = _first(values, ADDRESS_VARS)
    address = _check_address(raw, where(var), var) if var else default_address
    var, raw = _first(values, PORT_VARS)
    port = parse_port(raw, where(var), var) if var else 22
    var, raw = _first(values, USER_VARS)
    kwargs: dict = {}
    if var:
        kwargs["user"] = _check_user(raw, where(var), var)
    var, raw = _first(values, KEY_VARS)
    if var and raw not in (None, ""):
        if not isinstance(raw, str):
            raise ConfigError(where(var), var, raw, "give the private key file's path as text")
        kwargs["key_file"] = raw
    return HostSpec(name=name, address=address, port=port, groups=groups,
                    vars=dict(values), sources=dict(sources), **kwargs)


# --------------------------------------------------------------------------- the inventory


@dataclass
class Inventory:
    """Hosts with merged variables, and groups as Ansible sees them (`all`, `ungrouped`)."""

    path: Path | None = None
    hosts: dict[str, HostSpec] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)  # group -> hosts, nested included
    base_vars: dict = field(default_factory=dict)  # `all`'s vars: what a --host outside gets
    base_sources: dict = field(default_factory=dict)

    def _names(self) -> str:
        hosts = ", ".join(self.hosts) or "none"
        groups = ", ".join(g for g in self.groups if g not in ("all", "ungrouped")) or "none"
        where = str(self.path) if self.path else "no inventory (-i) given"
        return f"hosts in {where}: {hosts}; groups: {groups}"

    def _match(self, term: str) -> list[str]:
        """Host names one pattern term names: `all`/`*`, a host, a group, a glob or `~regex`."""
        if term in ("all", "*"):
            return list(self.hosts)
        if term in self.hosts:
            return [term]
        if term in self.groups:
            return list(self.groups[term])
        if term.startswith("~"):
            try:
                regex = re.compile(term[1:])
            except re.error as exc:
                raise ConfigError("--limit", "pattern", term,
                                  f"the regular expression is invalid ({exc})") from None
            test = regex.match
        elif any(c in term for c in "*?["):
            def test(name: str) -> bool:
                return fnmatch.fnmatchcase(name, term)
        else:
            return []
        names = [h for h in self.hosts if test(h)]
        for group, members in self.groups.items():
            if test(group):
                names += members
        return list(dict.fromkeys(names))

    def select(self, pattern: str) -> list[HostSpec]:
        """Hosts an Ansible pattern selects, in inventory order.

        `a:b` and `a,b` are a union, `a:&b` an intersection, `a:!b` and `!b` an
        exclusion (applied after the unions and intersections, as Ansible does).
        A term that names nothing is an error: with a fleet, a typo that
        silently selects fewer (or, after `!`, more) hosts is worse than stopping.
        """
        terms = [t.strip() for t in _split_pattern(pattern) if t.strip()]
        if not terms:
            raise ConfigError("--limit", "pattern", pattern, "give a host, group or 'all'")
        union: list[str] = []
        intersect: list[set[str]] = []
        exclude: set[str] = set()
        for term in terms:
            op, name = (term[0], term[1:]) if term[0] in "&!" else ("", term)
            matched = self._match(name)
            if not matched:
                raise ConfigError("--limit", "pattern", name,
                                  f"it matches no host or group; {self._names()}")
            if op == "&":
                intersect.append(set(matched))
            elif op == "!":
                exclude.update(matched)
            else:
                union += matched
        if not union and (intersect or exclude):
            union = list(self.hosts)  # `!b` alone means all but b, as in Ansible
        chosen = [h for h in dict.fromkeys(union)
                  if h not in exclude and all(h in s for s in intersect)]
        return [self.hosts[h] for h in self.hosts if h in chosen]

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
        user, at, rest = target.rpartition("@")
        address, port = _split_address(rest, target)
        values, sources = dict(self.base_vars), dict(self.base_sources)
        values["ansible_host"], sources["ansible_host"] = address, "--host"
        if at:
            values["ansible_user"], sources["ansible_user"] = user, "--host"
        if port is not None:
            values["ansible_port"], sources["ansible_port"] = port, "--host"
        return connection_spec(target, address, values, sources)


def _split_pattern(pattern: str) -> list[str]:
    """Ansible's split: commas, else colons (an IPv6 address stays one term)."""
    if "," in pattern:
        return pattern.split(",")
    try:
        ipaddress.IPv6Address(pattern.lstrip("!&"))
        return [pattern]
    except ValueError:
        return pattern.split(":")


def _split_address(text: str, target: str) -> tuple[str, int | None]:
    """`host`, `host:port`, `[v6]:port`, or a bare IPv6 address (more than one colon)."""
    if text.startswith("["):
        inside, close, after = text[1:].partition("]")
        if not close or (after and not after.startswith(":")):
            raise ConfigError("--host", "host", target,
                              "write an IPv6 address with a port as [::1]:2222")
        return _check_address(inside, "--host", "host"), (
            parse_port(after[1:], "--host", "port") if after else None)
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return _check_address(host, "--host", "host"), parse_port(port, "--host", "port")
    return _check_address(text, "--host", "host"), None


def _expand_host_key(key: object, where: str) -> list[tuple[str, int | None]]:
    """Ansible's host keys: `gpu[01:04]` ranges (numeric or a-z, optional stride), `name:port`."""
    if isinstance(key, bool) or not isinstance(key, (str, int)):
        raise ConfigError(where, "hosts", key, "a host name must be text")
    text = str(key)
    port: int | None = None
    match = _NAME_PORT.match(text)
    if match and not _RANGE.match(text):
        text, port = match.group(1), parse_port(match.group(2), where, f"{text} (port)")
    match = _RANGE.match(text)
    if not match:
        return [(text, port)]
    head, start, end, stride, tail = match.groups()
    step = int(stride or 1)
    if start.isdigit() != end.isdigit() or step < 1:
        raise ConfigError(where, "hosts", key, "a host range is [01:10] or [a:f], optionally :step")
    if start.isdigit():
        width = len(start) if start.startswith("0") else 0
        items = [str(i).zfill(width) for i in range(int(start), int(end) + 1, step)]
    else:
        letters = string.ascii_lowercase
        items = list(letters[letters.index(start):letters.index(end) + 1:step])
    if not items:
        raise ConfigError(where, "hosts", key, "the range's start is after its end")
    return [(f"{head}{item}{tail}", port) for item in items]


class _Builder:
    """Walks the YAML tree once, collecting groups, their parents, hosts and vars with lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)
        self.group_vars: dict[str, dict] = {"all": {}}
        self.group_sources: dict[str, dict] = {"all": {}}
        self.parents: dict[str, set[str]] = {"all": set()}
        self.members: dict[str, list[str]] = {"all": []}  # direct hosts
        self.host_vars: dict[str, dict] = {}
        self.host_sources: dict[str, dict] = {}
        self.host_ports: dict[str, int] = {}

    def _mapping(self, value: object, parent: object, key: str, path: str) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            fix = {"hosts": "write hosts as a mapping of names, e.g. `hosts:` then "
                            "`  gpu1:` on its own line (a trailing ':' each, not '- gpu1')",
                   "children": "write children as a mapping of group names "
                               "(`children:` then `  a100:`)",
                   }.get(key, "write it as a mapping of `name: value` lines")
            raise ConfigError(_at(self.where, parent, key), path, value, fix)
        for name in value:
            if not isinstance(name, str):
                raise ConfigError(_at(self.where, value, name), f"{path}.{name}", name,
                                  "names here must be text; quote it")
        return value

    def _vars(self, data: dict, key: str, path: str, into: dict, sources: dict) -> None:
        values = self._mapping(data.get(key), data, key, path)
        for name, value in values.items():
            if not _VAR_NAME.match(name):
                raise ConfigError(_at(self.where, values, name), f"{path}.{name}", value,
                                  "a variable name is letters, digits and '_', "
                                  "not starting with a digit")
            into[name] = value
            sources[name] = _at(self.where, values, name)

    def group(self, name: str, data: object, parent: str | None, path: str,
              container: object, stack: tuple[str, ...]) -> None:
        if name in stack:
            raise ConfigError(_at(self.where, container, name), path, name,
                              f"groups nest in a loop ({' -> '.join((*stack, name))}); "
                              "remove one of the children entries")
        body = self._mapping(data, container, name, path)
        for key in body:
            if key not in GROUP_KEYS:
                raise ConfigError(_at(self.where, body, key), f"{path}.{key}", key,
                                  "a group holds only `hosts`, `children` and `vars` "
                                  f"(is {key!r} a host? put it under `hosts:`; "
                                  "a variable? under `vars:`)")
        self.group_vars.setdefault(name, {})
        self.group_sources.setdefault(name, {})
        self.parents.setdefault(name, set())
        self.members.setdefault(name, [])
        if parent is not None:
            self.parents[name].add(parent)
        self._vars(body, "vars", f"{path}.vars", self.group_vars[name], self.group_sources[name])
        hosts = self._mapping(body.get("hosts"), body, "hosts", f"{path}.hosts")
        for key in hosts:
            where = _at(self.where, hosts, key)
            for host, port in _expand_host_key(key, where):
                self.host_vars.setdefault(host, {})
                self.host_sources.setdefault(host, {})
                if port is not None:
                    self.host_ports[host] = port
                if host not in self.members[name]:
                    self.members[name].append(host)
                self._vars(hosts, key, f"{path}.hosts.{key}",
                           self.host_vars[host], self.host_sources[host])
        children = self._mapping(body.get("children"), body, "children", f"{path}.children")
        for child, child_data in children.items():
            self.group(child, child_data, name, f"{path}.children.{child}", children,
                       (*stack, name))


def _depths(parents: dict[str, set[str]]) -> dict[str, int]:
    """Ansible's group depth: the longest path from `all` (parents sort before children)."""
    depth: dict[str, int] = {}

    def walk(group: str) -> int:
        if group not in depth:
            depth[group] = 0 if group == "all" else 1 + max(
                (walk(p) for p in parents[group] or {"all"}), default=0)
        return depth[group]

    for group in parents:
        walk(group)
    return depth


def _var_files(base: Path, name: str) -> list[Path]:
    """`group_vars/NAME[.yml|.yaml|.json]` or every file under `group_vars/NAME/`, sorted."""
    files = []
    for suffix in VAR_FILE_SUFFIXES:
        path = base / f"{name}{suffix}"
        if path.is_file():
            files.append(path)
        elif suffix == "" and path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file()
                            and p.suffix in VAR_FILE_SUFFIXES and not p.name.startswith("."))
    return files


def _load_var_files(base: Path, name: str, into: dict, sources: dict) -> None:
    for path in _var_files(base, name):
        data = _read_yaml_file(path)
        if data is None:
            continue
        if not isinstance(data, dict):
            raise ConfigError(str(path), "(file)", type(data).__name__,
                              "a vars file is a mapping of `name: value` lines")
        for key, value in data.items():
            if not isinstance(key, str) or not _VAR_NAME.match(key):
                raise ConfigError(_at(str(path), data, key), str(key), value,
                                  "a variable name is letters, digits and '_'")
            into[key] = value
            sources[key] = _at(str(path), data, key)


def _resolve_local_paths(values: dict, base: Path) -> None:
    for name in LOCAL_PATH_VARS:
        value = values.get(name)
        if isinstance(value, str) and value and not value.startswith(("/", "~")):
            values[name] = str(base / value)


def load_inventory(path: Path | str | None) -> Inventory:
    """Read an inventory (None: an empty one, for `--host` alone); every error names file:line."""
    if path is None:
        return Inventory(groups={"all": [], "ungrouped": []})
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), "-i", str(path),
                          "the inventory file does not exist; check the path "
                          "(or leave -i out and give --host user@address)")
    data = _read_yaml_file(path)
    builder = _Builder(path)
    if data is not None:
        if not isinstance(data, dict):
            raise ConfigError(_at(str(path), data), "(top)", type(data).__name__,
                              "an inventory is a mapping of groups, starting with `all:`")
        for name, body in data.items():
            if not isinstance(name, str):
                raise ConfigError(_at(str(path), data, name), str(name), name,
                                  "a group name must be text")
            builder.group(name, body, None if name == "all" else "all", name, data, ())
    parents = builder.parents
    depth = _depths(parents)
    order = sorted(parents, key=lambda g: (depth[g], g))
    host_groups: dict[str, set[str]] = {h: {"all"} for h in builder.host_vars}

    def ancestors(group: str) -> set[str]:
        found = {group}
        for parent in parents[group]:
            found |= ancestors(parent)
        return found

    for group, members in builder.members.items():
        for host in members:
            host_groups[host] |= ancestors(group)
    base = path.parent
    file_vars: dict[str, dict] = {}
    file_sources: dict[str, dict] = {}
    for group in order:
        file_vars[group], file_sources[group] = {}, {}
        _load_var_files(base / "group_vars", group, file_vars[group], file_sources[group])
    hosts: dict[str, HostSpec] = {}
    for host in builder.host_vars:
        mine = [g for g in order if g in host_groups[host]]
        values: dict = {}
        sources: dict = {}
        for group in mine:
            values.update(builder.group_vars[group])
            sources.update(builder.group_sources[group])
        for group in mine:
            values.update(file_vars[group])
            sources.update(file_sources[group])
        if host in builder.host_ports:
            values["ansible_port"] = builder.host_ports[host]
            sources["ansible_port"] = f"{path} (hosts key {host}:{builder.host_ports[host]})"
        values.update(builder.host_vars[host])
        sources.update(builder.host_sources[host])
        _load_var_files(base / "host_vars", host, values, sources)
        _resolve_local_paths(values, base)
        hosts[host] = connection_spec(host, host, values, sources,
                                      tuple(g for g in mine if g != "all"))
    groups = {g: [h for h in hosts if g in host_groups[h]] for g in order}
    groups["ungrouped"] = [h for h in hosts if host_groups[h] == {"all"}]
    base_vars = {**builder.group_vars["all"], **file_vars["all"]}
    base_sources = {**builder.group_sources["all"], **file_sources["all"]}
    _resolve_local_paths(base_vars, base)
    return Inventory(path, hosts, groups, base_vars, base_sources)


# --------------------------------------------------------------------------- -e extra vars


class ExtraVars(dict):
    """`-e` variables; `.sources` says which -e argument (or file:line) gave each."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: dict[str, str] = {}


def _extra_mapping(data: object, where: str, arg: str, out: ExtraVars) -> None:
    if not isinstance(data, dict):
        raise ConfigError(where, "-e", arg,
                          "give KEY=VALUE pairs, @file.yml, or a YAML/JSON mapping "
                          "such as '{\"api_port\": 9000}'")
    for key, value in data.items():
        if not isinstance(key, str) or not _VAR_NAME.match(key):
            raise ConfigError(_at(where, data, key), "-e", key,
                              "a variable name is letters, digits and '_'")
        out[key] = value
        out.sources[key] = _at(where, data, key) if where != "-e" else "-e"


def parse_extra_vars(values: list[str] | tuple[str, ...]) -> ExtraVars:
    """Every `-e` in order, later ones winning, as Ansible's --extra-vars.

    `@file.yml` reads a YAML/JSON file; text starting with `{` is a YAML/JSON
    mapping (values keep their types); anything else is shell-like
    `KEY=VALUE` pairs, several per `-e`, whose values are always strings
    (settings_for converts "9000" for int variables).
    """
    out = ExtraVars()
    for arg in values:
        text = arg.strip()
        if text.startswith("@"):
            path = Path(text[1:]).expanduser()
            if not path.is_file():
                raise ConfigError("-e", "-e", arg, f"the file {str(path)!r} does not exist")
            data = _read_yaml_file(path)
            _extra_mapping({} if data is None else data, str(path), arg, out)
        elif text.startswith("{"):
            _extra_mapping(load_yaml(text, "-e"), "-e", arg, out)
        else:
            try:
                words = shlex.split(text)
            except ValueError as exc:
                raise ConfigError("-e", "-e", arg, f"unbalanced quotes ({exc})") from None
            pairs = {}
            for word in words:
                key, eq, value = word.partition("=")
                if not eq or not _VAR_NAME.match(key):
                    raise ConfigError("-e", "-e", word,
                                      "give KEY=VALUE (e.g. -e api_port=9000), @file.yml, "
                                      "or a JSON mapping")
                pairs[key] = value
            _extra_mapping(pairs, "-e", arg, out)
    return out


def apply_extra_vars(spec: HostSpec, extra: dict) -> HostSpec:
    """The spec with `-e` over every other source; connection fields recomputed from them."""
    if not extra:
        return spec
    sources = getattr(extra, "sources", {})
    values = {**spec.vars, **extra}
    where = {**spec.sources, **{k: sources.get(k, "-e") for k in extra}}
    return connection_spec(spec.name, spec.address, values, where, spec.groups)
