"""The far upstream on a booted lab host: a host without seeded weights gets them through the
lab's hub at its service's first start, counted for its address; the setting is kept for
other processes (`provision lab access`) and the index server runs with its rate."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from provision_lab import accounting, paths, upstream
from tests.lab.helpers import wait_until
from tests.lab.test_lab_vms import _wait_health

MB = accounting.MB
MODEL_DIR = "var/lib/fastdeploy/models/PaddlePaddle/ERNIE-4.5-VL-28B-A3B-Paddle"
UNIT = ("systemd-run --unit=fastdeploy-lab --property=Environment=FD_MODEL_CACHE="
        "/var/lib/fastdeploy/models --property=Environment=PYTHONPATH=/root/t "
        "--working-directory=/root python3 -m "
        "fastdeploy.entrypoints.openai.api_server --model baidu/ERNIE-4.5-VL-28B-A3B-Paddle "
        "--port 8180 --metrics-port 8181 --engine-worker-queue-port 8182 "
        "--cache-queue-port 8183")


def _install_quickly(host) -> None:
    """The two stand-in wheels and only the dependencies the server imports at start, pinned
    to the general index's stand-ins, in one pip run into a directory (the full dependency
    set in a venv is 100+ MB of real wheels and minutes here: other tests install it)."""
    started = upstream.imported_at_start()
    pins = [f"{name}=={version}" for name, version in map(
        upstream.requirement, upstream.fastdeploy_requires()) if name in started]
    script = (
        "set -e; mirror=$(sed -n 's/^index-url = //p' /etc/pip.conf); "
        "python3 -m pip -q install --no-deps --target /root/t "
        f"-i {paths.PADDLE_INDEX_URL}cu126/ "
        f"--extra-index-url {paths.PADDLE_INDEX_URL}fastdeploy-gpu-80_90/ "
        "--extra-index-url \"$mirror\" "
        f"paddlepaddle-gpu==3.3.0 fastdeploy-gpu==2.4.0 {' '.join(pins)}; "
        "printf '127.0.0.1 localhost %s\\n' \"$(hostname)\" > /etc/hosts")
    done = host.ssh(script, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def _hub_bytes_for(lab, mark: int, address: str) -> int:
    return lab.index_bytes(mark)["by_client"].get(address, 0)


def test_an_unseeded_host_pulls_its_weights_through_the_hub_at_first_start(lab) -> None:
    lab.set_upstream(weights_mb=2, rate_mbps=8)
    (host,) = lab.add_hosts(["a100"], seed_weights=False)
    try:
        assert host.read_file(f"/{paths.HOST_HUB_FILE}") == paths.HUB_URL + "\n"
        assert not (host.root / MODEL_DIR).exists()
        _install_quickly(host)
        mark = lab.index_mark()
        started = host.ssh(UNIT)
        assert started.returncode == 0, started.stderr
        assert _wait_health(host.address) == (200, ""), host.ssh(
            "journalctl -u fastdeploy-lab --no-pager | tail -20").stdout
        shard = host.root / MODEL_DIR / "model-00001-of-00001.safetensors"
        assert shard.stat().st_size == 2 * MB and (host.root / MODEL_DIR / "config.json").exists()
        got = wait_until(lambda: lab.index_bytes(mark))
        assert got["hub"] == got["total"] > 2 * MB
        assert got["by_client"] == {host.address: got["total"]}
        log = host.read_file("/root/log/console.log")
        assert "Downloading model baidu/ERNIE-4.5-VL-28B-A3B-Paddle (master)" in log

        # In another process: the same setting and the same counts.
        cli = str(Path(sys.executable).with_name("provision"))
        shown = subprocess.run([cli, "lab", "access", "--json", "--since", str(mark)],
                               capture_output=True, text=True, timeout=60)
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["by_client"][host.address] >= got["total"]
        other = subprocess.run([sys.executable, "-c", "from provision_lab.lab import Lab; "
                                "print(Lab().upstream.as_dict())"], capture_output=True,
                               text=True, timeout=60)
        assert other.stdout.strip() == str({"pad_mb": 0.0, "weights_mb": 2.0, "rate_mbps": 8.0})

        # A second start finds complete weights: nothing from the hub.
        again = lab.index_mark()
        assert host.ssh("systemctl restart fastdeploy-lab").returncode == 0
        assert _wait_health(host.address) == (200, "")
        assert _hub_bytes_for(lab, again, host.address) == 0

        # The running index server holds the rate: 2 MB at 8 MB/s.
        began = time.monotonic()
        with urllib.request.urlopen(f"{paths.HUB_URL}PaddlePaddle/ERNIE-4.5-0.3B-Paddle/"
                                    "model-00001-of-00001.safetensors", timeout=30) as r:
            assert len(r.read()) == 2 * MB
        assert time.monotonic() - began >= 0.2
    finally:
        lab.remove_host(host.name)
        lab.set_upstream()
    assert lab.upstream.as_dict() == {"pad_mb": 0.0, "weights_mb": 1.0, "rate_mbps": 0.0}
