"""`-e` / `--extra-vars`, read as Ansible reads them, and applied over every other source."""

from __future__ import annotations

import shlex
from pathlib import Path

from provision.connection_vars import connection_spec
from provision.inventory_yaml import VAR_NAME as _VAR_NAME
from provision.inventory_yaml import at as _at
from provision.inventory_yaml import load_yaml
from provision.inventory_yaml import read_yaml_file as _read_yaml_file
from provision.model import ConfigError, HostSpec


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
