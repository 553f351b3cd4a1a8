"""The engine and its GPU worker, reduced to what provisioning can observe.

Real FastDeploy starts worker processes that open the GPU, load weights for minutes and only
then let the API server open its port. The stand-in does the same checks in order, writing
the worker's lines to $FD_LOG_DIR/workerlog.0:
1. the engine's own ports (engine worker queue, cache queue) are bound, as the engine binds them;
2. Paddle must see the GPUs: a driver too old for the CUDA build (error 35), no device (100),
   fewer devices than --tensor-parallel-size (101);
3. every GPU used must have an SM the wheel's kernels were built for, else CUDA error 209;
4. loading takes the lab's load time; a version the lab marked broken then fails in the worker.
"""

from __future__ import annotations

import socket
import sys
import threading
import traceback

import paddle

from fastdeploy import _lab
from fastdeploy.utils import api_server_logger, console_logger, worker_logger

OK, FAILED, BROKEN, STOPPED = "ok", "failed", "broken", "stopped"


def _fused_rms_norm(begin_norm_axis: int) -> None:
    # The real failure behind a "hung" 2.0.0 start (FastDeploy issue 2739).
    raise ValueError(f"begin_norm_axis must be in range [0, 1), but got {begin_norm_axis}")


def _report_worker_error(error: BaseException) -> None:
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    worker_logger().error(f"Worker process failed:\n{text}")
    sys.stderr.write(text)
    console_logger().error(
        "Failed to launch worker processes, check log/workerlog.* for more details."
    )
    api_server_logger().error("Failed to initialize FastDeploy LLM engine, service exit now!")


def bind_engine_ports(args) -> list:
    """Hold the engine's queue ports like the real engine (0 means auto: nothing to hold)."""
    held = []
    for spec in (args.engine_worker_queue_port, args.cache_queue_port):
        for port in str(spec).split(","):
            if port.strip() and int(port) > 0:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("0.0.0.0", int(port)))
                s.listen(16)
                held.append(s)
    return held


def _check_gpus(args) -> None:
    count = paddle.device.cuda.device_count()
    if count == 0:
        raise paddle._lab.cuda_error(100)
    if args.tensor_parallel_size > count:
        raise paddle._lab.cuda_error(101)
    sms = set(_lab.build()["sms"])
    for device in range(args.tensor_parallel_size):
        major, minor = paddle.device.cuda.get_device_capability(device)
        worker_logger().info(
            f"device: {device}, GPU Compute Capability: {major}.{minor}, "
            f"Runtime API Version: {paddle.version.cuda()}"
        )
        if major * 10 + minor not in sms:
            raise paddle._lab.cuda_error(
                209, "/paddle/paddle/phi/kernels/funcs/elementwise_base.h:1015"
            )


def start(args, stop: threading.Event) -> str:
    """Run the worker's start-up; OK when the model is loaded and the API may open its port."""
    log = worker_logger()
    log.info(f"FastDeploy worker starting, model: {args.model}, "
             f"tensor_parallel_size: {args.tensor_parallel_size}")
    try:
        _check_gpus(args)
    except OSError as error:
        _report_worker_error(error)
        return FAILED
    total = _lab.load_seconds()
    steps = 4
    for step in range(1, steps + 1):
        if stop.wait(total / steps):
            return STOPPED
        log.info(f"Loading Weights: {100 * step // steps}% | {step * 25}/100")
    log.info("Loading Layers: 100% | 100/100")
    if _lab.is_broken():
        try:
            _fused_rms_norm(begin_norm_axis=1)
        except ValueError as error:
            _report_worker_error(error)
        return BROKEN
    log.info("Worker process is ready, KV cache initialized.")
    return OK
