"""fastdeploy.model_executor.ops.gpu: the custom CUDA ops, as an import-time SM check.

FastDeploy 2.0's install check imports `beam_search_softmax` from here; with a wheel built
for other GPU architectures the real import fails on the device. The stand-in raises Paddle's
CUDA error 209 when GPU 0's SM is not one the wheel was built for.
"""

from __future__ import annotations

import paddle

from fastdeploy import _lab

_major, _minor = paddle.device.cuda.get_device_capability(0)
if _major * 10 + _minor not in _lab.build()["sms"]:
    raise paddle._lab.cuda_error(209, "/paddle/paddle/phi/kernels/funcs/elementwise_base.h:1015")


def beam_search_softmax(*args, **kwargs):
    """Present so the import works; the stand-in never runs kernels."""
    raise NotImplementedError("the provision lab's stand-in has no CUDA kernels")
