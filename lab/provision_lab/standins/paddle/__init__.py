"""Lab stand-in for the `paddlepaddle-gpu` wheel: the parts provisioning and FastDeploy touch."""

from __future__ import annotations

from paddle import _lab

__version__ = _lab.build()["version"]

from paddle import device, jit, utils, version  # noqa: E402
from paddle.device import get_device, is_compiled_with_cuda, set_device  # noqa: E402


def is_compiled_with_xpu() -> bool:
    return False


def is_compiled_with_rocm() -> bool:
    return False


__all__ = [
    "__version__",
    "device",
    "get_device",
    "is_compiled_with_cuda",
    "is_compiled_with_rocm",
    "is_compiled_with_xpu",
    "jit",
    "set_device",
    "utils",
    "version",
]
