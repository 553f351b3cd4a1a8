"""The engine and its GPU worker, reduced to what provisioning can observe.

Real FastDeploy starts worker processes that open the GPU, load weights for minutes and only
then let the API server open its port. The stand-in does the same checks in order, writing
the worker's lines to $FD_LOG_DIR/workerlog.0:
1. the engine's own ports (engine worker queue, cache queue) are bound, as the engine binds them;
2. Paddle must see the GPUs: a driver too old for the CUDA build (error 35), no device (100),
   fewer devices than --tensor-parallel-size (101);
3. every GPU used must have an SM the wheel's kernels were built for, else CUDA error 209;
4. the model must fit: a model with a memory rule (VL-28B on one card of 24 GB or less, from
   the lab's recorded upstream facts) runs out of memory unless the rule's flags are given;
5. loading takes the lab's load time; a version the lab marked broken then fails in the worker.
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


def _check_memory(args) -> None:
    """Paddle's out-of-memory error when the model's rule says this launch cannot fit."""
    rule = _lab.model_rule("memory", args.requested_model)
    if rule is None or args.tensor_parallel_size >= rule["min_tensor_parallel"]:
        return
    total = paddle.device.cuda.get_device_properties(0).total_memory // (1024 * 1024)
    batched = args.max_num_batched_tokens
    if total > rule["max_card_mib"] or (batched is not None
                                        and batched <= rule["max_num_batched_tokens"]):
        return
    raise MemoryError(
        f"(ResourceExhausted) Out of memory error on GPU 0. Cannot allocate 1.88GB memory on "
        f"GPU 0, {total / 1024:.2f}GB memory has been allocated and available memory is only "
        "0.12GB. (at /paddle/paddle/phi/core/memory/allocation/cuda_allocator.cc:71) "
        f"[provision lab: {rule['match']} on a {total} MiB card needs {rule['needs']}]"
    )


def start(args, stop: threading.Event) -> str:
    """Run the worker's start-up; OK when the model is loaded and the API may open its port."""
    log = worker_logger()
    log.info(f"FastDeploy worker starting, model: {args.model}, "
             f"tensor_parallel_size: {args.tensor_parallel_size}")
    try:
        _check_gpus(args)
        _check_memory(args)
    except (OSError, MemoryError) as error:
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
