"""The lab's stand-ins, exercised here without VMs: nvidia-smi, the wheels, the index, the server.

Every stand-in runs for real: nvidia-smi as a subprocess, the wheels installed by real pip
into real venvs from the index served over HTTP on 127.0.0.1, the server as a process whose
ports are probed. Only the GPU is pretended, through PROVISION_LAB_GPU_JSON and an
`nvidia-smi` on PATH, exactly as on a lab host.
"""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from provision_lab import index as lab_index
from provision_lab import upstream
from provision_lab.profiles import (
    NVIDIA_SMI_SOURCE,
    get_profile,
    install_profile,
    load_profiles,
    profile_as_json,
)
from tests.lab.conftest import LAYOUTS
from tests.lab.helpers import DEADLINE_S, http, port_open, wait_until

STANDINS = NVIDIA_SMI_SOURCE.parent
PROFILES = load_profiles()
SMI_PROFILES = [n for n, p in PROFILES.items() if p.has_nvidia_smi and not p.error]
FD_WHEEL = "fastdeploy_gpu-{}-py3-none-any.whl"
STABLE = Path("packages/stable")

def smi(gpu_json_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PROVISION_LAB_GPU_JSON": str(gpu_json_path)}
    return subprocess.run([sys.executable, str(NVIDIA_SMI_SOURCE), *args], env=env,
                          capture_output=True, text=True, timeout=DEADLINE_S)


def parse_table(text: str) -> dict:
    """What a facts parser would take from the plain table (regexes, never column offsets)."""
    rows = re.findall(r"^\|\s+(\d+)\s+(.+?)\s+(?:On|Off)\s+\|\s+([0-9A-F:.]+)\s", text, re.M)
    memory = re.findall(r"(\d+)MiB /\s*(\d+)MiB", text)
    return {
        "driver": re.search(r"Driver Version:\s*(\S+)", text).group(1),
        "cuda": re.search(r"CUDA Version:\s*(\S+)", text).group(1),
        "gpus": [(int(i), name, bus) for i, name, bus in rows],
        "memory": [(int(used), int(total)) for used, total in memory],
    }


def parse_csv(text: str, header: bool) -> tuple[list[str], list[list[str]]]:
    lines = [line for line in text.splitlines() if line]
    head = lines[0].split(", ") if header else []
    return head, [line.split(", ") for line in lines[1 if header else 0:]]


# ----------------------------------------------------------------------------- profiles


def test_every_brief_profile_exists_with_its_gpu():
    expected = {
        "a100": ("NVIDIA A100-SXM4-80GB", "8.0", 81920, 1),
        "h100": ("NVIDIA H100 80GB HBM3", "9.0", 81559, 1),
        "a10": ("NVIDIA A10", "8.6", 23028, 1),
        "l40s": ("NVIDIA L40S", "8.9", 46068, 1),
        "rtx4090": ("NVIDIA GeForce RTX 4090", "8.9", 24564, 1),
        "t4": ("Tesla T4", "7.5", 15360, 1),
        "a100x8": ("NVIDIA A100-SXM4-80GB", "8.0", 81920, 8),
    }
    for name, (gpu, cap, mib, count) in expected.items():
        profile = get_profile(name)
        assert len(profile.gpus) == count, name
        assert {(g.name, g.compute_cap, g.memory_total_mib) for g in profile.gpus} == {
            (gpu, cap, mib)}, name
    assert get_profile("olddriver").driver_version.startswith("470.")
    assert get_profile("olddriver").cuda_version == "11.4"
    assert not get_profile("nogpu").has_nvidia_smi


def test_cuda_builds_run_on_r535_but_not_on_r470():
    """NVIDIA's minor version compatibility (the lab's recorded reading, C4): every CUDA 12.x
    build runs on R535 (the r535 and t4 profiles); the 470 driver runs none."""

    def driver(name):
        return tuple(map(int, get_profile(name).driver_version.split(".")))

    for cuda in ("12.6", "12.9"):
        minimum = tuple(map(int, upstream.min_driver(cuda).split(".")))
        assert driver("r535") >= minimum and driver("t4") >= minimum
        assert driver("olddriver") < minimum
    assert (get_profile("r535").driver_version, get_profile("r535").cuda_version) == (
        "535.216.01", "12.2")
    assert get_profile("r535").gpus[0].name == "NVIDIA A100-SXM4-80GB"


def test_inventory_names_the_paddle_index_a_line_and_no_extra_index(tmp_path):
    """Dependencies come from the hosts' own pip configuration (the site mirror)."""
    import yaml

    from provision_lab import paths
    from provision_lab.lab import Lab
    from provision_lab.machine import LabHost

    lab = Lab.__new__(Lab)
    lab.hosts = {"gpu1": LabHost("gpu1", 1, "10.213.7.11", "r535")}
    data = yaml.safe_load(lab.inventory(tmp_path / "inventory.yml").read_text())["all"]
    assert data["vars"]["package_index_url"] == paths.PADDLE_INDEX_URL
    assert paths.PADDLE_INDEX_URL.endswith(":8700/packages/stable/")
    assert data["vars"]["fastdeploy_version"] == "2.4"
    assert "pip_extra_index_url" not in data["vars"]
    assert data["children"]["r535"]["hosts"] == {"gpu1": None}


def test_gpu_uuids_are_stable_and_unique():
    uuids = [g.uuid for p in PROFILES.values() for g in p.gpus]
    assert len(uuids) == len(set(uuids))
    assert all(re.fullmatch(r"GPU-[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", u) for u in uuids)
    load_profiles.cache_clear()
    assert [g.uuid for p in load_profiles().values() for g in p.gpus] == uuids


def test_unknown_profile_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"'a200'.*a100, h100"):
        get_profile("a200")


