"""paddle.device.cuda: device count, names and compute capability, from the host's driver."""

from __future__ import annotations

from paddle import _lab


def device_count() -> int:
    """Visible CUDA devices; raises CUDA error 35 when the driver is too old for this build."""
    return len(_lab.visible_gpus())


def _index(device) -> int:
    if device is None:
        return 0
    if isinstance(device, str):
        return int(device.partition(":")[2] or 0)
    return int(device)


def get_device_name(device=None) -> str:
    gpus = _lab.visible_gpus()
    index = _index(device)
    if not gpus:
        raise _lab.cuda_error(100)
    if not 0 <= index < len(gpus):
        raise _lab.cuda_error(101)
    return gpus[index][1]


def get_device_capability(device=None) -> tuple:
    return _lab.capability(_index(device))


class _DeviceProperties:
    """The fields of cudaDeviceProp that FastDeploy's memory planning reads."""

    def __init__(self, device: int) -> None:
        self.name = get_device_name(device)
        self.major, self.minor = get_device_capability(device)
        self.total_memory = _lab.total_memory_mib(device) * 1024 * 1024


def get_device_properties(device=None) -> _DeviceProperties:
    return _DeviceProperties(_index(device))
