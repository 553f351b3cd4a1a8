"""Issue 3's acceptance tests: `provision up` against lab hosts (real sshd, systemd, pip, HTTP).

The CLI runs as a subprocess, as a user runs it, with HOME pointed at an empty
directory so nothing in the real ~/.ssh (known_hosts, config) can make a test pass.
All hosts boot at once in one module fixture; a test uses its own hosts unless
sharing cannot hide a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
MODEL = "baidu/ERNIE-4.5-VL-28B-A3B-Paddle"
UNIT = "/etc/systemd/system/fastdeploy.service"
VENV = "/opt/fastdeploy/venv"
ROLES = {  # role -> profile
    "fresh": "a100",
    "l40s": "l40s",
    "h100": "h100",
    "t4": "t4",
    "nogpu": "nogpu",
    "olddriver": "olddriver",
    "keys": "a10",
}


@pytest.fixture(scope="module")
def hosts(lab) -> Iterator[dict]:
    """Every host this module needs, booted in parallel (plus one bare host)."""
    booted = lab.add_hosts(list(ROLES.values()))
    named = dict(zip(ROLES, booted, strict=True))
    named["bare"] = lab.add_host("a10", bare=True)
    yield named
    for host in named.values():  # hosts are not free: give them back for later modules
        lab.remove_host(host.name)


@pytest.fixture(scope="module")
def inventory(lab, hosts) -> str:
    return str(lab.inventory())


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


def provision(home: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, HOME=str(home), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "provision.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def up_json(home: Path, inventory: str, *args: str) -> tuple[int, dict, str]:
    done = provision(home, "up", "-i", inventory, "--json", *args)
    try:
        data = json.loads(done.stdout)
    except ValueError:
        pytest.fail(f"no JSON from up (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.returncode, data, done.stderr


def _file(host, path: str) -> str | None:
    """A file's content on the host, None when it does not exist."""
    try:
        return host.read_file(path)
    except FileNotFoundError:
        return None


def _snapshot(host) -> dict:
    return {p: _file(host, p) for p in ("/etc/hosts", UNIT, "/etc/fastdeploy/env")} | {
        "venv": host.ssh(f"test -e {VENV} && echo yes || echo no").stdout.strip()}


def _installed_build(host) -> dict:
    """What the installed fastdeploy-gpu wheel was built for (the lab wheel records it)."""
    out = host.ssh(f"{VENV}/bin/python -c 'import json, fastdeploy._lab as b; "
                   "print(json.dumps(b.build()))'")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _chat(address: str) -> str:
    got = requests.post(f"http://{address}:8180/v1/chat/completions", timeout=30, json={
        "model": MODEL, "max_tokens": 32,
        "messages": [{"role": "user", "content": "Say hello"}],
        "chat_template_kwargs": {"enable_thinking": False}})
    got.raise_for_status()
    return got.json()["choices"][0]["message"]["content"]


def test_fresh_host_check_then_converge_then_quiet_rerun(hosts, inventory, home) -> None:
    host = hosts["fresh"]
    before = _snapshot(host)

    checked = provision(home, "up", "-i", inventory, "--host", host.name, "--check", "--diff")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "check mode, nothing changed" in checked.stdout
    assert "ExecStart=" in checked.stdout  # --diff shows the unit file it would write
    assert _snapshot(host) == before  # --check changed nothing

    first = provision(home, "up", "-i", inventory, "--host", host.name)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"{host.name} | verify chat | ok" in first.stdout
    assert f"{host.name} : ok=" in first.stdout and "failed=0" in first.stdout

    health = requests.get(f"http://{host.address}:8180/health", timeout=10)
    assert health.status_code == 200
    assert _chat(host.address).strip()
    hosts_file = _file(host, "/etc/hosts") or ""
    assert any(line.split()[:1] == ["127.0.0.1"] and host.name in line.split()[1:]
               for line in hosts_file.splitlines()), hosts_file

    execs = host.exec_request_count()
    code, again, _ = up_json(home, inventory, "--host", host.name)
    assert code == 0
    assert again["recap"][host.name]["changed"] == 0
    assert again["recap"][host.name]["failed"] == 0
    used = host.exec_request_count() - execs
    assert used <= 3, f"a converged re-run made {used} exec requests"
    assert again["hosts"][0]["exec_requests"] == used


def test_unit_file_passes_systemd_analyze_verify(hosts, inventory, home) -> None:
    host = hosts["fresh"]
    if _file(host, UNIT) is None:  # this test also stands alone
        assert provision(home, "up", "-i", inventory, "--host", host.name).returncode == 0
    verified = host.ssh(f"systemd-analyze verify {UNIT}")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    unit = _file(host, UNIT)
    for flag in ("--port 8180", "--metrics-port 8181", "--engine-worker-queue-port 8182",
                 "--cache-queue-port 8183"):
        assert flag in unit
    assert "KillMode=control-group" in unit and "Restart=always" in unit