def test_install_profile_writes_and_removes_the_host_files(tmp_path):
    install_profile(tmp_path, get_profile("a10"))
    smi_path = tmp_path / "usr/bin/nvidia-smi"
    assert smi_path.stat().st_mode & 0o777 == 0o755
    assert json.loads((tmp_path / "etc/provision-lab/gpu.json").read_text())["name"] == "a10"
    env = {**os.environ, "PROVISION_LAB_ETC": str(tmp_path / "etc/provision-lab")}
    env.pop("PROVISION_LAB_GPU_JSON", None)
    out = subprocess.run([sys.executable, str(smi_path), "-L"], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert out.startswith("GPU 0: NVIDIA A10 (UUID: GPU-")
    install_profile(tmp_path, get_profile("nogpu"))
    assert not smi_path.exists()
    assert not (tmp_path / "etc/provision-lab/gpu.json").exists()


def test_standins_parse_on_python_3_9():
    """Hosts may run Python 3.9-3.12: no syntax newer than 3.9 in anything installed there."""
    sources = sorted(STANDINS.rglob("*.py"))
    assert len(sources) > 10
    for path in sources:
        ast.parse(path.read_text(), filename=str(path), feature_version=(3, 9))


# ----------------------------------------------------------------------------- nvidia-smi


@pytest.mark.parametrize("name", SMI_PROFILES)
def test_table_reports_the_profile(gpu_json, name):
    profile = PROFILES[name]
    result = smi(gpu_json[name])
    assert result.returncode == 0, result.stdout
    table = parse_table(result.stdout)
    assert (table["driver"], table["cuda"]) == (profile.driver_version, profile.cuda_version)
    assert [(i, bus) for i, _, bus in table["gpus"]] == [(g.index, g.bus_id) for g in profile.gpus]
    assert table["memory"] == [(g.memory_used_mib, g.memory_total_mib) for g in profile.gpus]
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4} {7}", lines[0])
    boxed = [line for line in lines[1:] if line.strip()]
    assert len({len(line) for line in boxed}) == 1  # every box line has the same width
    assert "No running processes found" in result.stdout


