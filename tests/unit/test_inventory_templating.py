"""Jinja, vault, dynamic inventories and connection settings: what is honoured, what is refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from provision.cli import main
from provision.inventory import load_inventory
from provision.model import ConfigError
from provision.templating import VaultKeys

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "inventories"
CORPUS = FIXTURES / "corpus"


def _yaml(tmp_path: Path, host_vars: dict, group_vars: dict | None = None) -> Path:
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump({"all": {"vars": group_vars or {},
                                            "hosts": {"gpu1": host_vars}}}))
    return path


def test_a_used_value_that_cannot_be_templated_names_file_key_and_expression(
        tmp_path: Path) -> None:
    path = _yaml(tmp_path, {"ansible_host": "10.0.0.1", "api_key": "{{ vault_fd_api_key }}"})
    with pytest.raises(ConfigError) as err:
        load_inventory(path)
    text = str(err.value)
    assert err.value.where.startswith(f"{path}:") and err.value.key == "api_key"
    assert "{{ vault_fd_api_key }}" in text and "vault_fd_api_key" in text.split(":", 3)[-1]


def test_an_unused_variable_is_not_templated(tmp_path: Path) -> None:
    path = _yaml(tmp_path, {"ansible_host": "10.0.0.1",
                            "node_ip": "{{ ansible_default_ipv4.address }}"})
    gpu1 = load_inventory(path).hosts["gpu1"]
    assert gpu1.vars["node_ip"] == "{{ ansible_default_ipv4.address }}"  # Ansible is lazy too


def test_env_lookup_default_and_filters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPU_HOST", "10.20.0.1")
    path = _yaml(tmp_path, {"ansible_host": "{{ lookup('env', 'GPU_HOST') }}",
                            "api_port": "{{ port | default(8000) | int + 180 }}"})
    gpu1 = load_inventory(path).hosts["gpu1"]
    assert (gpu1.address, gpu1.vars["api_port"]) == ("10.20.0.1", 8180)


def test_unsafe_values_are_never_templated(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yml"
    path.write_text("all:\n  hosts:\n    gpu1:\n      api_key: !unsafe '{{ literally }}'\n")
    assert load_inventory(path).hosts["gpu1"].vars["api_key"] == "{{ literally }}"


def test_vault_needs_a_password_and_opens_with_the_right_one() -> None:
    root = CORPUS / "14-vault"
    with pytest.raises(ConfigError, match="--vault-password-file FILE or --ask-vault-pass"):
        load_inventory(root / "inventory.yml")
    inv = load_inventory(root / "inventory.yml",
                         VaultKeys(password=(root / "vault-pass.txt").read_text().strip()))
    assert inv.hosts["gpu1"].vars["api_key"] == "sk-vaulted-0123456789"  # file + indirection
    assert inv.hosts["gpu2"].vars["api_key"] == "sk-inline-host2-key"  # inline !vault wins
    assert inv.hosts["gpu1"].become_password == "sudo-secret-1"


def test_a_wrong_vault_password_is_a_clear_error(tmp_path: Path) -> None:
    wrong = tmp_path / "pass"
    wrong.write_text("not the password\n")
    with pytest.raises(ConfigError, match="decrypt"):
        load_inventory(CORPUS / "14-vault" / "inventory.yml", VaultKeys((str(wrong),)))


@pytest.mark.parametrize("source", ["13-jinja-values/inventory.yml",
                                    "33-dynamic-script/inventory.py",
                                    "34-plugin-generator/inventory.config.yml"])
def test_without_ansible_core_the_error_says_how_to_get_it(
        source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ansible", None)  # `import ansible` now fails
    monkeypatch.setenv("PROVISION_TEST_GPU_HOST", "10.4.0.1")
    with pytest.raises(ConfigError, match=r"needs ansible-core: install ansible-core"):
        load_inventory(CORPUS / source)


def test_a_plain_inventory_never_imports_ansible() -> None:
    code = ("import sys; from provision.inventory import load_inventory; "
            f"inv = load_inventory({str(FIXTURES / 'lab' / 'inventory.yml')!r}); "
            "assert inv.hosts; print(any(m == 'ansible' or m.startswith('ansible.') "
            "for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "False"


def test_dynamic_inventories_come_through_ansible_core() -> None:
    script = load_inventory(CORPUS / "33-dynamic-script" / "inventory.py")
    assert list(script.hosts) == ["dyn-gpu1", "dyn-gpu2"]
    assert script.hosts["dyn-gpu1"].user == "ubuntu" and script.groups["fleet"] == [
        "dyn-gpu1", "dyn-gpu2"]
    plugin = load_inventory(CORPUS / "34-plugin-generator" / "inventory.config.yml")
    assert plugin.groups["h100"] == ["east-h100-node", "west-h100-node"]


# --------------------------------------------------------------------------- connection settings

REFUSED = [
    ({"ansible_ssh_common_args": "-o ProxyCommand='nc -X 5 -x proxy:1080 %h %p'"},
     "ProxyCommand would run an inventory string"),
    ({"ansible_ssh_common_args": "-o ProxyCommand='ssh -W %h:%p bastion; rm -rf ~'"},
     "ProxyCommand would run an inventory string"),
    ({"ansible_ssh_common_args": "-o StrictHostKeyChecking=no"}, "always verifies host keys"),
    ({"ansible_ssh_extra_args": "-o UserKnownHostsFile=/dev/null"}, "always verifies host keys"),
    ({"ansible_ssh_extra_args": "-L 8080:localhost:80"}, "not supported here"),
    ({"ansible_ssh_common_args": "-o SendEnv=LANG"}, "ssh option SendEnv is not supported"),
    ({"ansible_become_user": "postgres"}, "must become root"),
    ({"ansible_become_method": "su"}, "with sudo only"),
    ({"ansible_become": "maybe"}, "give true or false"),
    ({"ansible_connection": "community.docker.docker"}, "ssh or runs locally"),
    ({"ansible_ssh_common_args": "-o ProxyJump=-oBad"}, "host name or IP"),
]


@pytest.mark.parametrize(("host_vars", "fragment"), REFUSED, ids=[f for _, f in REFUSED])
def test_connection_settings_provision_cannot_honour_are_refused(
        tmp_path: Path, host_vars: dict, fragment: str) -> None:
    path = _yaml(tmp_path, {"ansible_host": "10.0.0.1", **host_vars})
    with pytest.raises(ConfigError) as err:
        load_inventory(path)
    assert fragment in str(err.value) and str(path) in err.value.where


def test_jump_hosts_first_proxy_setting_wins_and_tuning_options_are_ignored(
        tmp_path: Path) -> None:
    path = _yaml(tmp_path, {
        "ansible_host": "10.0.0.1",
        "ansible_ssh_common_args": "-o ControlMaster=auto -o ControlPersist=60s -q "
                                   "-o ProxyJump=a@j1,[fd00::1]:2200",
        "ansible_ssh_extra_args": "-o ProxyCommand='ssh -W %h:%p later'",
    })
    spec = load_inventory(path).hosts["gpu1"]
    assert [str(h) for h in spec.jump] == ["a@j1", "[fd00::1]:2200"]


def test_a_host_outside_the_inventory_gets_all_vars_templated_too(tmp_path: Path) -> None:
    path = _yaml(tmp_path, {"ansible_host": "10.0.0.1"},
                 {"base_port": 9000, "api_port": "{{ base_port + 80 }}"})
    spec = load_inventory(path).resolve_host("ubuntu@10.0.0.99")
    assert (spec.vars["api_port"], spec.address, spec.user) == (9080, "10.0.0.99", "ubuntu")


def test_ask_vault_pass_prompts_and_opens_the_vault() -> None:
    root = CORPUS / "14-vault"
    password = (root / "vault-pass.txt").read_text().strip()
    result = CliRunner().invoke(main, ["inventory", "-i", str(root / "inventory.yml"),
                                       "--ask-vault-pass", "--list"], input=f"{password}\n")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)  # the prompt went to stderr
    assert password not in result.stdout
    assert listed["hosts"][0]["vars"]["api_key"] == "<hidden>"
    assert "sk-vaulted" not in result.stdout
