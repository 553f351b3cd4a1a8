"""YAML that remembers where each mapping started, so errors can say file:line.

A mapping is loaded as a `Located` dict (a plain dict plus `.line`); everything else
is what yaml.safe_load gives. Only safe types: a playbook cannot construct objects.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from provision.play.model import PlaybookError, Where


class Located(dict):
    """A mapping with the 1-based line it starts on."""

    line: int = 0


class _Loader(yaml.SafeLoader):
    pass


def _mapping(loader: _Loader, node: yaml.MappingNode) -> Located:
    out = Located(loader.construct_mapping(node, deep=True))
    out.line = node.start_mark.line + 1
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load(path: Path) -> object:
    """The file's YAML; a syntax error names the file and line."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise PlaybookError(str(path), f"cannot read: {exc.strerror}") from None
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark else 0
        raise PlaybookError(f"{path}:{line}", f"invalid YAML: {exc.problem}") from None


def where(path: Path, value: object, fallback: int = 0) -> Where:
    return Where(path, getattr(value, "line", 0) or fallback)