# Real outputs (nvidia-smi-samples.md §1.2, §1.6, §1.3), without the timestamp line; the
# h100, t4 and l40s profiles carry the same values, so the stand-in must print these bytes.
REAL_H100_590 = """\
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 590.48.01              Driver Version: 590.48.01      CUDA Version: 13.1     |
+-----------------------------------------+------------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |
| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |
|                                         |                        |               MIG M. |
|=========================================+========================+======================|
|   0  NVIDIA H100 80GB HBM3          On  |   00000000:00:09.0 Off |                    0 |
| N/A   41C    P0             69W /  700W |       0MiB /  81559MiB |      0%      Default |
|                                         |                        |             Disabled |
+-----------------------------------------+------------------------+----------------------+

+-----------------------------------------------------------------------------------------+
| Processes:                                                                              |
|  GPU   GI   CI              PID   Type   Process name                        GPU Memory |
|        ID   ID                                                               Usage      |
|=========================================================================================|
|  No running processes found                                                             |
+-----------------------------------------------------------------------------------------+
"""
REAL_T4_535 = """\
+---------------------------------------------------------------------------------------+
| NVIDIA-SMI 535.104.05             Driver Version: 535.104.05   CUDA Version: 12.2     |
|-----------------------------------------+----------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id        Disp.A | Volatile Uncorr. ECC |
| Fan  Temp   Perf          Pwr:Usage/Cap |         Memory-Usage | GPU-Util  Compute M. |
|                                         |                      |               MIG M. |
|=========================================+======================+======================|
|   0  Tesla T4                       On  | 00000000:00:1E.0 Off |                    0 |
| N/A   26C    P8               9W /  70W |      2MiB / 15360MiB |      0%      Default |
|                                         |                      |                  N/A |
+-----------------------------------------+----------------------+----------------------+
""" + " " * 89 + """
+---------------------------------------------------------------------------------------+
| Processes:                                                                            |
|  GPU   GI   CI        PID   Type   Process name                            GPU Memory |
|        ID   ID                                                             Usage      |
|=======================================================================================|
|  No running processes found                                                           |
+---------------------------------------------------------------------------------------+
"""
REAL_L40S_550_HEAD = """\
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 550.127.05             Driver Version: 550.127.05     CUDA Version: 12.4     |
|-----------------------------------------+------------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |
| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |
|                                         |                        |               MIG M. |
|=========================================+========================+======================|
|   0  NVIDIA L40S                    On  |   00000000:A1:00.0 Off |                    0 |
| N/A   31C    P8             33W /  350W |       1MiB /  46068MiB |      0%      Default |
|                                         |                        |                  N/A |
+-----------------------------------------+------------------------+----------------------+
"""


@pytest.mark.parametrize("name, real", [("h100", REAL_H100_590), ("t4", REAL_T4_535),
                                        ("l40s", REAL_L40S_550_HEAD)])
def test_table_is_byte_identical_to_a_real_capture(gpu_json, name, real):
    out = smi(gpu_json[name]).stdout
    body = out.split("\n", 1)[1]
    assert body[: len(real)] == real


def test_old_driver_uses_the_79_column_layout(gpu_json):
    out = smi(gpu_json["olddriver"]).stdout
    assert "| NVIDIA-SMI 470.182.03   Driver Version: 470.182.03   CUDA Version: 11.4     |" in out
    assert "|   0  NVIDIA A100-SXM...  On   | 00000000:07:00.0 Off |" in out


@pytest.mark.parametrize("name", SMI_PROFILES)
def test_list_gpus(gpu_json, name):
    result = smi(gpu_json[name], "-L")
    assert result.returncode == 0
    found = re.findall(r"^GPU (\d+): (.+) \(UUID: (GPU-[0-9a-f-]+)\)$", result.stdout, re.M)
    assert [(int(i), n, u) for i, n, u in found] == [
        (g.index, g.name, g.uuid) for g in PROFILES[name].gpus]


@pytest.mark.parametrize("name", [n for n in SMI_PROFILES if n != "olddriver"])
def test_query_gpu_csv_variants(gpu_json, name):
    profile = PROFILES[name]
    fields = ("index,name,uuid,compute_cap,memory.total,memory.used,memory.free,"
              "driver_version,count,pci.bus_id")
    result = smi(gpu_json[name], f"--query-gpu={fields}", "--format=csv")
    assert result.returncode == 0, result.stdout
    head, rows = parse_csv(result.stdout, header=True)
    assert head == ["index", "name", "uuid", "compute_cap", "memory.total [MiB]",
                    "memory.used [MiB]", "memory.free [MiB]", "driver_version", "count",
                    "pci.bus_id"]
    assert rows == [[str(g.index), g.name, g.uuid, g.compute_cap, f"{g.memory_total_mib} MiB",
                     f"{g.memory_used_mib} MiB", f"{g.memory_total_mib - g.memory_used_mib} MiB",
                     profile.driver_version, str(len(profile.gpus)), g.bus_id]
                    for g in profile.gpus]
    bare = smi(gpu_json[name], "--query-gpu=index,compute_cap,memory.total",
               "--format=csv,noheader,nounits")
    _, rows = parse_csv(bare.stdout, header=False)
    assert [(int(i), float(cap), int(mib)) for i, cap, mib in rows] == [
        (g.index, float(g.compute_cap), g.memory_total_mib) for g in profile.gpus]
    noheader = smi(gpu_json[name], "--query-gpu", "memory.total", "--format", "csv,noheader")
    assert noheader.stdout.splitlines()[0] == f"{profile.gpus[0].memory_total_mib} MiB"


