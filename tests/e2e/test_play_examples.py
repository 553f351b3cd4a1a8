"""The example playbooks in playbooks/, each run by `provision play` on lab hosts.

- site.yml: a shared model directory mounted, the GPU exporter serving, fabric manager
  skipped on a one-GPU host, then the deployment verified; on the 8x A100 (NVSwitch)
  host the driver-matched fabric manager package cannot be installed (the lab's apt has
  none), so that host stops in play 1 and the server is never started there. A converged
  re-run changes nothing and costs at most 3 exec requests.
- fastdeploy.yml + rolling-reinstall.yml: the deployment, then a rolling reinstall to a
  version whose server never gets healthy: the first host fails its gate and is switched
  back (serving the old release), and max_fail_percentage 0 starts no further batch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAB_MOUNT = ("-e", "models_src=tmpfs", "-e", "models_fstype=tmpfs", "-e",
             "models_opts=size=1m", "-e", "gpu_persistence=false")


@pytest.fixture(scope="module")
def hosts(lab) -> Iterator[list]:
    booted = lab.add_hosts(["a100", "a100x8", "a100", "a100"])
    yield booted
    for host in booted:
        lab.remove_host(host.name)


def play(home: Path, *args: str) -> tuple[int, dict, str]:
    env = dict(os.environ, HOME=str(home), PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "provision.cli", "play", *args, "--json"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    return done.returncode, json.loads(done.stdout or "{}"), done.stderr


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as got:  # noqa: S310 - a lab address
        return got.status, got.read().decode()


def _steps(report: dict, host: str) -> dict:
    (entry,) = [h for h in report["hosts"] if h["host"] == host]
    return {s["name"]: s for s in entry["steps"]} | {"_": entry}


def test_site_playbook_mount_exporter_fabric_manager_then_deployment(lab, hosts, tmp_path):
    single, nvswitch = hosts[0], hosts[1]
    inventory = str(lab.inventory())
    limit = f"{single.name}:{nvswitch.name}"
    code, report, err = play(tmp_path, "playbooks/site.yml", "-i", inventory, "--limit", limit,
                             *LAB_MOUNT)
    assert code == 1, err  # the NVSwitch host failed its fabric manager

    board = _steps(report, nvswitch.name)
    assert board["nvidia_fabricmanager : fabric manager can be matched to the driver "
                 "(pre-flight)"]["status"] == "ok"
    installed = board["nvidia_fabricmanager : driver-matched fabric manager installed"]
    assert installed["status"] == "failed"
    assert installed["reason"] == "not installed: nvidia-fabricmanager-565"  # driver 565.57.01
    assert "gpu_exporter : exporter program" not in board  # nothing after the failure
    assert not (nvswitch.root / "etc/systemd/system/fastdeploy.service").exists()

    one = _steps(report, single.name)
    assert one["nvidia_fabricmanager : driver-matched fabric manager installed"][
        "reason"] == "when: nvswitch_board is false"
    assert one["verify chat"]["status"] == "ok"
    assert "tmpfs /srv/models tmpfs" in single.ssh("cat /proc/self/mounts").stdout
    status, metrics = _get(f"http://{single.address}:9835/metrics")
    assert status == 200 and "nvidia_smi_up 1" in metrics
    assert 'nvidia_smi_memory_total_bytes{uuid="GPU-' in metrics

    env = dict(os.environ, HOME=str(tmp_path), PYTHONPATH=str(ROOT))
    status = subprocess.run([sys.executable, "-m", "provision.cli", "status", "-i", inventory,
                             "--limit", single.name, "--json"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert json.loads(status.stdout)["hosts"][0]["exporter"] == "9835", status.stderr

    before = single.exec_request_count()
    code, again, err = play(tmp_path, "playbooks/site.yml", "-i", inventory, "--limit",
                            single.name, *LAB_MOUNT)
    assert code == 0, err
    assert again["recap"][single.name]["changed"] == 0, err
    used = single.exec_request_count() - before
    assert used <= 3, f"a converged site run cost {used} exec requests"


def test_rolling_reinstall_playbook_stops_at_the_first_failed_gate(lab, hosts, tmp_path):
    fleet = hosts[2:]
    inventory = str(lab.inventory())
    limit = ":".join(h.name for h in fleet)
    code, _, err = play(tmp_path, "playbooks/fastdeploy.yml", "-i", inventory, "--limit", limit,
                        "-e", "fastdeploy_version=2.3")
    assert code == 0, err
    untouched = fleet[1].exec_request_count()
    lab.break_version("2.4.0")
    try:
        code, report, err = play(tmp_path, "playbooks/rolling-reinstall.yml", "-i", inventory,
                                 "--limit", limit, "-e", "fastdeploy_version=2.4.0")
    finally:
        lab.mend()
    assert code == 1, err
    first = _steps(report, fleet[0].name)["_"]
    assert first["rolled_back"] and "rolled back to fastdeploy-2.3.4" in first["error"]
    assert _get(f"http://{fleet[0].address}:8180/health")[0] == 200
    assert fleet[0].ssh("readlink /opt/fastdeploy/venv").stdout.strip().endswith(
        first["old_release"])
    second = _steps(report, fleet[1].name)["_"]
    assert "not started" in second["error"] and "max_fail_percentage" in second["error"]
    assert fleet[1].exec_request_count() == untouched
