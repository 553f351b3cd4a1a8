"""The lab as a far upstream (issue 12): what its index server sends is counted per client,
one rate limit holds for all its ports together, its wheels can be padded to a size that
matters, and its model hub serves weights the stand-in server downloads at start, resumably.

Real HTTP servers (the lab's own, on 127.0.0.1), real pip, real stand-in server processes.
Sizes are small (MB) so the suite stays fast; the rates are scaled to match.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from provision_lab import accounting, hub
from provision_lab import index as lab_index
from tests.lab.conftest import pip
from tests.lab.helpers import pip_env, port_open, wait_until
from tests.lab.test_releases import VL

MB = accounting.MB
PAD_MB = 2
VL_CACHE = Path("PaddlePaddle") / "ERNIE-4.5-VL-28B-A3B-Paddle"


class Upstream:
    """The lab's servers in this process under one access log and one bucket."""

    def __init__(self, log: Path, rate_mbps: float = 0.0) -> None:
        self.log = accounting.AccessLog(log)
        self.bucket = accounting.TokenBucket(rate_mbps * MB)
        self.servers: list = []

    def add(self, server, kind: str) -> str:
        accounting.meter(server, kind, self.log, self.bucket)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    def totals(self, since: int = 0) -> dict:
        return accounting.totals(self.log.path, since)

    def entries(self) -> list[dict]:
        if not self.log.path.exists():
            return []
        return [json.loads(line) for line in self.log.path.read_text().splitlines()]

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()


@pytest.fixture
def upstream(tmp_path):
    made: list[Upstream] = []

    def make(rate_mbps: float = 0.0) -> Upstream:
        made.append(Upstream(tmp_path / f"access-{len(made)}.jsonl", rate_mbps))
        return made[-1]

    yield make
    for one in made:
        one.close()