def test_query_selects_gpus_with_id(gpu_json):
    out = smi(gpu_json["a100x8"], "--query-gpu=index,pci.bus_id", "--format=csv,noheader",
              "-i", "3").stdout
    assert out == "3, 00000000:5D:00.0\n"
    out = smi(gpu_json["a100x8"], "--id=1,6", "--query-gpu=index", "--format=csv,noheader").stdout
    assert out.split() == ["1", "6"]
    missing = smi(gpu_json["a100"], "-i", "4", "-L")
    assert (missing.returncode, missing.stdout) == (6, "No devices were found\n")


@pytest.mark.parametrize("args, code, message", [
    (["--query-gpu=index,id", "--format=csv"], 2, 'Field "id" is not a valid field to query.'),
    (["--query-gpu=index"], 2, "Invalid combination of input arguments."),
    (["--bogus"], 2, "Invalid combination of input arguments."),
    (["--query-gpu=index", "--format=json"], 2, '"json" is not a valid format.'),
])
def test_bad_arguments_fail_like_the_real_one(gpu_json, args, code, message):
    result = smi(gpu_json["a100"], *args)
    assert result.returncode == code
    assert result.stdout.startswith(message)


def test_old_driver_rejects_compute_cap(gpu_json):
    result = smi(gpu_json["olddriver"], "--query-gpu=compute_cap", "--format=csv")
    assert (result.returncode, result.stdout) == (
        2, 'Field "compute_cap" is not a valid field to query.\n')
    ok = smi(gpu_json["olddriver"], "--query-gpu=driver_version,name", "--format=csv,noheader")
    assert ok.stdout == "470.182.03, NVIDIA A100-SXM4-80GB\n"


def test_driver_not_loaded_fails_with_exit_9(gpu_json, tmp_path):
    for path in (gpu_json["brokendriver"], tmp_path / "missing.json"):
        for args in ([], ["-L"], ["--query-gpu=name", "--format=csv"]):
            result = smi(path, *args)
            assert result.returncode == 9
            assert "couldn't communicate with the NVIDIA driver" in result.stdout


# ----------------------------------------------------------------------------- index


def _listed(built_index: Path, index: str, project: str) -> list[str]:
    return sorted(p.name for p in (built_index / STABLE / index / project).glob("*.whl"))


def test_index_lists_exactly_the_recorded_upstream_files(built_index):
    """Every index path, project, version and tag as upstream/paddle_indexes.yaml records it."""
    recorded = upstream.listed_files()
    assert {f.index for f in recorded} == {"cu126", "cu129", "fastdeploy-gpu-80_90",
                                           "fastdeploy-gpu-86_89"}
    for index, entry in upstream.paddle_indexes().items():
        assert entry["source"].strip()
        for project in entry["files"]:
            want = sorted(f.filename for f in recorded if (f.index, f.project) == (index, project))
            assert _listed(built_index, index, project) == want
    assert _listed(built_index, "cu126", "fastdeploy-gpu") == [
        "fastdeploy_gpu-2.5.0-cp310-cp310-manylinux_2_28_x86_64.whl"]
    sm = _listed(built_index, "fastdeploy-gpu-86_89", "fastdeploy-gpu")
    assert FD_WHEEL.format("2.0.0") in sm and FD_WHEEL.format("2.3.4") in sm
    assert FD_WHEEL.format("2.3.0rc0") in sm and FD_WHEEL.format("2.4.0") == sm[-1]
    assert "paddlepaddle_gpu-3.3.1-cp311-cp311-linux_x86_64.whl" in _listed(
        built_index, "cu129", "paddlepaddle-gpu")
    root_page = (built_index / STABLE / "cu126" / "index.html").read_text()
    assert 'href="fastdeploy-gpu/"' in root_page and 'href="paddlepaddle-gpu/"' in root_page
    assert 'href="numpy/"' in root_page  # paddle's own dependencies are on every Paddle index
    assert 'href="fastapi/"' not in root_page  # fastdeploy's are not (C1)


