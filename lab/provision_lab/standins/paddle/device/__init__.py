"""paddle.device: where computation would run. `gpu:0` only when the host shows a usable GPU."""

from __future__ import annotations

from paddle.device import cuda

_current: str | None = None


def is_compiled_with_cuda() -> bool:
    return True


def get_device() -> str:
    """ "gpu:0" when CUDA sees a device, else "cpu" (what a GPU build does on a CPU host)."""
    if _current is not None:
        return _current
    return "gpu:0" if cuda.device_count() > 0 else "cpu"


def set_device(device: str) -> str:
    global _current
    kind, _, number = device.partition(":")
    if kind == "gpu":
        index = int(number or 0)
        count = cuda.device_count()
        if index >= count:
            raise ValueError(f"The device id {index} exceeds gpu card number {count}")
        _current = f"gpu:{index}"
    elif kind == "cpu":
        _current = "cpu"
    else:
        raise ValueError(
            "The device must be a string which is like 'cpu', 'gpu' or 'gpu:x', "
            f"but received {device}"
        )
    return _current


__all__ = ["cuda", "get_device", "is_compiled_with_cuda", "set_device"]
