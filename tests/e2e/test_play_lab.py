"""`provision play` on lab hosts, side by side with `ansible-playbook` on the same YAML.

Two fresh hosts get the ten-task site playbook, one from ansible-playbook (ansible-core,
over OpenSSH with the lab's key and strict known_hosts), one from provision. Their
files, modes, owners, units, sysctls and users must then be the same. A converged
re-run of provision must change nothing and cost at most 3 SSH exec requests (counted
in the host's sshd log), and --check on a fresh host must leave it untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e.ansible_posix import posix_collections_path

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "tests" / "fixtures" / "playbooks" / "site" / "site.yml"
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
FILES = ("/opt/site", "/opt/site/app.conf", "/opt/site/port", "/etc/motd",
         "/etc/default/site-app", "/etc/site-limits.conf", "/etc/sysctl.d/90-site.conf",
         "/etc/systemd/system/site-app.service")


@pytest.fixture(scope="module")
def pair(lab) -> Iterator[tuple]:
    hosts = lab.add_hosts(["a100", "a100"])
    yield hosts
    for host in hosts:
        lab.remove_host(host.name)


def provision(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HOME=str(home), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "provision.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)


def ansible_inventory(lab, host, path: Path) -> Path:
    """The lab host for ansible-playbook: the lab's key, strict checks on its known_hosts."""
    base = yaml.safe_load(lab.inventory().read_text())["all"]
    known = base["vars"]["known_hosts_file"]
    entry = dict(base["hosts"][host.name])
    entry["ansible_ssh_common_args"] = (f"-o UserKnownHostsFile={known} "
                                        "-o StrictHostKeyChecking=yes "
                                        "-o GlobalKnownHostsFile=/dev/null")
    entry["ansible_python_interpreter"] = "/usr/bin/python3"
    path.write_text(yaml.safe_dump({"all": {"hosts": {host.name: entry}}}))
    return path


def snapshot(host) -> dict:
    """What the playbook manages, read from the host (names normalised per host)."""
    state: dict = {}
    for path in FILES:
        local = host.root / path.lstrip("/")
        if not local.exists():
            state[path] = None
            continue
        st = local.stat()
        data = local.read_bytes().replace(host.name.encode(), b"HOST") if local.is_file() \
            else None
        state[path] = (oct(st.st_mode), st.st_uid, st.st_gid, data)
    remote = host.ssh("systemctl is-active site-app; systemctl is-enabled site-app; "
                      "sysctl -n net.core.somaxconn; getent passwd siteapp | cut -d: -f3-")
    state["live"] = remote.stdout.split()
    return state


def test_same_yaml_same_state_under_ansible_and_provision_then_converged_in_3_execs(
        lab, pair, tmp_path: Path) -> None:
    by_ansible, by_provision = pair
    inventory = str(lab.inventory())
    before = snapshot(by_provision)

    # --check on the fresh host: every task would change, nothing does
    checked = provision(tmp_path, "play", str(SITE), "-i", inventory, "--limit",
                        by_provision.name, "--check", "--json")
    assert checked.returncode == 0, checked.stderr
    report = json.loads(checked.stdout)
    assert report["recap"][by_provision.name]["changed"] == 11, checked.stderr  # + handler
    assert snapshot(by_provision) == before

    # ssh's ControlPath is a Unix socket (at most 108 bytes): a pytest temp dir under an xdist
    # worker is too deep for it, so ansible's sockets go to a short directory of their own.
    sockets = tempfile.mkdtemp(prefix="ans-cp-", dir="/tmp")
    ran = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i",
                          str(ansible_inventory(lab, by_ansible, tmp_path / "ansible.yml")),
                          str(SITE)], cwd=ROOT, capture_output=True, text=True, timeout=900,
                         env=dict(os.environ, HOME=str(tmp_path), ANSIBLE_NOCOLOR="1",
                                  ANSIBLE_COLLECTIONS_PATH=str(posix_collections_path()),
                                  ANSIBLE_HOST_KEY_CHECKING="True",
                                  ANSIBLE_SSH_CONTROL_PATH_DIR=sockets,
                                  ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp")))
    shutil.rmtree(sockets, ignore_errors=True)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-2000:]

    first = provision(tmp_path, "play", str(SITE), "-i", inventory, "--limit",
                      by_provision.name, "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["recap"][by_provision.name]["failed"] == 0

    mine, theirs = snapshot(by_provision), snapshot(by_ansible)
    assert mine["live"][:2] == ["active", "enabled"], mine["live"]
    assert "net.core.somaxconn=1024" in mine["/etc/sysctl.d/90-site.conf"][3].decode()
    assert mine == theirs

    execs = by_provision.exec_request_count()
    again = provision(tmp_path, "play", str(SITE), "-i", inventory, "--limit",
                      by_provision.name, "--json")
    assert again.returncode == 0, again.stderr
    recap = json.loads(again.stdout)["recap"][by_provision.name]
    assert (recap["changed"], recap["failed"]) == (0, 0), again.stderr
    used = by_provision.exec_request_count() - execs
    assert used <= 3, f"a converged ten-task playbook cost {used} exec requests"