def test_served_pages_match_the_recorded_listing(indexes):
    for index, entry in upstream.paddle_indexes().items():
        for project in entry["files"]:
            status, _, body = http(f"{indexes.paddle(index)}{project}/")
            served = sorted(re.findall(r">([^<]+\.whl)<", body.decode()))
            want = sorted(f.filename for f in upstream.listed_files()
                          if (f.index, f.project) == (index, project))
            assert (status, served) == (200, want)


def test_project_pages_carry_the_wheels_sha256(built_index):
    import hashlib

    folder = built_index / STABLE / "fastdeploy-gpu-86_89" / "fastdeploy-gpu"
    links = re.findall(r'href="([^"#]+)#sha256=([0-9a-f]{64})"',
                       (folder / "index.html").read_text())
    assert len(links) >= 15
    for name, digest in links:
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest


def test_wheels_embed_their_build_facts(built_index):
    whl = (built_index / STABLE / "cu129" / "paddlepaddle-gpu"
           / "paddlepaddle_gpu-3.3.1-cp311-cp311-linux_x86_64.whl")
    with zipfile.ZipFile(whl) as zf:
        info = json.loads(zf.read("paddle/_lab_build.json"))
        record = zf.read("paddlepaddle_gpu-3.3.1.dist-info/RECORD").decode()
        wheel = zf.read("paddlepaddle_gpu-3.3.1.dist-info/WHEEL").decode()
    assert (info["cuda"], info["min_driver"]) == ("12.9", "525.60.13")
    assert "paddle/jit/marker.py,sha256=" in record
    assert "Tag: cp311-cp311-linux_x86_64" in wheel
    whl = (built_index / STABLE / "fastdeploy-gpu-86_89" / "fastdeploy-gpu"
           / FD_WHEEL.format("2.4.0"))
    with zipfile.ZipFile(whl) as zf:
        info = json.loads(zf.read("fastdeploy/_lab_build.json"))
        version_txt = zf.read("fastdeploy/version.txt").decode()
        metadata = zf.read("fastdeploy_gpu-2.4.0.dist-info/METADATA").decode()
    assert (info["sms"], info["paddle_version"]) == ([86, 89], "3.3.0")
    assert "Paddle version: 3.3.0" in version_txt
    requires = re.findall(r"^Requires-Dist: (.+)$", metadata, re.M)
    assert "uvicorn==0.29.0" in requires and "paddleformers" in requires
    assert requires == upstream.fastdeploy_requires()


def test_build_is_idempotent_reproducible_and_leaves_other_dirs(built_index):
    stamp = built_index / lab_index.STAMP
    page = built_index / STABLE / "cu126" / "paddlepaddle-gpu" / "index.html"
    before = (stamp.stat().st_mtime_ns, page.read_text())
    lab_index.build_index(built_index)
    assert (stamp.stat().st_mtime_ns, page.read_text()) == before  # up to date: untouched
    stamp.unlink()
    lab_index.build_index(built_index)  # forced rebuild: same bytes, same hashes
    assert page.read_text() == before[1]
    assert (built_index / "apt" / "Release").read_text() == "kept\n"


def test_index_server_serves_files_only_inside_its_root(indexes, built_index, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("outside")
    (built_index / "apt" / "escape").symlink_to(secret)
    base = indexes.paddle_url.split("/packages/")[0]
    status, _, body = http(f"{indexes.paddle('cu126')}paddlepaddle-gpu/")
    assert status == 200 and b"paddlepaddle_gpu-3.3.1-cp311-cp311-linux_x86_64.whl#sha256=" in body
    assert http(f"{base}/apt/Release")[0] == 200
    assert http(f"{base}/apt/escape")[0] == 404
    assert http(f"{base}/apt/")[0] == 404  # no directory listings
    with socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1]))) as s:
        s.sendall(b"GET /../../../etc/passwd HTTP/1.0\r\n\r\n")
        assert s.recv(64).startswith(b"HTTP/1.0 404")


# ----------------------------------------------------------------------------- venvs


