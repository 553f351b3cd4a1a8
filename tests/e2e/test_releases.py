"""Issue 7 (C1-C12) against the lab that is built from recorded upstream facts.

Written against /work/helpers/CONTRACT-7.md: the lab's Paddle index stand-in at
GATEWAY:8700, the general index ("site mirror") at GATEWAY:8701 with DECOY 99.0.0 builds of
both GPU packages, hosts with or without a pip.conf pointing at it (`pip_mirror=False`: the
same index is then pip's default, https://pypi.org/simple/, over TLS with the lab's CA),
stand-in servers that behave per release (argparse, /v1/models, FD_API_KEY, /config-info,
parser names, thinking, cache layout, ops import, 24 GB VL-28B), an `r535` profile.
The inventory pins fastdeploy_version "2.4" (the hosts run Python 3.11).
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
UNIT = "/etc/systemd/system/fastdeploy.service"
VENV = "/opt/fastdeploy/venv"
KEY = "lab-Key-7f3a9c"
ROLES = {  # role -> (profile, pip mirror configured on the host)
    "mirror": ("a100", True),
    "nomirror": ("a100", False),
    "old": ("a100", True),
    "key": ("h100", True),
    "r535": ("r535", True),
    "card24": ("rtx4090", True),
    "thinking": ("a100", True),
    "sm89": ("l40s", True),
}


@pytest.fixture(scope="module")
def hosts(lab) -> Iterator[dict]:
    named = {}
    for mirror in (True, False):
        roles = [r for r, (_, m) in ROLES.items() if m is mirror]
        booted = lab.add_hosts([ROLES[r][0] for r in roles], pip_mirror=mirror)
        named.update(zip(roles, booted, strict=True))
    yield named
    for host in named.values():
        lab.remove_host(host.name)


@pytest.fixture(scope="module")
def inventory(lab, hosts) -> str:
    return str(lab.inventory())


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def general_index() -> str:
    from provision_lab import paths
    return f"http://{paths.GATEWAY}:8701/simple/"


def provision(home: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ, HOME=str(home), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "provision.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def up(home: Path, inventory: str, host, *extra: str) -> subprocess.CompletedProcess:
    args = [a for e in extra for a in ("-e", e)]
    return provision(home, "up", "-i", inventory, "--host", host.name, *args)


def versions(host) -> dict:
    """The installed GPU packages' versions in the current release (from the host)."""
    got = host.ssh(f"{VENV}/bin/python -c 'import json, importlib.metadata as m; print(json.dumps("
                   "{d: m.version(d) for d in (\"fastdeploy-gpu\", \"paddlepaddle-gpu\")}))'")
    assert got.returncode == 0, got.stderr
    return json.loads(got.stdout)


