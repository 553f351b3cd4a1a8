"""The inventory as Ansible holds it in memory: groups, hosts, their links, in Ansible's order.

Both file formats (YAML, INI) fill one `Graph` through the same few calls
(`add_group`, `add_host`, `add_child`, `set_group_var`, `set_host_var`), the
way Ansible's inventory plugins fill its `InventoryData`; `reconcile` then puts
parentless groups under `all` and groupless hosts in `ungrouped`. What this
keeps exactly as Ansible does, because users see it:

- group depth (the longest path from `all`) and `ansible_group_priority`
  (an inventory variable that sets the priority and is not itself a variable),
  which order the group layers of a host's variables;
- the order of a group's hosts: its own hosts, then its children's, level by
  level (this is what `--serial` batches follow);
- a group that would become its own ancestor is refused at once, naming the
  file, line and both groups (Ansible: "recursive dependency loop").

Nothing here reads files; see inventory_yaml.py and inventory_ini.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from provision.model import ConfigError


@dataclass
class Group:
    """One group: its own hosts and variables, and its place among the groups."""

    name: str
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    vars: dict = field(default_factory=dict)
    sources: dict = field(default_factory=dict)
    depth: int = 0
    priority: int = 1


@dataclass
class Host:
    """One host: the variables set on it in the inventory itself (not from host_vars/)."""

    name: str
    vars: dict = field(default_factory=dict)
    sources: dict = field(default_factory=dict)


class Graph:
    """Groups and hosts in the order they were first seen, as Ansible's InventoryData."""

    def __init__(self) -> None:
        self.groups: dict[str, Group] = {"all": Group("all"), "ungrouped": Group("ungrouped")}
        self.hosts: dict[str, Host] = {}
        self.add_child("all", "ungrouped", "(built in)")

    def add_group(self, name: str) -> Group:
        """The group called `name`, created empty the first time."""
        if name not in self.groups:
            self.groups[name] = Group(name)
        return self.groups[name]

    def add_host(self, name: str, group: str | None, port: int | None, where: str) -> Host:
        """The host called `name`, created the first time; a port is set only then (Ansible)."""
        if name not in self.hosts:
            self.hosts[name] = Host(name)
            if port is not None:
                self.set_host_var(name, "ansible_port", port, where)
        if group is not None:
            members = self.add_group(group).hosts
            if name not in members:
                members.append(name)
        return self.hosts[name]

    def ancestors(self, name: str) -> set[str]:
        """Every group above `name`, however far."""
        found: set[str] = set()
        todo = list(self.groups[name].parents)
        while todo:
            group = todo.pop()
            if group not in found:
                found.add(group)
                todo += self.groups[group].parents
        return found

    def add_child(self, parent: str, child: str, where: str) -> None:
        """Make `child` a child group of `parent`; a loop is a configuration error."""
        up, down = self.add_group(parent), self.add_group(child)
        if child in up.children:
            return
        if child == parent or child in self.ancestors(parent):
            raise ConfigError(where, f"{parent}:children", child,
                              f"groups {parent!r} and {child!r} contain each other (a recursive "
                              "dependency loop); remove one of the two children entries")
        up.children.append(child)
        if parent not in down.parents:
            down.parents.append(parent)
        self._deepen(parent)

    def _deepen(self, name: str) -> None:
        group = self.groups[name]
        for child in group.children:
            if self.groups[child].depth < group.depth + 1:
                self.groups[child].depth = group.depth + 1
                self._deepen(child)

    def set_group_var(self, group: str, key: str, value: object, where: str) -> None:
        """A group variable; `ansible_group_priority` sets the priority instead, as Ansible."""
        target = self.add_group(group)
        if key == "ansible_group_priority":
            try:
                target.priority = int(value)
            except (TypeError, ValueError):
                raise ConfigError(where, key, value,
                                  "ansible_group_priority is a whole number") from None
            return
        target.vars[key] = value
        target.sources[key] = where

    def set_host_var(self, host: str, key: str, value: object, where: str) -> None:
        """A variable set on a host in the inventory file itself."""
        target = self.hosts[host]
        target.vars[key] = value
        target.sources[key] = where

    def reconcile(self) -> None:
        """Parentless groups go under `all`, groupless hosts into `ungrouped` (Ansible's rules)."""
        for name in list(self.groups):
            if name != "all" and not self.groups[name].parents:
                self.add_child("all", name, "(built in)")
        ungrouped = self.groups["ungrouped"]
        for host in self.hosts:
            mine = self.host_groups(host)
            if host in ungrouped.hosts:
                if mine - {"all", "ungrouped"}:
                    ungrouped.hosts.remove(host)
            elif mine <= {"all"}:
                ungrouped.hosts.append(host)

    def host_groups(self, host: str) -> set[str]:
        """Every group the host is in, directly or through a child group."""
        direct = {g for g, group in self.groups.items() if host in group.hosts}
        found = set(direct)
        for group in direct:
            found |= self.ancestors(group)
        return found

    def hosts_of(self, name: str) -> list[str]:
        """The group's hosts in Ansible's order: its own, then each level of descendants."""
        ordered = [name, *self.groups[name].children]
        seen = set(ordered)
        level = list(ordered)
        while level:
            below = []
            for group in level:
                for child in self.groups[group].children:
                    if child not in seen:
                        seen.add(child)
                        below.append(child)
            ordered += below
            level = below
        return list(dict.fromkeys(h for g in ordered for h in self.groups[g].hosts))

    def sorted_groups(self, names: set[str] | list[str]) -> list[str]:
        """Groups in variable-precedence order: depth, then priority, then name (lowest first)."""
        return sorted(names, key=lambda g: (self.groups[g].depth, self.groups[g].priority, g))
