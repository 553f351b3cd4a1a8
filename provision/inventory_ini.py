"""INI inventories, read line by line as Ansible's `ini` inventory plugin reads them.

    gpu01 ansible_host=10.0.0.11          # before any section: group `ungrouped`
    [gpu]
    gpu[02:04] ansible_user=ubuntu        # ranges, inline key=value
    [gpu:vars]
    max_num_seqs=8
    [cluster:children]
    gpu

Types follow Ansible's INI rules, which differ between the two places a value
can be: on a host line the line is split like a shell (quotes removed) and
each value then read as a Python literal (`a=1` and `a="1"` are both the int 1,
`a=[1,2]` a list, `a=yes` the text "yes"); in a `[group:vars]` section the text
after the first `=` is read as a Python literal with its quotes (`a="1"` is the
text "1"). A group named in `[x:children]` or `[x:vars]` before it is defined
is accepted if it is defined later in the file, and an error otherwise.
"""

from __future__ import annotations

import ast
import re
import shlex
import warnings
from pathlib import Path

from provision.inventory_graph import Graph
from provision.inventory_names import expand_host_key
from provision.inventory_yaml import check_var_name
from provision.model import ConfigError

_SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$")
_GROUP_NAME = re.compile(r"^([^:\]\s]+)\s*(?:#.*)?$")
_COMMENT = (";", "#")


def ini_value(text: str) -> object:
    """A value as Ansible's INI plugin types it: a Python literal if it is one, else the text."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    return _plain(value)


def _plain(value: object) -> object:
    """literal_eval's types reduced to what a YAML inventory could hold, as Ansible does."""
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if value is ...:
        return "..."
    if isinstance(value, complex):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="surrogateescape")
    return value


class _IniReader:
    """One pass over the lines, with the pending group declarations Ansible keeps."""

    def __init__(self, graph: Graph, path: Path) -> None:
        self.graph, self.path = graph, path
        self.pending: dict[str, dict] = {}
        self.group, self.state, self.line = "ungrouped", "hosts", 0

    def at(self, line: int | None = None) -> str:
        return f"{self.path}:{line or self.line}"

    def error(self, key: str, value: object, fix: str) -> ConfigError:
        return ConfigError(self.at(), key, value, fix)

    def read(self, lines: list[str]) -> None:
        for number, raw in enumerate(lines, 1):
            self.line = number
            line = raw.strip()
            if not line or line[0] in _COMMENT:
                continue
            section = _SECTION.match(line)
            if section:
                self.section(*section.groups())
            elif line.startswith("[") and line.endswith("]"):
                raise self.error("(section)", line, "a section is [group], [group:vars] or "
                                 "[group:children], with no spaces inside the brackets")
            elif self.state == "hosts":
                self.host_line(line)
            elif self.state == "vars":
                self.vars_line(line)
            else:
                self.child_line(line)
        for name, decl in self.pending.items():
            if decl["state"] == "vars":
                raise ConfigError(self.at(decl["line"]), f"[{name}:vars]", name,
                                  f"group {name!r} is never defined; add a [{name}] section "
                                  "or fix the name")
            parent = decl["parents"][-1]
            raise ConfigError(self.at(decl["line"]), f"[{parent}:children]", name,
                              f"group {name!r} is never defined; add a [{name}] section "
                              "or fix the name")

    def section(self, name: str, kind: str | None) -> None:
        state = kind or "hosts"
        if state not in ("hosts", "children", "vars"):
            raise self.error("(section)", f"[{name}:{kind}]",
                             "a section's type is :vars or :children (or none, for hosts)")
        self.group, self.state = name, state
        if name not in self.graph.groups:
            if state == "vars" and name not in self.pending:
                self.pending[name] = {"line": self.line, "state": state}
            self.graph.add_group(name)
        if name in self.pending and state != "vars":
            if self.pending[name]["state"] == "children":
                self.link_pending(name)
            else:
                del self.pending[name]

    def link_pending(self, name: str) -> None:
        for parent in self.pending[name]["parents"]:
            self.graph.add_child(parent, name, self.at())
            if self.pending.get(parent, {}).get("state") == "children":
                self.link_pending(parent)
        del self.pending[name]

    def host_line(self, line: str) -> None:
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError as exc:
            raise self.error("(host line)", line, f"unbalanced quotes ({exc})") from None
        if not tokens:
            return
        key = tokens[0]
        if key.endswith(":") or key == "---":
            fix = ("this looks like YAML; name the file .yml" if key in ("---", "all:")
                   else "a trailing ':' is reserved for a port (name:2222)")
            raise self.error("(host)", key, fix)
        names, port = expand_host_key(key, self.at())
        values = {}
        for token in tokens[1:]:
            var, eq, text = token.partition("=")
            if not eq:
                raise self.error(key, token, "host variables are key=value, after the host name")
            values[check_var_name(var, self.at(), text)] = ini_value(text)
        for name in names:
            self.graph.add_host(name, self.group, port, self.at())
            for var, value in values.items():
                self.graph.set_host_var(name, var, value, self.at())

    def vars_line(self, line: str) -> None:
        var, eq, text = line.partition("=")
        if not eq:
            raise self.error(f"[{self.group}:vars]", line, "a vars line is key=value")
        name = check_var_name(var.strip(), self.at(), text.strip())
        self.graph.set_group_var(self.group, name, ini_value(text.strip()), self.at())

    def child_line(self, line: str) -> None:
        match = _GROUP_NAME.match(line)
        if not match:
            raise self.error(f"[{self.group}:children]", line,
                             "a children line is one group name")
        child = match.group(1)
        if child in self.graph.groups:
            self.graph.add_child(self.group, child, self.at())
        elif child in self.pending:
            self.pending[child].setdefault("parents", []).append(self.group)
        else:
            self.pending[child] = {"line": self.line, "state": "children", "parents": [self.group]}


def read_ini(graph: Graph, path: Path, text: str) -> None:
    """Add an INI inventory's groups, hosts and variables to the graph."""
    _IniReader(graph, path).read(text.splitlines())
