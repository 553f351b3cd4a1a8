"""The supported modules, by every name a playbook may use (Ansible's FQCNs included)."""

from __future__ import annotations

from provision.play.modules import (
    apt,
    assertion,
    blockinfile,
    command,
    copy,
    file,
    get_url,
    lineinfile,
    mount,
    pip,
    sysctl,
    systemd_service,
    template,
    unarchive,
    user,
)
from provision.play.modules.base import ModuleSpec

_SPECS = [apt.SPEC, assertion.SPEC, blockinfile.SPEC, command.COMMAND, command.SHELL, copy.SPEC,
          file.SPEC, get_url.SPEC, lineinfile.SPEC, mount.SPEC, pip.SPEC, sysctl.SPEC,
          systemd_service.SPEC, template.SPEC, unarchive.SPEC, user.SPEC]
_COLLECTION = {"mount": "ansible.posix", "sysctl": "ansible.posix"}


def _names() -> dict[str, ModuleSpec]:
    names: dict[str, ModuleSpec] = {}
    for spec in _SPECS:
        for short in (spec.name, "systemd") if spec.name == "systemd_service" else (spec.name,):
            names[short] = spec
            names[f"{_COLLECTION.get(spec.name, 'ansible.builtin')}.{short}"] = spec
    return names


MODULES = _names()
SUPPORTED = sorted({spec.name for spec in _SPECS} | {"systemd"})
