"""paddle.utils.run_check, printing what the real one prints.

Real flow (python/paddle/utils/install_check.py): print "Running verify PaddlePaddle program
... ", look for GPUs; with none, warn and verify on the CPU instead (and still succeed); with
GPUs, run on one, print "works well on 1 GPU.", then on all when there are several. A driver
too old for the wheel's CUDA build makes the GPU program fail with CUDA error 35, which the
stand-in raises before any success line.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from paddle import _lab
from paddle.device import cuda


def _note(device: int) -> None:
    """The glog lines Paddle prints when it first touches a GPU (to stderr)."""
    major, minor = cuda.get_device_capability(device)
    stamp = time.strftime("%m%d %H:%M:%S.000000")
    runtime = _lab.build()["cuda"]
    sys.stderr.write(
        f"W{stamp} {os.getpid():>6} gpu_resources.cc:119] Please NOTE: device: {device}, "
        f"GPU Compute Capability: {major}.{minor}, Driver API Version: "
        f"{_lab.cuda_driver_version()}, Runtime API Version: {runtime}\n"
    )


def run_check() -> None:
    print("Running verify PaddlePaddle program ... ")
    count = cuda.device_count()  # CUDA error 35 propagates, as the GPU program would fail
    if count == 0:
        logging.warning(
            "You are using GPU version PaddlePaddle, but there is no GPU "
            "detected on your machine. Maybe CUDA devices is not set properly."
            f"\n Original Error is {_lab.cuda_error(100)}"
        )
        print("PaddlePaddle works well on 1 CPU.")
    else:
        _note(0)
        print("PaddlePaddle works well on 1 GPU.")
        if count > 1:
            print(f"PaddlePaddle works well on {count} GPUs.")
    print(
        "PaddlePaddle is installed successfully! Let's start deep learning with PaddlePaddle now."
    )
