"""Ansible host patterns as `--limit` reads them, over an inventory's groups and hosts.

`a:b` / `a,b` union, `&b` intersection, `!b` exclusion (applied after the
unions, then intersections, as Ansible orders them; a pattern of only `&`/`!`
terms starts from `all`), globs (`gpu*`, `gpu?`, `gpu[12]` when `gpu` is no
group) and `~regex` over group and host names, subscripts on what a term
matches (`gpu[0]`, `gpu[-1]`, `gpu[0:1]` inclusive, `gpu[2:]`), and `@file`
(one pattern per line, e.g. an Ansible `.retry` file). `--limit` keeps the
hosts in the order of `all`, which is the order a run (and `--serial`) uses.

One deliberate difference: a term that names no host and no group is an
error listing what exists (Ansible warns and ignores it), because a typo that
silently selects fewer hosts, or after `!` more, is worse than stopping. A
group that exists but is empty selects nothing, without error.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from pathlib import Path

from provision.inventory_names import parse_address
from provision.model import ConfigError

_SUBSCRIPT = re.compile(r"^(.+)\[(?:(-?[0-9]+)|([0-9]+)([:-])([0-9]*))\]$")
_TERM = re.compile(r"(?:[^\s:\[\]]|\[[^\]]*\])+")


def split_pattern(pattern: str) -> list[str]:
    """Ansible's split: on commas if any, else on colons outside brackets (IPv6 kept whole)."""
    if "," in pattern:
        parts = pattern.split(",")
    elif _single_address(pattern):
        parts = [pattern]
    else:
        parts = _TERM.findall(pattern)
    return [p.strip() for p in parts if p.strip()]


def _single_address(pattern: str) -> bool:
    """An IPv6 address, `name:port` or `name[1:3]` is one term, though it has colons."""
    return parse_address(pattern) is not None


def expand_files(terms: list[str]) -> list[str]:
    """`@file` terms replaced by the file's lines (blank lines dropped), as Ansible's subset."""
    out: list[str] = []
    for term in terms:
        if not term.startswith("@"):
            out.append(term)
            continue
        path = Path(term[1:]).expanduser()
        if not path.is_file():
            raise ConfigError("--limit", "@file", term[1:],
                              "the limit file does not exist or is not a file")
        out += [line.strip() for line in path.read_text().split("\n") if line.strip()]
    return out


def _subscript(term: str) -> tuple[str, tuple[int, int | None] | None]:
    if term.startswith("~"):
        return term, None
    match = _SUBSCRIPT.match(term)
    if not match:
        return term, None
    expr, index, start, _, end = match.groups()
    if index is not None:
        return expr, (int(index), None)
    return expr, (int(start), int(end) if end else -1)


class Matcher:
    """Evaluates pattern terms over groups (name -> ordered hosts) and hosts (in order)."""

    def __init__(self, groups: dict[str, list[str]], hosts: list[str], describe: str) -> None:
        self.groups, self.hosts, self.describe = groups, hosts, describe

    def _compile(self, expr: str) -> Callable[[str], object]:
        try:
            return re.compile(expr[1:] if expr.startswith("~") else fnmatch.translate(expr)).match
        except re.error as exc:
            raise ConfigError("--limit", "pattern", expr,
                              f"the regular expression is invalid ({exc})") from None

    def one(self, term: str) -> list[str]:
        """Hosts one term (without its &/! prefix) matches, in Ansible's order."""
        expr, sub = _subscript(term)
        test = self._compile(expr)
        groups = [g for g in self.groups if test(g)]
        found = [h for g in groups for h in self.groups[g]]
        if not groups or expr.startswith("~") or any(c in expr for c in ".?*["):
            found += [h for h in self.hosts if test(h)]
        if not found and not groups:
            raise ConfigError("--limit", "pattern", term,
                              f"it matches no host or group; {self.describe}")
        found = list(dict.fromkeys(found))
        if sub is None or not found:
            return found
        start, end = sub
        try:
            if end is None:
                return [found[start]]
            return found[start:(len(found) - 1 if end == -1 else end) + 1]
        except IndexError:
            raise ConfigError("--limit", "pattern", term,
                              f"the subscript is past the {len(found)} host(s) matched") from None

    def evaluate(self, terms: list[str]) -> list[str]:
        """Ansible's _evaluate_patterns: unions, then intersections, then exclusions."""
        plain = [t for t in terms if t[0] not in "&!"] or ["all"]
        ordered = plain + [t for t in terms if t[0] == "&"] + [t for t in terms if t[0] == "!"]
        hosts: list[str] = []
        for term in ordered:
            if term in self.hosts:
                hosts.append(term)
                continue
            matched = self.one(term[1:] if term[0] in "&!" else term)
            if term[0] == "!":
                hosts = [h for h in hosts if h not in set(matched)]
            elif term[0] == "&":
                hosts = [h for h in hosts if h in set(matched)]
            else:
                hosts += [h for h in matched if h not in hosts]
        return list(dict.fromkeys(hosts))

    def limit(self, pattern: str) -> list[str]:
        """`--limit PATTERN`: the hosts of `all`, in their order, that the pattern selects."""
        terms = expand_files(split_pattern(pattern))
        if not terms:
            raise ConfigError("--limit", "pattern", pattern, "give a host, group or 'all'")
        chosen = set(self.evaluate(terms))
        return [h for h in self.groups["all"] if h in chosen]