@pytest.mark.parametrize("layout", LAYOUTS)
def test_pip_installs_each_layout_from_the_served_index(venvs, gpu_host, layout):
    paddle_index, paddle, _, fd = LAYOUTS[layout]
    code = ("import json, paddle, fastdeploy, fastdeploy._lab as lab;"
            "print(json.dumps([paddle.__version__, paddle.version.cuda(), fastdeploy.__version__,"
            " lab.build()['sms'], paddle.is_compiled_with_cuda()]))")
    out = subprocess.run([str(venvs(layout)), "-c", code], env=gpu_host("h100"),
                         capture_output=True, text=True, check=True).stdout
    cuda = {"cu126": "12.6", "cu129": "12.9"}[paddle_index]
    sms = {"80_90": [80, 90], "86_89": [86, 89]}.get(layout, [80, 86, 89, 90])
    assert json.loads(out) == [paddle, cuda, fd, sms, True]


def paddle_check(python: Path, env: dict) -> subprocess.CompletedProcess:
    code = ("import paddle; from paddle.jit.marker import unified;"
            "print('device', paddle.device.get_device()); paddle.utils.run_check()")
    return subprocess.run([str(python), "-c", code], env=env, capture_output=True, text=True,
                          timeout=DEADLINE_S)


@pytest.mark.parametrize("layout, profile, gpus", [("80_90", "a100", 1), ("80_90", "a100x8", 8),
                                                   ("cu129", "h100", 1), ("cu126", "r535", 1),
                                                   ("cu129", "r535", 1)])
def test_run_check_succeeds_where_the_driver_is_new_enough(venvs, gpu_host, layout, profile, gpus):
    result = paddle_check(venvs(layout), gpu_host(profile))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "device gpu:0"
    assert lines[1] == "Running verify PaddlePaddle program ... "
    assert "PaddlePaddle works well on 1 GPU." in lines
    assert ("PaddlePaddle works well on 8 GPUs." in lines) == (gpus == 8)
    assert lines[-1] == ("PaddlePaddle is installed successfully! Let's start deep learning "
                         "with PaddlePaddle now.")


@pytest.mark.parametrize("layout, profile", [("80_90", "olddriver"), ("cu129", "olddriver")])
def test_run_check_fails_when_the_driver_is_older_than_the_wheels_cuda(venvs, gpu_host, layout,
                                                                        profile):
    result = paddle_check(venvs(layout), gpu_host(profile))
    assert result.returncode != 0
    assert "CUDA error(35), CUDA driver version is insufficient for CUDA runtime version" in (
        result.stderr)
    assert "installed successfully" not in result.stdout


def test_paddle_without_a_gpu_falls_back_to_cpu(venvs, gpu_host):
    result = paddle_check(venvs("80_90"), gpu_host("nogpu"))
    assert "device cpu" in result.stdout
    assert "PaddlePaddle works well on 1 CPU." in result.stdout
    assert "there is no GPU detected on your machine" in result.stderr


# ----------------------------------------------------------------------------- the server



NO_KERNEL = "CUDA error(209), no kernel image is available for execution on the device"
OLD_DRIVER = "CUDA error(35), CUDA driver version is insufficient for CUDA runtime version"


@pytest.mark.parametrize("layout, profile, driver, error", [
    ("80_90", "a10", None, NO_KERNEL),
    ("86_89", "a100", None, NO_KERNEL),
    ("cu126", "t4", "550.127.05", NO_KERNEL),  # a T4 with a newer driver: SM 7.5 refused
    ("cu126", "t4", None, NO_KERNEL),  # R535 runs CUDA 12.6 builds (C4); SM 7.5 does not
    ("80_90", "olddriver", None, OLD_DRIVER),
])
def test_server_refuses_a_gpu_its_wheel_cannot_run_on(venvs, gpu_host, servers, tmp_path,
                                                      layout, profile, driver, error):
    env = gpu_host(profile)
    if driver:
        data = profile_as_json(get_profile(profile))
        data["driver_version"] = driver
        env["PROVISION_LAB_GPU_JSON"] = str(tmp_path / "gpu.json")
        Path(env["PROVISION_LAB_GPU_JSON"]).write_text(json.dumps(data))
    server = servers(venvs(layout), env, gpu_host.cwd)
    code, _, err = server.finish()
    assert code != 0
    assert error in err
    assert error in server.log("workerlog.0")
    assert "check log/workerlog.* for more details" in server.log("console.log")
    assert not port_open(server.port)


