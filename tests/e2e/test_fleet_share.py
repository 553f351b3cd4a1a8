"""Issue 12, goal 3 on lab hosts: a cold `up` of several hosts fetches each release from the
package index once and the weights from the hub once; the other hosts copy them from the host
that fetched them, and when a copy fails they fetch as they would have alone. The lab's
index server counts what it sent to whom (its access log), so the bytes are the proof."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.e2e.test_fleet import provision

VENV_PYTHON = "/opt/fastdeploy/venv/bin/python"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


PAD_MB, WEIGHTS_MB = 8, 24  # big enough to tell one fetch from three, small enough to be quick


@pytest.fixture(scope="module")
def hosts(lab) -> Iterator[list]:
    lab.set_upstream(pad_mb=PAD_MB, weights_mb=WEIGHTS_MB)
    booted = lab.add_hosts(["a100", "a100", "a100"], seed_weights=False)
    yield booted
    for host in booted:
        lab.remove_host(host.name)
    lab.set_upstream()


@pytest.fixture(scope="module")
def inventory(lab, hosts) -> str:
    return str(lab.inventory())


# A small model: hosts without seeded weights must have the catalogue's weights size free for
# pre-flight, and the default model's 60 GB would refuse them on a machine with less free disk.
MODEL = "baidu/ERNIE-4.5-0.3B-Paddle"


def _up(home: Path, inventory: str, hosts) -> tuple[int, dict]:
    done = provision(home, "up", "-i", inventory, "--limit", ":".join(h.name for h in hosts),
                     "--json", "-e", f"model={MODEL}")
    try:
        return done.returncode, {r["host"]: r for r in json.loads(done.stdout)["hosts"]}
    except ValueError:
        pytest.fail(f"up gave no JSON ({done.returncode}): {done.stdout}{done.stderr}")


def _release_reason(result: dict) -> str:
    return next(s["reason"] for s in result["steps"] if s["name"] == "release")


def _freeze(host) -> str:
    done = host.ssh(f"{VENV_PYTHON} -m pip freeze --all", check=True)
    return done.stdout


def _sent(lab, mark: int) -> dict:
    """What the index server sent since the mark (it logs a request as its response ends)."""
    time.sleep(1)
    return lab.index_bytes(mark)


def test_a_cold_fleet_fetches_once_and_copies(lab, home, inventory, hosts) -> None:
    mark = lab.index_mark()
    code, results = _up(home, inventory, hosts)
    assert code == 0, json.dumps(results, indent=1)[-3000:]
    sent = _sent(lab, mark)
    reasons = {name: _release_reason(r) for name, r in results.items()}
    built = [name for name, why in reasons.items() if why.startswith("build ")]
    copied = [name for name, why in reasons.items() if why.startswith("copied ")]
    assert len(built) == 1 and len(copied) == len(hosts) - 1, reasons
    assert all(f"from {built[0]}" in reasons[name] for name in copied), reasons
    # one padded paddlepaddle-gpu (+ a quarter for fastdeploy-gpu) left the index, not three;
    # the weights left the hub once: the other two servers found a verified copy in place
    assert PAD_MB * 1e6 < sent["paddle"] < 2 * PAD_MB * 1e6, sent
    assert WEIGHTS_MB * 1e6 <= sent["hub"] < 1.5 * WEIGHTS_MB * 1e6, sent
    weights = {name: next((s["reason"] for s in r["steps"] if s["name"] == "weights"), "")
               for name, r in results.items()}
    assert sum(why.startswith("copied ") for why in weights.values()) == len(hosts) - 1, weights
    # the copies are the built release: the same distributions, each checked on its own host
    freezes = {h.name: _freeze(h) for h in hosts}
    assert len(set(freezes.values())) == 1, freezes
    assert "fastdeploy-gpu==" in freezes[built[0]]
    for host in hosts:
        assert requests.get(f"http://{host.address}:8180/health", timeout=5).status_code == 200
    again_code, again = _up(home, inventory, hosts)
    assert again_code == 0 and all(r["status"] == "ok" for r in again.values()), again


def test_a_failed_copy_falls_back_to_the_index(home, inventory, hosts) -> None:
    """tar broken on every host: no copy can work, so each host builds from the index, as it
    would have alone, and the run still converges."""
    pair = hosts[:2]
    for host in pair:
        host.ssh("systemctl stop fastdeploy; rm -rf /opt/fastdeploy /etc/fastdeploy "
                 "/etc/systemd/system/fastdeploy.service; systemctl daemon-reload", check=True)
        host.ssh("printf '#!/bin/sh\\necho tar: broken by the test >&2\\nexit 2\\n' "
                 "> /usr/local/bin/tar && chmod 755 /usr/local/bin/tar", check=True)
    try:
        code, results = _up(home, inventory, pair)
    finally:
        for host in pair:
            host.ssh("rm -f /usr/local/bin/tar")
    assert code == 0, json.dumps(results, indent=1)[-3000:]
    reasons = {name: _release_reason(r) for name, r in results.items()}
    assert all(why.startswith("build ") for why in reasons.values()), reasons
    for host in pair:
        assert requests.get(f"http://{host.address}:8180/health", timeout=5).status_code == 200
