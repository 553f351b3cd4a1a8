"""The lab's own promises, on real booted hosts: boot, strict SSH, GPUs that answer like
real ones, the stand-in server's SM check, apt on a bare host, and a clean `down`."""

from __future__ import annotations

import csv
import io
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from provision_lab import machine, paths, tls
from provision_lab.profiles import get_profile


@pytest.fixture(scope="module")
def pair(lab):
    hosts = lab.add_hosts(["a100", "t4"])
    yield hosts
    for host in hosts:
        if host.name in lab.hosts:
            lab.remove_host(host.name)


def test_two_profiles_boot_and_answer_strict_ssh(pair) -> None:
    for host in pair:
        done = host.ssh("hostname; systemctl is-system-running")
        assert done.returncode == 0, done.stderr
        name, state = done.stdout.split()
        assert name == host.name and state in ("running", "degraded")


def test_a_wrong_known_hosts_is_refused(pair, tmp_path: Path) -> None:
    host = pair[0]
    other = pair[1].read_file("/etc/ssh/ssh_host_ed25519_key.pub").split()[:2]
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"{host.address} {' '.join(other)}\n")
    argv = [a.replace(str(paths.KNOWN_HOSTS), str(wrong)) for a in machine.ssh_argv(host.address)]
    done = subprocess.run(argv + ["true"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 255
    assert "HOST IDENTIFICATION HAS CHANGED" in done.stderr or "verification failed" in done.stderr


def test_every_exec_request_is_logged(pair) -> None:
    host = pair[0]
    before = host.exec_request_count()
    for _ in range(3):
        host.ssh("true")
    assert host.exec_request_count() - before == 3


@pytest.mark.parametrize("index", [0, 1])
def test_nvidia_smi_answers_like_a_real_one(pair, index: int) -> None:
    host = pair[index]
    profile = get_profile(host.profile)
    query = host.ssh("nvidia-smi --query-gpu=index,name,compute_cap,memory.total,driver_version"
                     " --format=csv")
    rows = list(csv.DictReader(io.StringIO(query.stdout), skipinitialspace=True))
    assert len(rows) == len(profile.gpus)
    row, gpu = rows[0], profile.gpus[0]
    assert row["name"] == gpu.name and row["compute_cap"] == gpu.compute_cap
    assert row["memory.total [MiB]"] == f"{gpu.memory_total_mib} MiB"
    assert row["driver_version"] == profile.driver_version
    table = host.ssh("nvidia-smi").stdout
    found = re.search(r"Driver Version:\s*(\S+)\s+CUDA Version:\s*(\S+)", table)
    assert found and found.groups() == (profile.driver_version, profile.cuda_version)


def _install_server(host) -> None:
    """As on a real host with a site mirror: the GPU packages from the Paddle index, their
    ordinary dependencies from the mirror that the host's own pip configuration names."""
    script = (
        "set -e; python3 -m venv /root/v; "
        "mirror=$(sed -n 's/^index-url = //p' /etc/pip.conf); "
        f"/root/v/bin/pip -q install -i {paths.PADDLE_INDEX_URL}cu126/ paddlepaddle-gpu==3.3.0; "
        f"/root/v/bin/pip -q install -i {paths.PADDLE_INDEX_URL}fastdeploy-gpu-80_90/ "
        "--extra-index-url \"$mirror\" fastdeploy-gpu==2.4.0; "
        "printf '127.0.0.1 localhost %s\\n' \"$(hostname)\" > /etc/hosts")
    done = host.ssh(script, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hosts_use_the_general_index_as_their_site_mirror(pair) -> None:
    host = pair[0]
    assert host.read_file("/etc/pip.conf") == (
        f"[global]\nindex-url = {paths.GENERAL_INDEX_URL}\ntrusted-host = {paths.GATEWAY}\n")
    done = host.ssh("python3 -m pip download -q --no-deps -d /tmp/dl fastapi && ls /tmp/dl")
    assert done.returncode == 0 and done.stdout.split() == ["fastapi-1.0.0-py3-none-any.whl"]
    only_paddle = host.ssh("python3 -m venv /tmp/p && /tmp/p/bin/pip install -q "
                           f"-i {paths.PADDLE_INDEX_URL}fastdeploy-gpu-80_90/ "
                           "fastdeploy-gpu==2.4.0", timeout=300)
    assert only_paddle.returncode != 0  # -i replaces the mirror: dependencies are missing (C1)
    assert "No matching distribution found for" in only_paddle.stderr


def test_a_host_without_the_mirror_installs_from_pypi_org_over_verified_tls(lab,
                                                                           tmp_path) -> None:
    """No pip configuration at all: a fresh venv's pip takes its default index, reaches
    "pypi.org" (the lab's stand-in, on this machine) over TLS and downloads the file from
    files.pythonhosted.org; with another CA in the host's trust store it is refused."""
    (host,) = lab.add_hosts(["a100"], pip_mirror=False)
    try:
        assert not (host.root / "etc/pip.conf").exists()
        setup = host.ssh("python3 -m venv /tmp/v && /tmp/v/bin/python -m pip config list; "
                         "env | grep ^PIP_; for name in pypi.org files.pythonhosted.org; do "
                         "getent ahostsv4 $name | head -n 1 | cut -d ' ' -f 1; done; "
                         "/tmp/v/bin/python -c 'from pip._vendor import certifi; "
                         "print(certifi.where())'", timeout=120)
        # Debian's pip (in a venv too) reads the system store through its patched certifi
        assert setup.stdout.split() == [paths.GATEWAY, paths.GATEWAY,
                                        "/etc/ssl/certs/ca-certificates.crt"], setup.stdout
        pip = "/tmp/v/bin/python -m pip install -vv --no-cache-dir --retries 0 --timeout 10 "
        done = host.ssh(pip + "fastapi", timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Looking in indexes" not in done.stdout  # pip's default, nothing configured
        assert "https://pypi.org/simple/fastapi/" in done.stdout, done.stdout
        assert "Starting new HTTPS connection (1): files.pythonhosted.org:443" in done.stdout
        assert re.search(r"https://files\.pythonhosted\.org/\S+/fastapi-1\.0\.0-py3-none-any"
                         r"\.whl", done.stdout), done.stdout

        other = tls.make_ca(tmp_path / "other", paths.CA_NAME)  # same name, another key
        lab.trust_ca(other.read_text(), [host.name])
        refused = host.ssh(pip + "uvicorn", timeout=300)
        assert refused.returncode != 0
        assert "CERTIFICATE_VERIFY_FAILED" in refused.stdout + refused.stderr
        lab.trust_ca(None, [host.name])
        assert host.ssh(pip + "uvicorn", timeout=300).returncode == 0
    finally:
        lab.remove_host(host.name)


def _serve(host) -> subprocess.CompletedProcess:
    # setsid in a subshell: the server must outlive the SSH session that starts it
    return host.ssh("cd /root && (setsid timeout 60 /root/v/bin/python -m "
                    "fastdeploy.entrypoints.openai.api_server --model baidu/ERNIE-4.5-0.3B-Paddle"
                    " --port 8180 --metrics-port 8181 --engine-worker-queue-port 8182"
                    " --cache-queue-port 8183 > /root/server.log 2>&1 &)")


def test_stand_in_server_refuses_a_wrong_sm_and_serves_on_a_right_one(pair) -> None:
    a100, t4 = pair
    for host in pair:
        _install_server(host)
    refused = t4.ssh("cd /root && /root/v/bin/python -m fastdeploy.entrypoints.openai.api_server"
                     " --model baidu/ERNIE-4.5-0.3B-Paddle --port 8180 --metrics-port 8181"
                     " --engine-worker-queue-port 8182"
                     " --cache-queue-port 8183", timeout=60)
    assert refused.returncode != 0
    assert "no kernel image is available" in refused.stdout + refused.stderr \
        or "CUDA error" in refused.stdout + refused.stderr
    _serve(a100)
    assert _wait_health(a100.address) == (200, ""), a100.ssh("cat /root/server.log").stdout


def _wait_health(address: str, timeout: float = 60.0) -> tuple[int, str] | str:
    """Poll /health until it answers; connection refused means the server is loading."""
    deadline, last = time.monotonic() + timeout, "never answered"
    while time.monotonic() < deadline:
        try:
            got = requests.get(f"http://{address}:8180/health", timeout=2)
            return got.status_code, got.text
        except requests.RequestException as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.3)
    return last


def test_bare_host_installs_venv_from_the_lab_apt_repository(lab) -> None:
    host = lab.add_host("a10", bare=True)
    assert host.ssh("python3 -m venv /tmp/v").returncode != 0  # really bare
    done = host.ssh("apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
                    "--no-install-recommends python3-venv python3-pip && python3 -m venv /tmp/v",
                    timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    lab.remove_host(host.name)


def test_a_lab_killed_midway_is_cleaned_by_the_next_one(lab) -> None:
    """Its nspawn killed, its state file lost: the next Lab still finds and removes all."""
    from provision_lab.lab import Lab

    host = lab.add_host("a100")
    os.kill(host.pid, signal.SIGKILL)
    paths.STATE_FILE.unlink()
    assert any(ns.startswith(paths.NETNS_PREFIX) for ns in _netns())
    assert str(host.root) in Path("/proc/self/mounts").read_text()
    Lab().down()
    _assert_nothing_left()
    lab.hosts.clear()  # the session's lab lost that host with the rest


def test_down_leaves_nothing_behind(lab) -> None:
    lab.add_host("nogpu")
    lab.down()
    _assert_nothing_left()


def _netns() -> list[str]:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()


def _assert_nothing_left() -> None:
    assert not [ns for ns in _netns() if ns.startswith(paths.NETNS_PREFIX)]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert paths.VETH_PREFIX not in links and paths.BRIDGE not in links
    assert str(paths.HOSTS_DIR) not in Path("/proc/self/mounts").read_text()
    nspawn = [p for p in Path("/proc").iterdir() if p.name.isdigit()
              and b"systemd-nspawn" in _cmdline(p) and str(paths.HOSTS_DIR).encode() in _cmdline(p)]
    assert nspawn == []
    rooted = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and os.readlink(proc / "root").startswith(str(paths.HOSTS_DIR)):
                rooted.append(proc.name)
        except OSError:
            pass
    assert rooted == []  # no process of a container survived its nspawn


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


def test_a_second_process_cannot_stop_a_lab_in_use(lab) -> None:
    """The test session holds the lab: a `provision lab down` beside it must not stop it."""
    import sys

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-m", "provision.cli", "lab", "down"], cwd=root,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "in use by another process" in done.stderr and str(os.getpid()) in done.stderr
