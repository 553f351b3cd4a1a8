"""What the stand-in paddle knows about its own build and about the host's GPUs.

This module plays libcuda for the stand-in: it asks the host's nvidia-smi (the only window a
lab host has onto its "GPU") for the driver and the devices, and it raises the errors real
Paddle raises when the driver is too old for the CUDA build of the wheel or a device is
missing. The build facts (version, CUDA, minimum driver) are written into _lab_build.json
by the lab's index builder (provision_lab/index.py) from the lab's recorded upstream
facts (provision_lab/upstream/*.yaml).

Runs on the host's Python (3.9-3.12): standard library only.
"""

from __future__ import annotations

import json
import os
import subprocess
from functools import lru_cache

_HERE = os.path.dirname(os.path.abspath(__file__))

# code -> (message, cudaError name, NVIDIA's description), as Paddle's enforce prints them.
_CUDA_ERRORS = {
    35: (
        "CUDA driver version is insufficient for CUDA runtime version",
        "cudaErrorInsufficientDriver",
        "This indicates that the installed NVIDIA CUDA driver is older than the CUDA runtime "
        "library. This is not a supported configuration.Users should install an updated NVIDIA "
        "display driver to allow the application to run.",
    ),
    100: (
        "no CUDA-capable device is detected",
        "cudaErrorNoDevice",
        "This indicates that no CUDA-capable devices were detected by the installed CUDA driver.",
    ),
    101: (
        "invalid device ordinal",
        "cudaErrorInvalidDevice",
        "This indicates that the device ordinal supplied by the user does not correspond to a "
        "valid CUDA device or that the action requested is invalid for the specified device.",
    ),
    209: (
        "no kernel image is available for execution on the device",
        "cudaErrorNoKernelImageForDevice",
        "This indicates that there is no kernel image available that is suitable for the device. "
        "This can occur when a user specifies code generation options for a particular CUDA "
        "source file that do not include the corresponding device configuration.",
    ),
}


def cuda_error(code: int, where: str = "/paddle/paddle/phi/backends/gpu/cuda/cuda_info.cc:72"):
    """The OSError Paddle raises for a failed CUDA call (its "(External) CUDA error(N)" text)."""
    text, name, hint = _CUDA_ERRORS[code]
    return OSError(
        f"(External) CUDA error({code}), {text}. \n  [Hint: '{name}'. {hint}] (at {where})"
    )


@lru_cache(maxsize=1)
def build() -> dict:
    with open(os.path.join(_HERE, "_lab_build.json")) as f:
        return json.load(f)


def _version_tuple(version: str) -> tuple:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def _smi(*args: str) -> str | None:
    """stdout of the host's nvidia-smi, or None when it is missing or fails (no usable driver)."""
    try:
        result = subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=60)
    except OSError:
        return None
    return result.stdout if result.returncode == 0 else None


@lru_cache(maxsize=1)
def host_gpus() -> tuple:
    """((index, name, driver_version), ...) of every GPU the driver sees; () without a driver."""
    out = _smi("--query-gpu=driver_version,name", "--format=csv,noheader")
    if out is None:
        return ()
    gpus = []
    for index, line in enumerate(out.splitlines()):
        if line.strip():
            driver, _, name = line.partition(", ")
            gpus.append((index, name.strip(), driver.strip()))
    return tuple(gpus)


def visible_gpus() -> list:
    """The GPUs CUDA would expose: all of them, or those CUDA_VISIBLE_DEVICES lists, in its order.

    Raises Paddle's CUDA error 35 when the driver is older than this wheel's CUDA build needs.
    """
    gpus = host_gpus()
    if not gpus:
        return []
    if _version_tuple(gpus[0][2]) < _version_tuple(build()["min_driver"]):
        raise cuda_error(35)
    wanted = os.environ.get("CUDA_VISIBLE_DEVICES")
    if wanted is None:
        return list(gpus)
    chosen = []
    for token in wanted.split(","):
        token = token.strip()
        if not token.isdigit() or int(token) >= len(gpus):
            break  # CUDA stops at the first entry it cannot use
        chosen.append(gpus[int(token)])
    return chosen


def capability(device: int) -> tuple:
    """(major, minor) of visible device `device`, as cudaGetDeviceProperties gives it."""
    gpus = visible_gpus()
    if not gpus:
        raise cuda_error(100)
    if not 0 <= device < len(gpus):
        raise cuda_error(101)
    physical = gpus[device][0]
    out = _smi("--query-gpu=compute_cap", "--format=csv,noheader", f"--id={physical}")
    if out is None:
        # Drivers before R510 do not answer compute_cap; CUDA itself still knows it. The lab's
        # hardware description (the profile nvidia-smi serves) plays the role of the hardware.
        out = _hardware_compute_cap(physical)
    major, _, minor = out.strip().partition(".")
    return int(major), int(minor or 0)


def total_memory_mib(device: int) -> int:
    """Total memory of visible device `device` in MiB, as the driver reports it."""
    gpus = visible_gpus()
    if not 0 <= device < len(gpus):
        raise cuda_error(101)
    out = _smi("--query-gpu=memory.total", "--format=csv,noheader,nounits",
               f"--id={gpus[device][0]}")
    return int((out or "0").strip().split()[0])


def _hardware_compute_cap(index: int) -> str:
    path = os.environ.get("PROVISION_LAB_GPU_JSON") or os.path.join(
        os.environ.get("PROVISION_LAB_ETC", "/etc/provision-lab"), "gpu.json"
    )
    with open(path) as f:
        return json.load(f)["gpus"][index]["compute_cap"]


def cuda_driver_version() -> str:
    """The `CUDA Version` of nvidia-smi's table: the newest CUDA the driver supports."""
    out = _smi() or ""
    marker = "CUDA Version:"
    return out.split(marker, 1)[1].split()[0] if marker in out else "N/A"
