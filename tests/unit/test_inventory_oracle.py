"""Ansible is the oracle: every corpus inventory read by ansible-core and by provision must agree.

For each inventory under tests/fixtures/inventories/corpus/ (shaped like the
GPU-cluster inventories people publish: DeepOps, Kubespray, OCI HPC, bastions,
vault, Jinja, old spellings, odd patterns), and for a list of patterns (every
group, its subscripts, exclusions, intersections, plus the case's own), the
hosts `ansible all --limit P --list-hosts` selects, in order, must be the
hosts provision selects; and for every host, every connection value
(address, port, user, key, password, ssh arguments, connection type, become)
and every variable provision uses, templated and decrypted as Ansible would,
must be what `provision inventory --list` shows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from provision.cli import main
from provision.commands.targets import InventoryArgs, load_selected
from provision.inventory import load_inventory, tool_variable_names
from provision.model import ConfigError
from provision.templating import VaultKeys
from tests.unit.ansible_oracle import Oracle

CORPUS = Path(__file__).resolve().parent.parent / "fixtures" / "inventories" / "corpus"
CASES = sorted(p for p in CORPUS.iterdir() if (p / "case.yml").is_file())


@dataclass
class Case:
    """One corpus inventory: its sources and what else the case file asks for."""

    root: Path
    sources: list[Path]
    patterns: list[str] = field(default_factory=list)
    vault_file: Path | None = None
    env: dict = field(default_factory=dict)
    jump: dict = field(default_factory=dict)

    @classmethod
    def read(cls, root: Path) -> Case:
        data = yaml.safe_load((root / "case.yml").read_text())
        vault = data.get("vault_password_file")
        return cls(root, [root / s for s in data["sources"]], list(data.get("patterns", [])),
                   root / vault if vault else None, dict(data.get("env", {})),
                   dict(data.get("jump", {})))

    def vault(self) -> VaultKeys | None:
        return VaultKeys((str(self.vault_file),)) if self.vault_file else None

    def oracle(self, basedir: Path) -> Oracle:
        password = self.vault_file.read_bytes().strip() if self.vault_file else None
        return Oracle(self.sources, basedir, password)

    def absolute(self, pattern: str) -> str:
        """`@file` relative to the case (both tools read it relative to the cwd)."""
        return ":".join(f"@{self.root / p[1:]}" if p.startswith("@") else p
                        for p in pattern.split(":"))


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No ~/.ssh/config and no group_vars/ in the working directory, for both tools."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _patterns(case: Case, groups: list[str]) -> list[str]:
    found = ["all", "*", "ungrouped"]
    for group in groups:
        if group not in ("all", "ungrouped"):
            found += [group, f"{group}[0]", f"{group}[-1]", f"{group}[0:1]", f"!{group}",
                      f"all:&{group}", f"ungrouped:{group}"]
    return found + [case.absolute(p) for p in case.patterns]


def test_the_corpus_has_at_least_30_inventories() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("root", CASES, ids=[c.name for c in CASES])
def test_hosts_selected_by_every_pattern_match_ansible(root: Path, isolated: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    case = Case.read(root)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    oracle = case.oracle(isolated)
    ours = load_inventory(case.sources, case.vault())
    differences = {}
    for pattern in _patterns(case, oracle.groups()):
        expected = oracle.limit(pattern)
        try:
            got = [h.name for h in ours.select(pattern)]
        except ConfigError as exc:  # the documented refusal: a term that names nothing
            assert "matches no host or group" in str(exc), exc
            assert oracle.limit(str(exc.value)) == [], f"{pattern}: refused, Ansible selects"
            continue
        if got != expected:
            differences[pattern] = {"ansible": expected, "provision": got}
    assert differences == {}
    assert list(ours.hosts) == oracle.limit("all")


@pytest.mark.parametrize("root", CASES, ids=[c.name for c in CASES])
def test_connection_and_tool_variables_match_ansible(root: Path, isolated: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    case = Case.read(root)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    args = ["inventory", "--list"]
    for source in case.sources:
        args += ["-i", str(source)]
    if case.vault_file:
        args += ["--vault-password-file", str(case.vault_file)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    listed = {h["name"]: h for h in json.loads(result.stdout)["hosts"]}
    specs = {s.name: s for s in load_selected(InventoryArgs(
        tuple(map(str, case.sources)), case.vault()), None, None, ())}
    oracle = case.oracle(isolated)
    names = tool_variable_names()
    differences = {}
    for name in oracle.limit("all"):
        want = oracle.host(name, names)
        entry, spec = listed[name], specs[name]
        conn = entry["connection"]
        pairs = {
            "type": ("local" if want.connection in ("local", "ansible.builtin.local")
                     else "ssh", conn["type"]),
            "address": (want.ssh["address"], conn["address"]),
            "port": (want.ssh["port"] or 22, conn["port"]),
            "user": (want.ssh["user"] or "root", conn["user"]),
            "key_file": (want.ssh["key_file"], conn["key_file"]),
            "password": (want.ssh["password"], spec.password),
            "become": (want.become, conn["become"]["enabled"]),
            "become_user": (want.become_user, conn["become"]["user"]),
            "become_password": (want.become_pass, spec.become_password),
        }
        for key in sorted(set(want.variables) | {k for k in spec.vars if k in names}):
            pairs[f"vars.{key}"] = (want.variables.get(key), spec.vars.get(key))
        for key, (expected, got) in pairs.items():
            if expected != got:
                differences[f"{name}: {key}"] = {"ansible": expected, "provision": got}
        if name in case.jump:
            if conn["jump"] != case.jump[name]:
                differences[f"{name}: jump"] = {"case": case.jump[name], "provision": conn["jump"]}
    assert differences == {}
