"""Inventories read as Ansible reads them: structure, precedence, patterns, --host, -e, errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from provision.inventory import apply_extra_vars, load_inventory, parse_extra_vars
from provision.model import ConfigError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "inventories"
LAB = FIXTURES / "lab" / "inventory.yml"
LAYERED = FIXTURES / "layered" / "inventory.yml"
BAD = FIXTURES / "bad"


# --------------------------------------------------------------------------- structure


def test_lab_inventory_hosts_connection_fields_and_groups() -> None:
    inv = load_inventory(LAB)
    assert list(inv.hosts) == ["lab-a100-1", "lab-h100-1", "lab-l40s-1", "lab-t4-1"]
    a100 = inv.hosts["lab-a100-1"]
    assert (a100.address, a100.port, a100.user) == ("10.77.0.11", 22, "root")
    assert a100.key_file == "/var/lib/provision-lab/id_ed25519"
    assert a100.groups == ("a100",)
    assert inv.hosts["lab-l40s-1"].groups == ("bare", "l40s")
    assert inv.groups["bare"] == ["lab-l40s-1"]
    assert inv.groups["all"] == list(inv.hosts)
    assert inv.groups["ungrouped"] == []
    assert a100.vars["pip_extra_index_url"] == ""
    assert a100.sources["package_index_url"] == f"{LAB}:5"
    assert a100.sources["ansible_host"] == f"{LAB}:9"


def test_host_ranges_name_port_keys_and_ungrouped() -> None:
    inv = load_inventory(LAYERED)
    assert [h for h in inv.hosts if h.startswith("web")] == ["web01", "web02", "web03"]
    assert inv.hosts["db"].port == 2222 and inv.hosts["db"].address == "db"
    assert inv.hosts["gpu2"].port == 2201
    assert set(inv.groups["ungrouped"]) == {"web01", "web02", "web03", "db"}


def test_no_inventory_is_empty() -> None:
    inv = load_inventory(None)
    assert inv.hosts == {}
    assert inv.select("all") == []  # `all` exists (empty), as in Ansible
    with pytest.raises(ConfigError, match="no inventory"):
        inv.select("gpu1")


# --------------------------------------------------------------------------- precedence

LAYERS = [
    # host, variable, value, the layer that must win
    ("gpu1", "model", "baidu/ERNIE-4.5-0.3B-Paddle", "group_vars/all.yml over all.vars"),
    ("gpu1", "max_model_len", 4096, "group_vars/all.yml over a child group's inline vars"),
    ("gpu1", "api_port", 8900, "same depth: zeta after a100 alphabetically"),
    ("gpu2", "api_port", 8200, "child group (a100_big) over parents and zeta"),
    ("gpu1", "releases_keep", 7, "same depth: zeta over a100"),
    ("gpu1", "metrics_port", 9102, "group_vars/a100/ directory, files in name order"),
    ("gpu2", "metrics_port", 9102, "parent group's group_vars reach the child's hosts"),
    ("gpu1", "cache_queue_port", 9303, "group_vars/zeta without an extension"),
    ("gpu1", "max_num_seqs", 8, "host_vars/gpu1.yaml over inline host vars"),
    ("gpu1", "health_timeout", 50, "inline host vars over every group source"),
    ("web01", "api_port", 8000, "all.vars for an ungrouped host"),
]


@pytest.mark.parametrize(("host", "name", "value", "why"), LAYERS,
                         ids=[f"{h}-{n}" for h, n, _, _ in LAYERS])
def test_precedence(host: str, name: str, value: object, why: str) -> None:
    assert load_inventory(LAYERED).hosts[host].vars[name] == value, why


def test_sources_name_the_winning_file_and_line() -> None:
    gpu1 = load_inventory(LAYERED).hosts["gpu1"]
    base = LAYERED.parent
    assert gpu1.sources["max_num_seqs"] == f"{base / 'host_vars/gpu1.yaml'}:1"
    assert gpu1.sources["metrics_port"] == f"{base / 'group_vars/a100/20-second.yaml'}:1"
    assert gpu1.sources["api_port"] == f"{LAYERED}:35"
    assert gpu1.user == "deploy"  # ansible_user from host_vars/


def test_relative_known_hosts_file_is_resolved_against_the_inventory() -> None:
    gpu1 = load_inventory(LAYERED).hosts["gpu1"]
    assert gpu1.vars["known_hosts_file"] == str(LAYERED.parent / "known_hosts")


# --------------------------------------------------------------------------- patterns

PATTERNS = [
    ("all", ["lab-a100-1", "lab-h100-1", "lab-l40s-1", "lab-t4-1"]),
    ("*", ["lab-a100-1", "lab-h100-1", "lab-l40s-1", "lab-t4-1"]),
    ("lab-h100-1", ["lab-h100-1"]),
    ("a100", ["lab-a100-1"]),
    ("a100:h100", ["lab-a100-1", "lab-h100-1"]),
    ("h100,a100", ["lab-a100-1", "lab-h100-1"]),  # inventory order, not pattern order
    ("all:!t4", ["lab-a100-1", "lab-h100-1", "lab-l40s-1"]),
    ("!t4", ["lab-a100-1", "lab-h100-1", "lab-l40s-1"]),
    ("l40s:&bare", ["lab-l40s-1"]),
    ("a100:&bare", []),
    ("lab-*-1:!bare:!t4", ["lab-a100-1", "lab-h100-1"]),
    ("l4*", ["lab-l40s-1"]),  # a glob over group names too
    ("~lab-(a|h)100-1", ["lab-a100-1", "lab-h100-1"]),
]


@pytest.mark.parametrize(("pattern", "hosts"), PATTERNS, ids=[p for p, _ in PATTERNS])
def test_patterns(pattern: str, hosts: list[str]) -> None:
    assert [h.name for h in load_inventory(LAB).select(pattern)] == hosts


@pytest.mark.parametrize("pattern", ["a1000", "a100:h200", "all:!nosuch", "gpu*"])
def test_pattern_matching_nothing_names_it_and_lists_what_exists(pattern: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_inventory(LAB).select(pattern)
    bad = {"a1000": "a1000", "a100:h200": "h200", "all:!nosuch": "nosuch", "gpu*": "gpu*"}
    assert repr(bad[pattern]) in str(err.value)
    assert "lab-a100-1" in str(err.value) and "h100" in str(err.value)


# --------------------------------------------------------------------------- --host

TARGETS = [
    # target, address, port, user (None: not set, ssh_config may decide)
    ("gpu1.example.com", "gpu1.example.com", 22, None),
    ("myalias", "myalias", 22, None),
    ("ubuntu@10.0.0.5", "10.0.0.5", 22, "ubuntu"),
    ("ubuntu@10.0.0.5:2222", "10.0.0.5", 2222, "ubuntu"),
    ("10.0.0.5:2200", "10.0.0.5", 2200, None),
    ("[::1]:2222", "::1", 2222, None),
    ("root@[fe80::1%eth0]:22", "fe80::1%eth0", 22, "root"),
    ("::1", "::1", 22, None),
    ("admin@[2001:db8::5]", "2001:db8::5", 22, "admin"),
]


@pytest.mark.parametrize(("target", "address", "port", "user"), TARGETS,
                         ids=[t for t, *_ in TARGETS])
def test_host_outside_the_inventory(target: str, address: str, port: int,
                                    user: str | None) -> None:
    spec = load_inventory(None).resolve_host(target)
    assert (spec.name, spec.address, spec.port) == (target, address, port)
    assert spec.vars.get("ansible_user") == user
    assert ("ansible_port" in spec.vars) == (port != 22 or ":22" in target)
    if user:
        assert spec.user == user


def test_host_in_the_inventory_and_ad_hoc_host_gets_all_vars() -> None:
    inv = load_inventory(LAB)
    assert inv.resolve_host("lab-t4-1") is inv.hosts["lab-t4-1"]
    spec = inv.resolve_host("root@10.77.0.99")
    assert spec.vars["package_index_url"] == "http://10.77.0.1:8080/simple/"


@pytest.mark.parametrize(("target", "key"), [
    ("gpu1:99999", "port"), ("gpu1:ssh", "port"), ("[::1", "host"), ("-oProxyCommand=x", "host"),
    ("bad user@gpu1", "ansible_user"), ("a100", "host")])
def test_bad_host_targets(target: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_inventory(LAB).resolve_host(target)
    assert err.value.where == "--host" or err.value.key == key
    assert err.value.key == key


# --------------------------------------------------------------------------- -e


def test_extra_vars_forms_and_order(tmp_path: Path) -> None:
    vars_file = tmp_path / "more.yml"
    vars_file.write_text("api_port: 9100\nextra_server_args: [--a, '1']\n")
    extra = parse_extra_vars([
        "api_port=9000 model='baidu/ERNIE-4.5-0.3B-Paddle' api_key=a=b",
        f"@{vars_file}",
        '{"health_timeout": 60, "cuda": "12.6"}',
    ])
    assert extra == {"api_port": 9100, "model": "baidu/ERNIE-4.5-0.3B-Paddle",
                     "api_key": "a=b", "extra_server_args": ["--a", "1"],
                     "health_timeout": 60, "cuda": "12.6"}
    assert extra.sources["api_port"] == f"{vars_file}:1"
    assert extra.sources["model"] == "-e"
    assert parse_extra_vars(["api_port=9000"])["api_port"] == "9000"  # KEY=VALUE: strings


@pytest.mark.parametrize(("arg", "fragment"), [
    ("max_num_seqs: 4", "KEY=VALUE"),
    ("=5", "KEY=VALUE"),
    ("9bad=1", "KEY=VALUE"),
    ("a='unterminated", "quotes"),
    ("@/nonexistent/vars.yml", "does not exist"),
    ("{api_port: [1, 2", "YAML"),
    ("{}extra", "YAML"),
])
def test_bad_extra_vars(arg: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        parse_extra_vars([arg])


def test_extra_vars_beat_every_layer_and_move_the_connection() -> None:
    gpu1 = load_inventory(LAYERED).hosts["gpu1"]
    extra = parse_extra_vars(["max_num_seqs=2 ansible_port=2022 ansible_host=10.9.9.9"])
    spec = apply_extra_vars(gpu1, extra)
    assert spec.vars["max_num_seqs"] == "2" and spec.sources["max_num_seqs"] == "-e"
    assert (spec.address, spec.port, spec.user) == ("10.9.9.9", 2022, "deploy")
    assert apply_extra_vars(gpu1, parse_extra_vars([])) is gpu1
    with pytest.raises(ConfigError, match="ansible_port='0'"):
        apply_extra_vars(gpu1, parse_extra_vars(["ansible_port=0"]))


# --------------------------------------------------------------------------- errors

ERRORS = [
    # file, where (line), key, value fragment, fix fragment
    ("syntax.yml", 5, "(yaml)", "expected <block end>", "YAML syntax"),
    ("hosts-list.yml", 2, "all.hosts", "['gpu1', 'gpu2']", "mapping of names"),
    ("unknown-key.yml", 4, "all.host_vars", "'host_vars'", "only `hosts`, `children`"),
    ("port.yml", 5, "ansible_port", "70000", "1 to 65535"),
    ("address.yml", 4, "ansible_host", "rm -rf", "host name or IP"),
    ("loop.yml", 5, "a:children", "'b'", "loop"),
    ("vars-list.yml", 2, "all.vars", "[{'api_port': 1}]", "mapping"),
]


@pytest.mark.parametrize(("name", "line", "key", "value", "fix"), ERRORS,
                         ids=[e[0] for e in ERRORS])
def test_inventory_errors_name_file_line_key_value_and_fix(name: str, line: int, key: str,
                                                           value: str, fix: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_inventory(BAD / name)
    assert err.value.where == f"{BAD / name}:{line}"
    assert err.value.key == key
    text = str(err.value)
    assert value in text and fix in text and str(BAD / name) in text


def test_missing_inventory_file() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_inventory(BAD / "nope.yml")


def test_bad_group_vars_file_names_it(tmp_path: Path) -> None:
    (tmp_path / "inv.yml").write_text("all:\n  hosts:\n    gpu1:\n")
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "all.yml").write_text("- just\n- a list\n")
    with pytest.raises(ConfigError) as err:
        load_inventory(tmp_path / "inv.yml")
    assert err.value.where == str(tmp_path / "group_vars" / "all.yml")
    (tmp_path / "group_vars" / "all.yml").write_text("api_port: 1\n  bad: indent\n")
    with pytest.raises(ConfigError) as err:
        load_inventory(tmp_path / "inv.yml")
    assert err.value.where == f"{tmp_path / 'group_vars' / 'all.yml'}:2"