def test_release_24_picks_the_sm_split_index_and_25_is_refused_on_python_311(
        hosts, inventory, home) -> None:
    l40s, h100 = hosts["l40s"], hosts["h100"]
    limit = f"{l40s.name}:{h100.name}"

    code, old, err = up_json(home, inventory, "--limit", limit, "-e", "fastdeploy_version=2.4.0")
    assert code == 0, err
    assert {h["host"]: h["status"] for h in old["hosts"]} == {l40s.name: "changed",
                                                              h100.name: "changed"}
    l40s_build, h100_build = _installed_build(l40s), _installed_build(h100)
    assert l40s_build["version"] == "2.4.0" and h100_build["version"] == "2.4.0"
    assert l40s_build["index"] == "fastdeploy-gpu-86_89" and sorted(l40s_build["sms"]) == [86, 89]
    assert h100_build["index"] == "fastdeploy-gpu-80_90" and sorted(h100_build["sms"]) == [80, 90]
    assert _chat(l40s.address) and _chat(h100.address)

    # 2.5.0's wheels are cp310-only (C9): the lab's Python 3.11 hosts are refused before
    # any change, naming the tag, and 2.4.0 keeps serving.
    code, new, err = up_json(home, inventory, "--limit", limit, "-e", "fastdeploy_version=2.5.0")
    assert code == 4, err
    text = json.dumps(new)
    assert "cp310-cp310-manylinux_2_28_x86_64" in text and "3.11" in text
    for host in (l40s, h100):
        assert _installed_build(host)["version"] == "2.4.0"
        assert _chat(host.address)


@pytest.mark.parametrize("role, key", [
    ("t4", "gpu.compute_cap"),
    ("nogpu", "gpu"),
    ("olddriver", "driver"),
])
def test_unsupported_hosts_are_refused_and_left_untouched(hosts, inventory, home, role,
                                                          key) -> None:
    host = hosts[role]
    before = _snapshot(host)
    done = provision(home, "up", "-i", inventory, "--host", host.name)
    assert done.returncode == 4, done.stdout + done.stderr
    problems = [line for line in done.stdout.splitlines() if "ERROR" in line]
    assert any(host.name in line and key in line and "Fix:" in line for line in problems), \
        done.stdout
    assert _snapshot(host) == before
    assert before["venv"] == "no" and before[UNIT] is None


def test_bare_host_keeps_custom_etc_hosts_lines_and_converges(hosts, inventory, home) -> None:
    host = hosts["bare"]
    custom = "10.9.8.7 db.internal db\n# keep me: a comment\n192.0.2.10 registry.local\n"
    assert host.ssh(f"printf %s '{custom}' >> /etc/hosts").returncode == 0
    before = _file(host, "/etc/hosts")

    done = provision(home, "up", "-i", inventory, "--host", host.name)
    assert done.returncode == 0, done.stdout + done.stderr
    after = _file(host, "/etc/hosts")
    for line in before.splitlines():
        assert line in after.splitlines(), f"lost {line!r}"
    assert host.ssh(f"getent hosts {host.name}").stdout.split()[0] == "127.0.0.1"
    assert _chat(host.address)


def test_unknown_host_key_is_refused_unless_accepted(hosts, inventory, home,
                                                     tmp_path: Path) -> None:
    host = hosts["nogpu"]  # any host: nothing may run on it
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    execs = host.exec_request_count()
    refused = provision(home, "up", "-i", inventory, "--host", host.name,
                        "-e", f"known_hosts_file={empty}")
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "unknown host key" in refused.stdout and "--accept-new-host-key" in refused.stdout
    assert host.exec_request_count() == execs

    accepted = provision(home, "facts", "-i", inventory, "--host", host.name,
                         "-e", f"known_hosts_file={empty}", "--accept-new-host-key", "--json")
    assert accepted.returncode == 0, accepted.stderr
    assert host.address in empty.read_text()
    assert json.loads(accepted.stdout)["facts"]["nvidia_smi"] == "missing"


def test_changed_host_key_aborts_before_any_command(hosts, inventory, home) -> None:
    host = hosts["keys"]
    host.regenerate_host_key()
    execs = host.exec_request_count()
    done = provision(home, "up", "-i", inventory, "--host", host.name, "--accept-new-host-key")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "HOST KEY CHANGED" in done.stdout and "ssh-keygen -R" in done.stdout
    assert host.exec_request_count() == execs