def test_server_serves_on_a_matching_gpu(venvs, gpu_host, servers):
    env = gpu_host("a100", PROVISION_LAB_LOAD_SECONDS="2")
    server = servers(venvs("80_90"), env, gpu_host.cwd, "--reasoning-parser", "ernie-45-vl",
                     "--served-model-name", "baidu/ERNIE-4.5-VL-28B-A3B-Paddle")
    # Loading: nothing listens yet (connection refused), then /health answers 200, empty.
    assert not port_open(server.port)
    wait_until(lambda: port_open(server.port) or server.proc.poll() is not None)
    assert server.proc.poll() is None, server.finish()
    assert time.monotonic() - server.started >= 2.0
    status, _, body = http(f"{server.url}/health")
    assert (status, body) == (200, b"")
    status, _, body = http(f"{server.url}/v1/models")
    model = json.loads(body)["data"][0]
    assert (status, model["id"], model["max_model_len"], model["owned_by"]) == (
        200, "baidu/ERNIE-4.5-VL-28B-A3B-Paddle", 32768, "FastDeploy")
    assert Path(model["root"]).is_dir()  # "downloaded" into FD_MODEL_CACHE
    ask = {"model": "default", "messages": [{"role": "user", "content": "Say hello"}]}
    status, _, body = http(f"{server.url}/v1/chat/completions", ask)
    message = json.loads(body)["choices"][0]["message"]
    assert status == 200 and message["content"] and message["reasoning_content"]
    status, headers, body = http(f"{server.url}/v1/chat/completions", {**ask, "stream": True})
    events = [line[len("data: "):] for line in body.decode().splitlines() if line]
    assert headers["Content-Type"] == "text/event-stream" and events[-1] == "[DONE]"
    streamed = "".join(json.loads(e)["choices"][0]["delta"].get("content") or ""
                       for e in events[:-1])
    assert streamed == message["content"]
    status, _, body = http(f"{server.url}/v1/chat/completions", {**ask, "model": "other"})
    assert status == 400 and b"Unsupported model: [other]" in body
    status, _, body = http(f"http://127.0.0.1:{server.metrics_port}/metrics")
    metrics = dict(re.findall(r"^(fastdeploy:\S+) (\S+)$", body.decode(), re.M))
    assert status == 200
    assert float(metrics["fastdeploy:requests_number_total"]) == 2  # the 400 never reached it
    assert float(metrics["fastdeploy:request_success_total"]) == 2
    assert float(metrics["fastdeploy:e2e_request_latency_seconds_count"]) == 2
    assert (f"Launching chat completion service at http://127.0.0.1:{server.port}"
            "/v1/chat/completions") in server.log("console.log")
    assert "Loading Weights: 100%" in server.log("workerlog.0")
    server.proc.send_signal(signal.SIGTERM)
    assert server.finish(timeout=5)[0] == 0


def test_server_auth_answers_config_file_and_local_model(venvs, gpu_host, servers, tmp_path):
    (gpu_host.etc / "answers.json").write_text(json.dumps(
        {"probability": "The probability is 1/6.", "capital of france": "Paris."}))
    (gpu_host.etc / "load-seconds").write_text("0.2\n")
    weights = tmp_path / "weights"
    weights.mkdir()
    config = tmp_path / "server.yaml"
    config.write_text("served_model_name: lab-model  # from --config\nenable_logprob: true\n")
    env = gpu_host("l40s", FD_API_KEY="k1,k2")
    del env["PROVISION_LAB_LOAD_SECONDS"]  # the lab's file decides
    server = servers(venvs("cu126"), env, gpu_host.cwd, "--model", str(weights),
                     "--config", str(config), "--enable-mm")
    wait_until(lambda: port_open(server.port) or server.proc.poll() is not None)
    ask = {"messages": [{"role": "user", "content": "What is the Capital of France?"}]}
    assert http(f"{server.url}/v1/chat/completions", ask)[0] == 401
    assert json.loads(http(f"{server.url}/v1/models")[2]) == {"error": "Unauthorized"}
    assert http(f"{server.url}/health")[0] == 200  # only /v1 is protected
    key = {"Authorization": "Bearer k2"}
    status, _, body = http(f"{server.url}/v1/chat/completions", ask, key)
    answer = json.loads(body)["choices"][0]["message"]
    assert (status, answer["content"], answer["reasoning_content"]) == (200, "Paris.", None)
    model = json.loads(http(f"{server.url}/v1/models", headers=key)[2])["data"][0]
    assert (model["id"], model["root"]) == ("lab-model", str(weights))
    assert "Deprecated option is detected: --enable-mm" in server.log("console.log")


