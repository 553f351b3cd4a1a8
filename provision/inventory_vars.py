"""`group_vars/` and `host_vars/` beside each inventory source, chosen as Ansible chooses them.

For a group or host NAME, Ansible's `host_group_vars` plugin takes the FIRST of
`NAME`, `NAME.yml`, `NAME.yaml`, `NAME.json` that exists; if that is a
directory, every file in it (recursively, sorted by name, skipping hidden
files, `~` backups and files whose extension is not one of those) is read in
order, later files winning. Only one of `NAME/` and `NAME.yml` is ever read.
The directory is the source's own directory (for a directory source, the
directory itself).
"""

from __future__ import annotations

from pathlib import Path

from provision.inventory_yaml import at, check_var_name, read_yaml_file
from provision.model import ConfigError

EXTENSIONS = (".yml", ".yaml", ".json")


def _dir_files(path: Path) -> list[Path]:
    found: list[Path] = []
    for entry in sorted(path.iterdir(), key=lambda p: p.name):
        if entry.name.startswith(".") or entry.name.endswith("~"):
            continue
        if entry.is_dir() and not entry.suffix:
            found += _dir_files(entry)
        elif entry.is_file() and (not entry.suffix or entry.suffix in EXTENSIONS):
            found.append(entry)
    return found


def var_files(base: Path, name: str) -> list[Path]:
    """The files Ansible reads for NAME under `base` (group_vars/ or host_vars/), in order."""
    if name.startswith("/") or not base.is_dir():
        return []
    for suffix in ("", *EXTENSIONS):
        path = base / f"{name}{suffix}"
        if path.is_dir():
            return _dir_files(path)
        if path.exists():
            return [path]
    return []


def load_var_files(base: Path, name: str, vault=None) -> tuple[dict, dict]:
    """(values, sources) from NAME's files under `base`; later files win, key by key."""
    values: dict = {}
    sources: dict = {}
    for path in var_files(base, name):
        data = read_yaml_file(path, vault)
        if data is None:
            continue
        if not isinstance(data, dict):
            raise ConfigError(str(path), "(file)", type(data).__name__,
                              "a vars file is a mapping of `name: value` lines")
        for key, value in data.items():
            where = at(str(path), data, key)
            values[check_var_name(key, where, value)] = value
            sources[key] = where
    return values, sources


def source_dir(source: Path) -> Path:
    """Where a source's group_vars/ and host_vars/ live: its directory, or itself if one."""
    return source if source.is_dir() else source.parent
