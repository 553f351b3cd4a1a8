"""INI inventories, sources and group graphs: the details, and the errors users will meet."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from provision.cli import main
from provision.inventory import load_inventory
from provision.inventory_ini import ini_value
from provision.model import ConfigError

VENV_BIN = Path(sys.executable).parent
CORPUS = Path(__file__).resolve().parent.parent / "fixtures" / "inventories" / "corpus"


@pytest.mark.parametrize(("text", "value"), [
    ("8180", 8180), ('"8180"', "8180"), ("'a b'", "a b"), ("yes", "yes"), ("True", True),
    ("None", None), ("[1, 'x']", [1, "x"]), ("(1, 2)", [1, 2]), ("{'a': 1}", {"a": 1}),
    ("1.5", 1.5), ("1j", "1j"), ("...", "..."), ("http://x:8080/simple/", "http://x:8080/simple/"),
])
def test_ini_values_are_typed_as_ansible_types_them(text: str, value: object) -> None:
    assert ini_value(text) == value and type(ini_value(text)) is type(value)


def _ini(tmp_path: Path, text: str, name: str = "hosts.ini") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_host_line_quotes_are_removed_before_typing_vars_lines_keep_them(tmp_path: Path) -> None:
    inv = load_inventory(_ini(tmp_path, '[g]\nh1 a="1" b=\'x y\'\n[g:vars]\nc="1"\nd=1\n'))
    values = inv.hosts["h1"].vars
    assert (values["a"], values["b"], values["c"], values["d"]) == (1, "x y", "1", 1)
    assert inv.hosts["h1"].sources["a"] == f"{tmp_path / 'hosts.ini'}:2"


@pytest.mark.parametrize(("text", "line", "fragment"), [
    ("[g]\nh1\n[g:children]\nnope\n", 4, "group 'nope' is never defined"),
    ("[ghost:vars]\na=1\n", 1, "group 'ghost' is never defined"),
    ("[g:weird]\nh1\n", 1, ":vars or :children"),
    ("[g]\nh1 novalue\n", 2, "key=value"),
    ("[g]\nh1 a='x\n", 2, "unbalanced quotes"),
    ("[ g ]\nh1\n", 1, "no spaces"),
    ("all:\n  hosts:\n", 1, "looks like YAML"),
    ("[g]\nh[3:1]\n", 2, "start is after its end"),
    ("[g]\nh1:99999\n", 2, "1 to 65535"),
    ("[g]\nh1 api-port=1\n", 2, "letters, digits and '_'"),
    ("[g]\nh1\n[g:vars]\n9lives=1\n", 4, "letters, digits and '_'"),
])
def test_ini_errors_name_file_line_and_fix(tmp_path: Path, text: str, line: int,
                                           fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_inventory(_ini(tmp_path, text))
    assert err.value.where == f"{tmp_path / 'hosts.ini'}:{line}"
    assert fragment in str(err.value)


def test_group_cycle_is_one_line_exit_2_naming_file_and_groups(tmp_path: Path) -> None:
    path = _ini(tmp_path, "[a:children]\nb\n[b:children]\na\n[b]\nh1\n[a]\n")
    result = CliRunner().invoke(main, ["inventory", "-i", str(path), "--list"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0]
    assert "'a'" in lines[0] and "'b'" in lines[0] and "loop" in lines[0]
    yaml_loop = tmp_path / "loop.yml"
    yaml_loop.write_text("all:\n  children:\n    a:\n      children:\n        b:\n"
                         "    b:\n      children:\n        a:\n")
    with pytest.raises(ConfigError, match=r"groups 'b' and 'a' contain each other"):
        load_inventory(yaml_loop)


def test_up_with_a_cycle_exits_2_before_any_connection(tmp_path: Path) -> None:
    path = _ini(tmp_path, "[a:children]\nb\n[b:children]\na\n")
    result = subprocess.run([str(VENV_BIN / "provision"), "up", "-i", str(path), "--limit", "a"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "contain each other" in result.stderr


def test_directory_source_reads_files_in_name_order_and_skips_what_ansible_skips() -> None:
    inv = load_inventory(CORPUS / "11-directory-source" / "inv")
    assert list(inv.hosts) == ["gpu1", "gpu2", "gpu3", "cpu1", "cpu2"]
    assert "hidden1" not in inv.hosts  # .hidden.ini skipped; README.md, .retry, .cfg too
    assert inv.hosts["gpu2"].vars["api_port"] == 8602  # the directory's own host_vars/


def test_several_sources_merge_and_each_brings_its_group_vars() -> None:
    root = CORPUS / "12-multiple-sources"
    inv = load_inventory([root / "site-a/hosts.ini", root / "site-b/hosts.yml"])
    a1 = inv.hosts["a1"]
    assert (a1.vars["max_num_seqs"], a1.vars["metrics_port"], a1.vars["max_model_len"]) == (
        20, 9701, 4096)  # site-b's group_vars read after site-a's
    assert a1.sources["max_num_seqs"].startswith(str(root / "site-b/group_vars/gpu.yml"))


def test_group_vars_directory_wins_over_the_same_named_file() -> None:
    inv = load_inventory(CORPUS / "08-group-vars-choice" / "inventory.yml")
    assert inv.hosts["gpu1"].vars["api_port"] == 8102  # gpu/ read; gpu.yml never
    assert inv.hosts["gpu1"].vars["max_num_seqs"] == 8
    assert inv.hosts["cpu1"].vars["api_port"] == 8200  # `cpu` (no extension) before cpu.yml


def test_group_priority_orders_same_depth_groups() -> None:
    gpu1 = load_inventory(CORPUS / "09-group-priority" / "hosts.ini").hosts["gpu1"]
    # priority 1: mike, zulu (by name); 10: alpha, last, so alpha wins
    assert gpu1.vars["api_port"] == 8002
    assert "ansible_group_priority" not in gpu1.vars


def test_limit_file_and_subscripts(tmp_path: Path) -> None:
    inv = load_inventory(CORPUS / "27-empty-groups-retry" / "hosts.ini")
    retry = CORPUS / "27-empty-groups-retry" / "site.retry"
    assert [h.name for h in inv.select(f"@{retry}")] == ["gpu1", "gpu3"]  # run order
    assert [h.name for h in inv.select("gpu[-1]")] == ["gpu3"]
    assert [h.name for h in inv.select("gpu[0:1]")] == ["gpu1", "gpu2"]
    assert inv.select("maintenance") == []  # an empty group is no error
    with pytest.raises(ConfigError, match="past the 3 host"):
        inv.select("gpu[5]")
    with pytest.raises(ConfigError, match="does not exist"):
        inv.select(f"@{tmp_path / 'nope.retry'}")


def test_inventory_list_against_ansible_inventory_cli(tmp_path: Path) -> None:
    """The real `ansible-inventory --list` and `provision inventory --list` on one inventory."""
    source = CORPUS / "02-kubespray-ini" / "inventory.ini"
    ansible = subprocess.run([str(VENV_BIN / "ansible-inventory"), "-i", str(source), "--list"],
                             capture_output=True, text=True, timeout=120, cwd=tmp_path, check=True)
    theirs = json.loads(ansible.stdout)
    ours = json.loads(CliRunner().invoke(main, ["inventory", "-i", str(source), "--list"]).stdout)
    hostvars = theirs["_meta"]["hostvars"]
    assert {h["name"] for h in ours["hosts"]} == set(hostvars)
    for host in ours["hosts"]:
        mine = host["vars"]
        assert mine["ansible_host"] == hostvars[host["name"]]["ansible_host"]
        assert mine.get("api_port") == hostvars[host["name"]].get("api_port")
    assert sorted(theirs["k8s_cluster"]["children"]) == ["calico_rr", "kube_control_plane",
                                                         "kube_node"]
