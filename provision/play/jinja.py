"""Templating and `when:` for playbooks: sandboxed Jinja2 with Ansible's common filters.

The sandbox means a playbook expression can read variables but never call into
Python objects or touch files; host facts are data (strings, numbers, lists) that
expressions compare, never code. Undefined variables are errors, as in Ansible.
A value that is exactly one `{{ expr }}` keeps its type (a list stays a list).
"""

from __future__ import annotations

import json
import re
import shlex

from jinja2 import StrictUndefined, TemplateError, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from provision.play.modules.base import ArgError, to_bool

_ONLY = re.compile(r"^\s*{{(.*)}}\s*$", re.S)


def _version(value: object, other: object, op: str = "eq") -> bool:
    """Ansible's `version` test for dotted numbers: '535.104' is version('535', '>=')."""
    def key(text: object) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", str(text)))
    a, b = key(value), key(other)
    ops = {"eq": a == b, "==": a == b, "ne": a != b, "!=": a != b, "lt": a < b, "<": a < b,
           "le": a <= b, "<=": a <= b, "gt": a > b, ">": a > b, "ge": a >= b, ">=": a >= b}
    if op not in ops:
        raise ArgError(f"version test: unknown operator {op!r}")
    return ops[op]


def _env(**options: object) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, **options)
    env.filters.update({"bool": to_bool, "quote": lambda v: shlex.quote(str(v)),
                        "to_json": json.dumps, "regex_replace": lambda v, p, r="": re.sub(
                            p, r, str(v))})
    env.tests.update({"version": _version, "version_compare": _version})
    return env


_VALUES = _env(keep_trailing_newline=True)  # Ansible keeps "x\n" as written
_FILES = _env(trim_blocks=True, keep_trailing_newline=True)  # as Ansible's template module


def _defined(value: object) -> object:
    if isinstance(value, Undefined):
        raise TemplateError(value._undefined_message)
    return value


def render(value: object, variables: dict) -> object:
    """A task argument with its `{{ }}` filled in; lists and dicts recursively."""
    if isinstance(value, list):
        return [render(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: render(v, variables) for k, v in value.items()}
    if not isinstance(value, str) or ("{{" not in value and "{%" not in value):
        return value
    try:
        only = _ONLY.match(value)
        if only and "{{" not in only.group(1):
            expression = _VALUES.compile_expression(only.group(1), undefined_to_none=False)
            return _defined(expression(**variables))
        return _VALUES.from_string(value).render(**variables)
    except TemplateError as exc:
        raise ArgError(f"cannot template {value!r}: {exc}") from None


def render_file(text: str, variables: dict) -> str:
    try:
        return _FILES.from_string(text).render(**variables)
    except TemplateError as exc:
        raise ArgError(f"template: {exc}") from None


def holds(condition: str, variables: dict) -> bool:
    """One `when:` condition, a bare Jinja expression as in Ansible."""
    text = condition.strip()
    if text.startswith("{{") and text.endswith("}}"):
        text = text[2:-2]
    try:
        value = _defined(_VALUES.compile_expression(text, undefined_to_none=False)(**variables))
    except TemplateError as exc:
        raise ArgError(f"when: {condition!r}: {exc}") from None
    if isinstance(value, str):
        return to_bool(value) if value.strip().lower() in ("yes", "no", "true", "false") \
            else bool(value)
    return bool(value)