@pytest.fixture(scope="module")
def padded(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("padded")
    lab_index.build_index(root, pad_mb=PAD_MB)
    return root


def _get(url: str, headers: dict | None = None) -> bytes:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read()


# ----------------------------------------------------------------------------- padded wheels


def test_padding_is_incompressible_reproducible_and_cached(padded, tmp_path) -> None:
    stable = padded / "packages" / "stable"
    paddle = stable / "cu126" / "paddlepaddle-gpu" / (
        "paddlepaddle_gpu-3.3.0-cp311-cp311-linux_x86_64.whl")
    fastdeploy = stable / "fastdeploy-gpu-80_90" / "fastdeploy-gpu" / (
        "fastdeploy_gpu-2.4.0-py3-none-any.whl")
    other_python = paddle.with_name("paddlepaddle_gpu-3.3.0-cp310-cp310-linux_x86_64.whl")
    assert PAD_MB * MB < paddle.stat().st_size < PAD_MB * MB + 100_000  # stored, not deflated
    assert PAD_MB * MB / 4 < fastdeploy.stat().st_size < PAD_MB * MB / 4 + 100_000
    assert other_python.stat().st_size < 100_000  # no lab host installs it: left small
    digest = hashlib.sha256(paddle.read_bytes()).hexdigest()
    stamp = (padded / lab_index.STAMP).stat().st_mtime_ns
    lab_index.build_index(padded, pad_mb=PAD_MB)  # nothing changed: no rebuild
    assert (padded / lab_index.STAMP).stat().st_mtime_ns == stamp
    lab_index.build_index(tmp_path, pad_mb=PAD_MB)  # elsewhere: byte for byte the same
    again = tmp_path / paddle.relative_to(padded)
    assert hashlib.sha256(again.read_bytes()).hexdigest() == digest


def test_accounting_counts_the_bytes_of_a_pip_install_from_the_padded_index(
        padded, upstream, venvs, tmp_path) -> None:
    served = upstream()
    url = served.add(lab_index.make_index_server(padded, "127.0.0.1", 0), "paddle")
    python, target = venvs("80_90"), tmp_path / "target"  # a venv the other tests made
    pip(python, "--target", str(target), "-i", f"{url}packages/stable/cu126/",
        "--trusted-host", "127.0.0.1", "paddlepaddle-gpu==3.3.0")
    wheel = "paddlepaddle_gpu-3.3.0-cp311-cp311-linux_x86_64.whl"
    files = {p.name: p.stat().st_size for p in padded.rglob("*.whl")}
    pages = {"/" + str(p.relative_to(padded)): p.stat().st_size
             for p in padded.rglob("index.html")}
    entries = wait_until(lambda: [e for e in served.entries() if e["path"].endswith(wheel)])
    assert [e["bytes"] for e in entries] == [files[wheel]]
    for entry in served.entries():  # every response counted as the file it sent
        name = entry["path"].rsplit("/", 1)[-1]
        assert entry["bytes"] == (files.get(name) or pages[entry["path"] + "index.html"])
    totals = served.totals()
    assert totals["paddle"] == totals["total"] == totals["by_client"]["127.0.0.1"]
    assert totals["total"] == sum(e["bytes"] for e in served.entries()) > PAD_MB * MB
    check = subprocess.run([str(python), "-c", "import paddle, os; print(paddle.__version__, "
                            "os.path.getsize(os.path.join(os.path.dirname(paddle.__file__), "
                            f"'{lab_index.PAD_FILE}')))"], capture_output=True, text=True,
                           env=pip_env(PYTHONPATH=str(target)))
    assert check.stdout.split() == ["3.3.0", str(PAD_MB * MB)], check.stderr


def test_a_client_that_hangs_up_counts_what_it_was_sent(upstream) -> None:
    served = upstream(rate_mbps=4)
    url = served.add(index_hub(4), "hub")
    with urllib.request.urlopen(f"{url}{VL_CACHE}/model-00001-of-00001.safetensors",
                                timeout=30) as response:
        got = len(response.read(MB))
    entries = wait_until(served.entries)
    assert got == MB and MB <= entries[0]["bytes"] < 3 * MB  # not the 4 MB it asked for


def index_hub(weights_mb: float):
    return lab_index.make_hub_server("127.0.0.1", 0, weights_mb)


# ----------------------------------------------------------------------------- the rate limit


def _timed_get(url: str, out: dict, key: str) -> None:
    started = time.monotonic()
    out[key] = (len(_get(url)), time.monotonic() - started)


def test_one_rate_for_every_port_and_client_together(upstream) -> None:
    served = upstream(rate_mbps=10)
    shard = "PaddlePaddle/ERNIE-4.5-0.3B-Paddle/model-00001-of-00001.safetensors"
    first, second = served.add(index_hub(10), "hub"), served.add(index_hub(10), "paddle")
    alone: dict = {}
    _timed_get(first + shard, alone, "a")
    assert alone["a"][0] == 10 * MB and 0.9 <= alone["a"][1] < 3.0, alone
    both: dict = {}
    threads = [threading.Thread(target=_timed_get, args=(url + shard, both, url))
               for url in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # 20 MB at 10 MB/s, across two ports: neither gets the rate to itself
    assert all(size == 10 * MB and seconds >= 1.8 for size, seconds in both.values()), both


def test_the_bucket_is_unlimited_at_zero_and_exact_when_set() -> None:
    free = accounting.TokenBucket(0)
    started = time.monotonic()
    for _ in range(1000):
        free.take(MB)
    assert time.monotonic() - started < 0.5
    limited = accounting.TokenBucket(50 * MB)
    started = time.monotonic()
    for _ in range(100):
        limited.take(MB // 10)  # 10 MB at 50 MB/s, the first 2.5 MB (its 50 ms burst) at once
    assert 0.14 <= time.monotonic() - started < 0.6


# ----------------------------------------------------------------------------- the hub


def _hub_env(gpu_host, hub_url: str, **extra: str) -> dict:
    return gpu_host("a100", PROVISION_LAB_LOAD_SECONDS="0.2", PROVISION_LAB_HUB_URL=hub_url,
                    **extra)


def _verified(local: Path, manifest: dict) -> bool:
    return all(hashlib.sha256((local / f["name"]).read_bytes()).hexdigest() == f["sha256"]
               for f in manifest["files"])


def test_the_stand_in_downloads_absent_weights_from_the_hub_before_any_port_opens(
        venvs, gpu_host, servers, upstream) -> None:
    served = upstream(rate_mbps=4)
    url = served.add(index_hub(2), "hub")
    server = servers(venvs("80_90"), _hub_env(gpu_host, url), gpu_host.cwd)
    local = gpu_host.cwd / "models" / VL_CACHE
    wait_until(lambda: list(local.glob("*.part")) or server.proc.poll() is not None)
    assert not port_open(server.port) and not (local / "config.json").exists()  # downloading
    wait_until(lambda: port_open(server.port) or server.proc.poll() is not None)
    assert server.proc.poll() is None, server.finish()
    manifest = hub.manifest(str(VL_CACHE), 2)
    assert sorted(p.name for p in local.iterdir()) == sorted(f["name"] for f in manifest["files"])
    assert _verified(local, manifest)
    log = server.log("console.log")
    assert f"Downloading model {VL} (master) to {local}" in log
    assert f"Downloaded {VL_CACHE}: {2 * MB + manifest['files'][-1]['size']} bytes" in log
    assert served.totals()["hub"] > 2 * MB


def test_the_stand_in_resumes_a_partial_download(venvs, gpu_host, servers, upstream) -> None:
    served = upstream()
    url = served.add(index_hub(2), "hub")
    local = gpu_host.cwd / "models" / VL_CACHE
    local.mkdir(parents=True)
    shard = "model-00001-of-00001.safetensors"
    (local / f"{shard}.part").write_bytes(b"".join(hub.shard_bytes(shard, 2, 2 * MB))[:MB + 7])
    server = servers(venvs("80_90"), _hub_env(gpu_host, url), gpu_host.cwd)
    wait_until(lambda: port_open(server.port) or server.proc.poll() is not None)
    assert server.proc.poll() is None, server.finish()
    assert f"Resuming {shard} at {MB + 7} of {2 * MB} bytes" in server.log("console.log")
    assert _verified(local, hub.manifest(str(VL_CACHE), 2))
    fetched = [e["bytes"] for e in served.entries() if e["path"].endswith(shard)]
    assert fetched == [MB - 7]


def test_a_corrupt_partial_is_never_taken_for_weights(venvs, gpu_host, servers,
                                                      upstream) -> None:
    served = upstream()
    url = served.add(index_hub(1), "hub")
    local = gpu_host.cwd / "models" / VL_CACHE
    local.mkdir(parents=True)
    shard = "model-00001-of-00001.safetensors"
    (local / f"{shard}.part").write_bytes(b"\0" * 1000)  # not the hub's bytes
    code, out, err = servers(venvs("80_90"), _hub_env(gpu_host, url), gpu_host.cwd).finish()
    assert code != 0 and "differs from the hub's manifest" in out + err
    assert sorted(p.name for p in local.iterdir()) == []  # removed; no config.json
    server = servers(venvs("80_90"), _hub_env(gpu_host, url), gpu_host.cwd)  # starts over
    wait_until(lambda: port_open(server.port) or server.proc.poll() is not None)
    assert server.proc.poll() is None, server.finish()
    assert _verified(local, hub.manifest(str(VL_CACHE), 1))


def test_seeded_weights_download_nothing_and_an_unknown_model_fails_as_upstream(
        venvs, gpu_host, servers, upstream) -> None:
    served = upstream()
    url = served.add(index_hub(1), "hub")
    seeded = gpu_host.cwd / "models" / VL_CACHE
    seeded.mkdir(parents=True)
    (seeded / "config.json").write_text('{"architectures": ["stand-in"]}\n')
    server = servers(venvs("80_90"), _hub_env(gpu_host, url), gpu_host.cwd)
    wait_until(lambda: port_open(server.port) or server.proc.poll() is not None)
    assert server.proc.poll() is None, server.finish()
    assert served.totals()["total"] == 0 and not served.log.path.exists()
    code, out, err = servers(venvs("80_90"), _hub_env(gpu_host, url), gpu_host.cwd,
                             "--model", "baidu/not-a-model").finish()
    assert code != 0
    assert "The master of baidu/not-a-model is not exist. Please check the model name or " \
        "revision." in out + err


# ----------------------------------------------------------------------------- the knobs


@pytest.mark.parametrize("bad", [-1, "fast", float("nan"), float("inf")])
def test_a_bad_knob_is_refused_naming_it(bad) -> None:
    from provision_lab import far_upstream
    from provision_lab.system import LabError

    with pytest.raises(LabError, match=r"upstream rate_mbps=.*use a number >= 0"):
        far_upstream.checked(0, 1, bad)
    assert far_upstream.checked(3, 0.5, 40) == far_upstream.UpstreamSetting(3.0, 0.5, 40.0)
