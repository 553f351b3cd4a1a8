"""Fixtures of the lab's stand-in tests: GPU profiles as files, the built and served indexes,
venvs filled by real pip from them, a fake GPU host's environment, stand-in server processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from provision_lab import index as lab_index
from provision_lab import upstream
from provision_lab.profiles import NVIDIA_SMI_SOURCE, load_profiles, profile_as_json
from tests.lab.helpers import DEADLINE_S, free_ports, pip_env

PROFILES = load_profiles()


@pytest.fixture(scope="session")
def gpu_json(tmp_path_factory) -> dict[str, Path]:
    """Each profile as the JSON a lab host gets in /etc/provision-lab/gpu.json."""
    root = tmp_path_factory.mktemp("profiles")
    paths = {}
    for name, profile in PROFILES.items():
        paths[name] = root / f"{name}.json"
        paths[name].write_text(json.dumps(profile_as_json(profile)))
    return paths


@dataclass(frozen=True)
class Indexes:
    """The lab's two indexes, built into temp dirs and served on 127.0.0.1."""

    paddle_root: Path  # holds packages/stable/<index>/...
    general_root: Path
    extra: Path  # the general index's extra-wheels directory
    paddle_url: str  # .../packages/stable/
    general_url: str  # .../simple/

    def paddle(self, index: str) -> str:
        return f"{self.paddle_url}{index}/"


@pytest.fixture(scope="session")
def indexes(tmp_path_factory) -> Iterator[Indexes]:
    root = tmp_path_factory.mktemp("indexes")
    (root / "paddle" / "apt").mkdir(parents=True)
    (root / "paddle" / "apt" / "Release").write_text("kept\n")
    (root / "extra").mkdir()
    lab_index.build_index(root / "paddle")
    lab_index.build_general(root / "general")
    paddle = lab_index.make_index_server(root / "paddle", "127.0.0.1", 0)
    general = lab_index.make_general_server([root / "general" / "files", root / "extra"],
                                            "127.0.0.1", 0)
    for server in (paddle, general):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield Indexes(root / "paddle", root / "general", root / "extra",
                      f"http://127.0.0.1:{paddle.server_address[1]}/packages/stable/",
                      f"http://127.0.0.1:{general.server_address[1]}/simple/")
    finally:
        for server in (paddle, general):
            server.shutdown()
            server.server_close()


@pytest.fixture(scope="session")
def built_index(indexes) -> Path:
    return indexes.paddle_root


LAYOUTS = {
    # name: (paddle index, paddle version, fastdeploy index, fastdeploy version)
    "80_90": ("cu126", "3.3.0", "fastdeploy-gpu-80_90", "2.4.0"),
    "86_89": ("cu126", "3.3.0", "fastdeploy-gpu-86_89", "2.4.0"),
    "cu126": ("cu126", "3.3.1", "cu126", "2.5.0"),
    "cu129": ("cu129", "3.3.1", "cu129", "2.5.0"),
}


def pip(python: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Real pip of that venv, with no settings from this machine."""
    return subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-cache-dir", *args],
                          env=pip_env(), capture_output=True, text=True, timeout=300,
                          check=check)


def install(python: Path, idx: Indexes, paddle_index: str, paddle: str, fd_index: str,
            fd: str) -> None:
    """Paddle from its index alone; fastdeploy-gpu from its index with the general index for
    its dependencies. 2.5.0's cp310-only wheel is unpacked for Python 3.10 (pip refuses it on
    this Python, as it must), its dependencies installed as usual."""
    trusted = ["--trusted-host", "127.0.0.1"]
    pip(python, "-i", idx.paddle(paddle_index), *trusted, f"paddlepaddle-gpu=={paddle}")
    fd_args = ["-i", idx.paddle(fd_index), "--extra-index-url", idx.general_url, *trusted]
    if upstream.version_key(fd) < (2, 5, 0):
        pip(python, *fd_args, f"fastdeploy-gpu=={fd}")
        return
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], capture_output=True, text=True).stdout.strip()
    pip(python, *fd_args, "--no-deps", "--only-binary=:all:", "--python-version", "3.10",
        "--platform", "manylinux_2_28_x86_64", "--target", site, "--upgrade",
        f"fastdeploy-gpu=={fd}")
    pip(python, "-i", idx.general_url, *trusted, *upstream.fastdeploy_requires())


@pytest.fixture(scope="session")
def venvs(tmp_path_factory, indexes):
    """layout, or (fastdeploy index, version) -> python of a fresh venv holding those wheels."""
    made: dict = {}

    def make(layout) -> Path:
        if layout not in made:
            if isinstance(layout, tuple):
                fd_index, fd = layout
                paddle = upstream.paddle_for(fd)
                spec = ("cu126" if fd_index.startswith("fastdeploy") else fd_index, paddle,
                        fd_index, fd)
            else:
                spec = LAYOUTS[layout]
            venv = tmp_path_factory.mktemp("venv")
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            install(venv / "bin" / "python", indexes, *spec)
            made[layout] = venv / "bin" / "python"
        return made[layout]

    return make


@pytest.fixture
def gpu_host(tmp_path, gpu_json):
    """Environment of a fake GPU host: nvidia-smi on PATH, the lab's /etc, logs in a temp cwd."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "nvidia-smi"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} {NVIDIA_SMI_SOURCE} "$@"\n')
    wrapper.chmod(0o755)
    etc = tmp_path / "etc"
    etc.mkdir()

    def env(profile: str, **extra: str) -> dict:
        result = {**os.environ, "PROVISION_LAB_ETC": str(etc),
                  "FD_MODEL_CACHE": str(tmp_path / "models"), "PROVISION_LAB_LOAD_SECONDS": "1"}
        for key in ("FD_LOG_DIR", "FD_API_KEY", "PROVISION_LAB_BROKEN_VERSIONS",
                    "PROVISION_LAB_ANSWERS", "CUDA_VISIBLE_DEVICES"):
            result.pop(key, None)
        if profile == "nogpu":
            result.pop("PROVISION_LAB_GPU_JSON", None)
        else:
            result["PATH"] = f"{bin_dir}:{os.environ['PATH']}"
            result["PROVISION_LAB_GPU_JSON"] = str(gpu_json[profile])
        result.update(extra)
        return result

    env.etc = etc  # type: ignore[attr-defined]
    env.cwd = tmp_path  # type: ignore[attr-defined]
    return env


class Server:
    """One stand-in server process with its own ports; always killed at the end of a test."""

    def __init__(self, python: Path, env: dict, cwd: Path, *args: str) -> None:
        self.port, self.metrics_port, self.queue_port, self.cache_port = free_ports(4)
        self.cwd = cwd
        argv = [str(python), "-m", "fastdeploy.entrypoints.openai.api_server",
                "--model", "baidu/ERNIE-4.5-VL-28B-A3B-Paddle", "--host", "127.0.0.1",
                "--port", str(self.port), "--metrics-port", str(self.metrics_port),
                "--engine-worker-queue-port", str(self.queue_port),
                "--cache-queue-port", str(self.cache_port), "--max-model-len", "32768",
                "--max-num-seqs", "32", *args]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self, name: str) -> str:
        path = self.cwd / "log" / name
        return path.read_text() if path.exists() else ""

    def finish(self, timeout: float = DEADLINE_S) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def servers():
    started: list[Server] = []

    def start(*args, **kwargs) -> Server:
        server = Server(*args, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()

