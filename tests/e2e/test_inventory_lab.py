"""An INI inventory in a directory, a bastion in ssh_common_args: `provision up` on lab hosts.

One lab host is the bastion, another the GPU host behind it. The inventory is
written the way a user moving an Ansible fleet over has it (INI, a ProxyCommand
through the bastion, a group subscript as --limit); the run must converge, a
converged re-run must cost the target at most 3 exec requests and the bastion
none (it only forwards), and a bastion whose host key is unknown must stop the
run before anything runs anywhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pair(lab) -> Iterator[tuple]:
    bastion, target = lab.add_hosts([("a10", True), "a100"])
    yield bastion, target
    for host in (bastion, target):
        lab.remove_host(host.name)


def _write(tmp: Path, lab, bastion, target, known_hosts: str) -> Path:
    base = yaml.safe_load(lab.inventory().read_text())["all"]
    key = base["hosts"][target.name]["ansible_ssh_private_key_file"]
    inv = tmp / "inventory"
    inv.mkdir(exist_ok=True)
    (inv / "hosts").write_text(
        f"[a100]\n{target.name} ansible_host={target.address} ansible_user=root "
        f"ansible_ssh_private_key_file={key}\n"
        "[gpu:children]\na100\n"
        "[gpu:vars]\n"
        f"ansible_ssh_common_args='-o ProxyCommand=\"ssh -i {key} -W %h:%p -q "
        f"root@{bastion.address}\"'\n"
        "[all:vars]\n"
        f"known_hosts_file={known_hosts}\n"
        f"package_index_url={base['vars']['package_index_url']}\n"
        f'fastdeploy_version="{base["vars"]["fastdeploy_version"]}"\n')
    return inv


def _up(home: Path, inv: Path) -> tuple[int, dict, str]:
    """Exit status, the --json report, and stderr (progress and errors)."""
    env = dict(os.environ, HOME=str(home), PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "provision.cli", "up", "-i", str(inv),
                           "--limit", "gpu[0]", "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    return done.returncode, json.loads(done.stdout or "{}"), done.stderr


def test_ini_inventory_through_a_bastion(lab, pair, tmp_path: Path) -> None:
    bastion, target = pair
    known = yaml.safe_load(lab.inventory().read_text())["all"]["vars"]["known_hosts_file"]
    inv = _write(tmp_path, lab, bastion, target, known)
    listed = subprocess.run([sys.executable, "-m", "provision.cli", "inventory", "-i", str(inv),
                             "--list"], cwd=ROOT, capture_output=True, text=True, check=True,
                            env=dict(os.environ, HOME=str(tmp_path), PYTHONPATH=str(ROOT)))
    assert json.loads(listed.stdout)["hosts"][0]["connection"]["jump"] == [
        f"root@{bastion.address}"]

    code, _, err = _up(tmp_path, inv)
    assert code == 0, err

    target_execs, bastion_execs = target.exec_request_count(), bastion.exec_request_count()
    code, again, err = _up(tmp_path, inv)
    assert code == 0, err
    used = target.exec_request_count() - target_execs
    assert used <= 3, f"a converged re-run through the bastion made {used} exec requests"
    assert bastion.exec_request_count() == bastion_execs  # it only forwarded

    # the same run with a known_hosts that lacks the bastion's key: refused, nothing run
    lines = [ln for ln in Path(known).read_text().splitlines()
             if bastion.address not in ln.split(" ", 1)[0]]
    strict = tmp_path / "known_hosts_without_bastion"
    strict.write_text("\n".join(lines) + "\n")
    (tmp_path / "strict").mkdir()
    refused_inv = _write(tmp_path / "strict", lab, bastion, target, str(strict))
    before = target.exec_request_count(), bastion.exec_request_count()
    code, report, err = _up(tmp_path, refused_inv)
    assert code == 3, err
    assert f"unknown host key for {bastion.address}" in json.dumps(report) + err
    assert (target.exec_request_count(), bastion.exec_request_count()) == before
