"""Issue 4's acceptance tests on a lab fleet: rolling reinstall with a poller beside it,
rollback of a broken version, status with an unreachable host, smoke deploys with JUnit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

ROOT = Path(__file__).resolve().parents[2]


def XDIST_SPLIT(item) -> str:  # noqa: N802 (tests/conftest.py's hook reads this name)
    """A long file: the rollouts (the second starts from the first's fleet) on one worker,
    status and smoke (each converges its own host) on another, each with its own fleet."""
    return "rollout" if "rollout" in item.name or "reinstall" in item.name else "checks"


def provision(home: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ, HOME=str(home), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "provision.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def fleet(lab) -> Iterator[list]:
    hosts = lab.add_hosts(["a100", "l40s", "h100", "a10"])
    yield hosts
    for host in hosts:  # hosts are not free: give them back for later modules
        lab.remove_host(host.name)


@pytest.fixture(scope="module")
def inventory(lab, fleet) -> str:
    return str(lab.inventory())


def _limit(hosts) -> str:
    return ":".join(h.name for h in hosts)


def _status(home: Path, inventory: str, limit: str) -> tuple[int, dict]:
    done = provision(home, "status", "-i", inventory, "--limit", limit, "--json")
    try:
        return done.returncode, {r["host"]: r for r in json.loads(done.stdout)["hosts"]}
    except ValueError:
        pytest.fail(f"status gave no JSON ({done.returncode}): {done.stdout}{done.stderr}")


def _healthy(address: str) -> bool:
    try:
        return requests.get(f"http://{address}:8180/health", timeout=1).status_code == 200
    except requests.RequestException:
        return False


class Poller:
    """Counts healthy hosts every ~0.2 s while a rollout runs beside it."""

    def __init__(self, hosts) -> None:
        self.hosts, self.counts, self.stop = hosts, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            self.counts.append(sum(_healthy(h.address) for h in self.hosts))
            time.sleep(0.2)

    def __enter__(self) -> Poller:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def test_rolling_reinstall_keeps_three_of_four_serving(fleet, inventory, home) -> None:
    limit = _limit(fleet)
    first = provision(home, "up", "-i", inventory, "--limit", limit,
                      "-e", "fastdeploy_version=2.3")  # its newest patch: 2.3.4
    assert first.returncode == 0, first.stdout + first.stderr
    assert all(_healthy(h.address) for h in fleet)

    with Poller(fleet) as poller:
        done = provision(home, "rollout", "-i", inventory, "--limit", limit, "--serial", "1",
                         "--to", "2.4.0", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = json.loads(done.stdout)["hosts"]
    assert [r["result"] for r in rows] == ["ok"] * 4
    assert all(r["new"].startswith("fastdeploy-2.4.0") and r["old"].startswith(
        "fastdeploy-2.3.4") for r in rows)
    assert all(r["out_of_service_s"] is not None for r in rows)
    assert len(poller.counts) > 20 and min(poller.counts) >= 3, poller.counts
    assert min(poller.counts) < 4 or max(r["out_of_service_s"] for r in rows) < 0.2

    code, status = _status(home, inventory, limit)
    assert code == 0
    assert {r["fastdeploy"] for r in status.values()} == {"2.4.0"}
    assert all(r["health"] == "200" and r["chat_latency_s"] is not None
               for r in status.values())


def test_rollout_to_a_broken_version_rolls_back_and_stops(lab, fleet, inventory, home) -> None:
    limit = _limit(fleet)
    ready = provision(home, "up", "-i", inventory, "--limit", limit)  # all on 2.4 (inventory)
    assert ready.returncode == 0, ready.stdout + ready.stderr
    units = {h.name: h.read_file("/etc/systemd/system/fastdeploy.service") for h in fleet}
    lab.break_version("2.3.4")
    try:
        done = provision(home, "rollout", "-i", inventory, "--limit", limit, "--to", "2.3.4",
                         "--max-fail", "0", "--json")
    finally:
        lab.mend()
    assert done.returncode == 1, done.stdout + done.stderr
    rows = json.loads(done.stdout)["hosts"]
    assert rows[0]["result"] == "rolled back", rows[0]
    assert "rolled back to fastdeploy-2.4.0" in rows[0]["error"]
    assert "workerlog.0" in rows[0]["error"]
    assert [r["result"] for r in rows[1:]] == ["skipped"] * 3

    code, status = _status(home, inventory, limit)
    assert code == 0, status
    assert status[fleet[0].name]["fastdeploy"] == "2.4.0"
    assert status[fleet[0].name]["health"] == "200"
    for host in fleet[1:]:  # never touched
        assert status[host.name]["release"].startswith("fastdeploy-2.4.0")
        assert host.read_file("/etc/systemd/system/fastdeploy.service") == units[host.name]


def test_status_reports_an_unreachable_host_without_failing_the_others(
        fleet, inventory, home, tmp_path: Path) -> None:
    data = yaml.safe_load(Path(inventory).read_text())
    unused = fleet[0].address.rsplit(".", 1)[0] + ".250"  # in the lab's subnet, no host there
    data["all"]["hosts"]["ghost"] = {"ansible_host": unused, "ansible_user": "root"}
    ghostly = tmp_path / "inventory.yml"
    ghostly.write_text(yaml.safe_dump(data))
    up = provision(home, "up", "-i", inventory, "--host", fleet[0].name)
    assert up.returncode == 0, up.stdout + up.stderr

    code, rows = _status(home, str(ghostly), f"{fleet[0].name}:ghost")
    assert code == 1
    assert rows["ghost"]["reachable"] is False and rows["ghost"]["error"]
    good = rows[fleet[0].name]
    assert good["reachable"] and good["health"] == "200"
    assert good["gpus"].startswith("1x NVIDIA") and good["driver"]
    assert good["model"] == "baidu/ERNIE-4.5-VL-28B-A3B-Paddle"


def test_smoke_passes_on_a_good_host_and_reports_a_broken_one(lab, fleet, inventory, home,
                                                              tmp_path: Path) -> None:
    good_xml = tmp_path / "good.xml"
    done = provision(home, "smoke", "-i", inventory, "--host", fleet[1].name,
                     "--junit", str(good_xml))
    assert done.returncode == 0, done.stdout + done.stderr
    root = ET.parse(good_xml).getroot()
    cases = root.findall(".//testcase")
    names = {c.get("name") for c in cases}
    assert {"facts", "verify health", "verify chat", "acceptance:probability",
            "acceptance:vision"} <= names
    assert root.get("failures") == "0" and all(c.find("failure") is None for c in cases)

    broken = lab.add_host("a100")
    lab.break_version("2.4.0", [broken.name])  # the lab inventory's line 2.4
    bad_xml = tmp_path / "bad.xml"
    done = provision(home, "smoke", "-i", str(lab.inventory()), "--host", broken.name,
                     "--junit", str(bad_xml))
    assert done.returncode == 1, done.stdout + done.stderr
    root = ET.parse(bad_xml).getroot()
    failures = [c for c in root.findall(".//testcase") if c.find("failure") is not None]
    assert [c.get("name") for c in failures] == ["verify health"]
    text = failures[0].find("failure").text
    assert "worker" in text.lower() and "journalctl" in text
    lab.remove_host(broken.name)