def test_server_rejects_an_unknown_flag(venvs, gpu_host, servers):
    server = servers(venvs("80_90"), gpu_host("a100"), gpu_host.cwd, "--no-such-flag")
    code, _, err = server.finish()
    assert code == 2 and "unrecognized arguments: --no-such-flag" in err


@pytest.mark.parametrize("taken", ["port", "metrics_port", "engine_worker_queue_port"])
def test_server_fails_when_a_port_is_taken(venvs, gpu_host, servers, taken):
    blocker = socket.socket()
    server = servers(venvs("80_90"), gpu_host("a100"), gpu_host.cwd)
    server.proc.kill()  # only its free ports are needed: restart with one of them taken
    server.proc.communicate()
    port = {"port": server.port, "metrics_port": server.metrics_port,
            "engine_worker_queue_port": server.queue_port}[taken]
    try:
        blocker.bind(("127.0.0.1" if taken == "port" else "0.0.0.0", port))
        blocker.listen(1)
        argv = server.proc.args
        proc = subprocess.run(argv, env=gpu_host("a100"), cwd=gpu_host.cwd, capture_output=True,
                              text=True, timeout=DEADLINE_S)
    finally:
        blocker.close()
    assert proc.returncode != 0
    assert f"The parameter `{taken}`:{port} is already in use." in proc.stderr


def test_broken_version_never_opens_its_port_and_exits_0(venvs, gpu_host, servers):
    (gpu_host.etc / "broken-versions").write_text("2.3.0\n2.4.0\n")
    server = servers(venvs("80_90"), gpu_host("a100", PROVISION_LAB_LOAD_SECONDS="0.3"),
                     gpu_host.cwd)
    code, _, err = server.finish()
    assert code == 0
    assert "begin_norm_axis must be in range [0, 1), but got 1" in server.log("workerlog.0")
    assert "Launching chat completion service" not in server.log("console.log")
    assert not port_open(server.port)
    (gpu_host.etc / "broken-versions").write_text("2.3.0\n")  # mended: read again at start
    server = servers(venvs("80_90"), gpu_host("a100", PROVISION_LAB_LOAD_SECONDS="0.3"),
                     gpu_host.cwd)
    wait_until(lambda: port_open(server.port) or server.proc.poll() is not None)
    assert http(f"{server.url}/health")[0] == 200


def test_server_stops_on_sigterm_while_loading(venvs, gpu_host, servers):
    server = servers(venvs("80_90"), gpu_host("a100", PROVISION_LAB_LOAD_SECONDS="60"),
                     gpu_host.cwd)
    wait_until(lambda: "Loading Weights" in server.log("workerlog.0")
               or "device: 0" in server.log("workerlog.0"))
    server.proc.send_signal(signal.SIGTERM)
    assert server.finish(timeout=5)[0] == 0


def test_server_needs_paddle(built_index, gpu_host, tmp_path):
    """Without paddlepaddle-gpu the import fails, as upstream's package imports paddle."""
    wheel = (built_index / STABLE / "fastdeploy-gpu-80_90" / "fastdeploy-gpu"
             / FD_WHEEL.format("2.4.0"))
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    env = gpu_host("a100", PYTHONPATH=str(site))
    result = subprocess.run([sys.executable, "-m", "fastdeploy.entrypoints.openai.api_server"],
                            env=env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=DEADLINE_S)
    assert result.returncode != 0
    assert "ModuleNotFoundError: No module named 'paddle'" in result.stderr


def test_server_fails_when_the_hostname_does_not_resolve(venvs, gpu_host, tmp_path):
    """A fresh UTS and network namespace: an unresolvable hostname and no way to ask DNS."""
    python = venvs("80_90")
    script = ("hostname provision-lab-unresolvable && exec \"$0\" -m "
              "fastdeploy.entrypoints.openai.api_server --port 18999")
    result = subprocess.run(["unshare", "--uts", "--net", "sh", "-c", script, str(python)],
                            env=gpu_host("a100"), cwd=tmp_path, capture_output=True, text=True,
                            timeout=DEADLINE_S)
    assert result.returncode != 0
    assert "socket.gaierror" in result.stderr
    assert "get_host_ip" in result.stderr