def chat(host, body: dict, key: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.post(f"http://{host.address}:8180/v1/chat/completions", json=body,
                         headers=headers, timeout=60)


# --------------------------------------------------------------------------- C1


def test_c1_site_mirror_serves_the_dependencies_and_no_decoy_wins(hosts, inventory,
                                                                  home) -> None:
    host = hosts["mirror"]
    done = up(home, inventory, host)
    assert done.returncode == 0, done.stdout + done.stderr
    assert versions(host) == {"fastdeploy-gpu": "2.4.0", "paddlepaddle-gpu": "3.3.0"}
    assert "DECOY" not in host.ssh("journalctl -u fastdeploy --no-pager").stdout


def test_c1_no_mirror_host_converges_from_pypi_org_gpu_packages_from_paddle(
        lab, hosts, inventory, home, general_index, tmp_path) -> None:
    """No pip configuration and pip_extra_index_url unset: the dependencies come from pip's
    default index, https://pypi.org/simple/ (the lab's general index over verified TLS), the
    two GPU packages from the Paddle index only (the general index's higher DECOYs lose).
    Then, with "pypi.org" untrusted, a new build fails naming the cause and leaves 2.4.0
    serving, and pip_extra_index_url wins: the build needs no pypi.org at all."""
    from provision_lab import tls

    host = hosts["nomirror"]
    assert host.ssh("python3 -m pip config list; env | grep ^PIP_").stdout.strip() == ""
    done = up(home, inventory, host)
    assert done.returncode == 0, done.stdout + done.stderr
    assert versions(host) == {"fastdeploy-gpu": "2.4.0", "paddlepaddle-gpu": "3.3.0"}
    fastapi = host.ssh(f"{VENV}/bin/python -c 'import importlib.metadata as m; "
                       "print(m.version(\"fastapi\"))'")
    # installed, and only the general index has fastapi (its stand-in, or the real wheel the
    # lab mirrors for the chat page): pypi.org's stand-in served it
    assert fastapi.returncode == 0 and fastapi.stdout.strip(), fastapi.stderr
    assert "DECOY" not in host.ssh("journalctl -u fastdeploy --no-pager").stdout

    other = tls.make_ca(tmp_path / "other", "another CA")
    lab.trust_ca(other.read_text(), [host.name])
    try:
        failed = up(home, inventory, host, "fastdeploy_version=2.3")
        assert failed.returncode != 0
        text = failed.stdout + failed.stderr
        assert "general index" in text and "pip_extra_index_url" in text
        assert "Python" not in text.split("general index")[0].splitlines()[-1]
        assert versions(host)["fastdeploy-gpu"] == "2.4.0"  # the previous release serves
        assert requests.get(f"http://{host.address}:8180/health", timeout=10).status_code == 200

        done = up(home, inventory, host, "fastdeploy_version=2.3",
                  f"pip_extra_index_url={general_index}")
        assert done.returncode == 0, done.stdout + done.stderr
        assert versions(host)["fastdeploy-gpu"] == "2.3.4"
    finally:
        lab.trust_ca(None, [host.name])


# --------------------------------------------------------------------------- C2, C8


def test_c2_c8_release_20_without_served_name_or_models_endpoint(hosts, inventory,
                                                                 home) -> None:
    host = hosts["old"]
    done = up(home, inventory, host, "fastdeploy_version=2.0")
    assert done.returncode == 0, done.stdout + done.stderr
    assert versions(host)["fastdeploy-gpu"] == "2.0.3"  # the line's newest patch (C5)
    unit = host.read_file(UNIT)
    assert "--served-model-name" not in unit and "--enable-mm" in unit
    models = requests.get(f"http://{host.address}:8180/v1/models", timeout=10)
    assert models.status_code == 404
    # C8: 2.0 downloads into FD_MODEL_CACHE itself, which the unit made the model's own dir
    cache = "/var/lib/fastdeploy/models/PaddlePaddle/ERNIE-4.5-VL-28B-A3B-Paddle"
    assert host.ssh(f"test -n \"$(ls -A {cache})\"").returncode == 0
    execs = host.exec_request_count()
    again = up(home, inventory, host, "fastdeploy_version=2.0")
    assert again.returncode == 0 and "changed=0" in again.stdout, again.stdout
    assert host.exec_request_count() - execs <= 3


# --------------------------------------------------------------------------- C3


def test_c3_api_key_on_23_is_a_config_error(hosts, inventory, home) -> None:
    done = up(home, inventory, hosts["mirror"], "fastdeploy_version=2.3", f"api_key={KEY}")
    assert done.returncode == 2
    assert "2.4" in done.stdout + done.stderr and KEY not in done.stdout + done.stderr


def test_c3_api_key_enforced_and_unreadable(hosts, inventory, home) -> None:
    host = hosts["key"]
    check = up(home, inventory, host, f"api_key={KEY}", "--diff")
    done = provision(home, "up", "-i", inventory, "--host", host.name, "--json",
                     "-e", f"api_key={KEY}")
    assert done.returncode == 0, done.stdout + done.stderr
    for text in (check.stdout, check.stderr, done.stdout, done.stderr):
        assert KEY not in text
    body = {"model": "baidu/ERNIE-4.5-VL-28B-A3B-Paddle", "max_tokens": 8,
            "messages": [{"role": "user", "content": "hi"}]}
    assert chat(host, body).status_code == 401
    assert chat(host, body, KEY).status_code == 200
    for port in (8180, 8181, 8182, 8183):  # from outside the host: no port returns the key
        try:
            got = requests.get(f"http://{host.address}:{port}/config-info", timeout=5)
        except requests.RequestException:
            continue
        assert KEY not in got.text, f"port {port} returns the API key"
    mode = host.ssh("stat -c %a /etc/fastdeploy/env").stdout.strip()
    assert mode == "600"
    assert KEY not in host.read_file(UNIT)
    assert host.ssh(f"grep -rl {KEY} /var/log/fastdeploy /var/lib/fastdeploy 2>/dev/null"
                    " | xargs -r stat -c %a | grep -v '^6[04]0$' || true").stdout.strip() == ""


# --------------------------------------------------------------------------- C4, C12


def test_c4_r535_host_converges(hosts, inventory, home) -> None:
    host = hosts["r535"]
    done = up(home, inventory, host)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "_cu126" in host.ssh(f"readlink {VENV}").stdout


def test_c12_vl28b_on_one_24gb_card_gets_the_batched_tokens_flag(hosts, inventory,
                                                                  home) -> None:
    host = hosts["card24"]
    done = up(home, inventory, host)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "--max-num-batched-tokens 384" in host.read_file(UNIT)


# --------------------------------------------------------------------------- C5, C9


def test_c5_line_is_its_newest_patch_and_missing_versions_list_what_exists(
        hosts, inventory, home) -> None:
    host = hosts["mirror"]
    missing = up(home, inventory, host, "fastdeploy_version=2.3.9")
    assert missing.returncode == 4
    assert "2.3.4" in missing.stdout and "2.3.9" in missing.stdout
    done = up(home, inventory, host, "fastdeploy_version=2.3")
    assert done.returncode == 0, done.stdout + done.stderr
    assert versions(host)["fastdeploy-gpu"] == "2.3.4"


def test_c9_default_25_refused_on_python_311(hosts, inventory, home) -> None:
    host = hosts["mirror"]
    before = host.ssh(f"readlink {VENV}").stdout
    done = up(home, inventory, host, "fastdeploy_version=2.5")
    assert done.returncode == 4
    assert "cp310" in done.stdout and "3.11" in done.stdout
    assert host.ssh(f"readlink {VENV}").stdout == before


# --------------------------------------------------------------------------- C6, C7


@pytest.mark.parametrize("version, model, parser", [
    ("2.2", "baidu/ERNIE-4.5-21B-A3B-Thinking", "ernie_x1"),
    ("2.4", "baidu/ERNIE-4.5-21B-A3B-Thinking", "ernie-x1"),
    ("2.4", "baidu/ERNIE-4.5-VL-28B-A3B-Thinking", "ernie-45-vl-thinking"),
])
def test_c6_c7_thinking_models_verify_with_their_real_switch(hosts, inventory, home, version,
                                                             model, parser) -> None:
    host = hosts["thinking"]
    done = up(home, inventory, host, f"fastdeploy_version={version}", f"model={model}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"--reasoning-parser {parser}" in host.read_file(UNIT)
    assert f"{host.name} | verify chat | ok" in done.stdout


# --------------------------------------------------------------------------- C11


def test_c11_build_check_catches_a_wheel_for_another_sm(hosts, inventory, home) -> None:
    """On an SM 8.9 card, the 80_90 wheel imports as `fastdeploy` but not its ops."""
    from provision.steps.release import FASTDEPLOY_CHECK

    host = hosts["sm89"]
    assert up(home, inventory, host).returncode == 0  # the right (86_89) wheel passes the check
    from provision_lab import paths
    wrong = f"http://{paths.GATEWAY}:8700/packages/stable/fastdeploy-gpu-80_90/"
    venv = "/tmp/wrong-sm"
    setup = host.ssh(f"python3 -m venv --system-site-packages {venv} && {venv}/bin/python -m pip "
                     f"install -q --no-deps fastdeploy-gpu==2.4.0 -i {wrong} "
                     f"--trusted-host {paths.GATEWAY} --target {venv}/wrong", timeout=300)
    assert setup.returncode == 0, setup.stderr
    check = host.ssh(f"PYTHONPATH={venv}/wrong {VENV}/bin/python -c "
                     f"\"$(cat <<'EOF'\n{FASTDEPLOY_CHECK}EOF\n)\" 2.4.0")
    assert check.returncode != 0
    assert "ops" in check.stderr or "gpu" in check.stderr
