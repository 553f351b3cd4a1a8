"""`python -m fastdeploy.entrypoints.openai.api_server`: the stand-in OpenAI-compatible server.

Start-up in upstream's order, with its failure modes:
parse the flags this release has (any other: exit 2, "unrecognized arguments") -> the
reasoning parser name (unregistered in this release: KeyError) -> model from a local dir or
"downloaded" (cache layout per release) ->
socket.gethostbyname(socket.gethostname()) (socket.gaierror when the hostname does not
resolve) -> port checks ("The parameter `port`:N is already in use." and the like) ->
engine + worker (GPU, SM, loading; see fastdeploy/engine/engine.py) -> only then the metrics
server, the optional controller server and the API server open their ports.
A worker that fails like a broken release makes main() return: exit status 0, as upstream.
The port checks run before loading, as 2.0's main() did (newer versions check the API port
after loading; the message is the same).
SIGTERM or SIGINT stops it cleanly at any point with exit status 0.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading

from fastdeploy import _lab
from fastdeploy.engine import args_utils, engine
from fastdeploy.entrypoints.openai.serving import (
    Handler,
    LabHTTPServer,
    MetricsHandler,
    ServerState,
)
from fastdeploy.utils import (
    FlexibleArgumentParser,
    api_server_logger,
    console_logger,
    get_host_ip,
    is_port_available,
    retrive_model_from_server,
)


def make_parser() -> FlexibleArgumentParser:
    parser = FlexibleArgumentParser()
    add = args_utils.release_adder(parser)
    add("--port", default=8000, type=int, help="port to the http server")
    add("--host", default="0.0.0.0", type=str, help="host to the http server")
    add("--workers", default=1, type=int, help="number of workers")
    add("--metrics-port", default=8001, type=int, help="port for metrics server")
    add("--controller-port", default=-1, type=int, help="port for controller")
    add("--max-waiting-time", default=-1, type=int)
    add("--max-concurrency", default=512, type=int, help="max concurrency")
    add("--enable-mm-output", action="store_true")
    add("--timeout-graceful-shutdown", default=0, type=int)
    add("--timeout", default=0, type=int)
    add("--api-key", action="append", default=None, help="repeatable")
    add("--config", type=str, default=None, help="YAML file of flags")
    parser = args_utils.add_cli_args(parser)
    parser.set_defaults(served_model_name=None, api_key=None, load_choices="default")
    return parser


def check_reasoning_parser(name: str | None) -> None:
    """Upstream's ReasoningParserManager: an unregistered name fails before the engine starts
    (from 2.3 the lookup also accepts `_` for `-`)."""
    if name is None:
        return
    known = _lab.behaviour()["reasoning_parsers"]
    looked_up = name.replace("_", "-") if _lab.has("parser_name_normalized") else name
    if looked_up not in known:
        raise KeyError(f"reasoning helper: {name} not found in reasoning_parsers "
                       f"(registered: {', '.join(known)})")


def check_ports(args) -> None:
    """Upstream's messages; the queue ports are asserted in its EngineArgs."""
    for name in ("engine_worker_queue_port", "cache_queue_port"):
        for port in str(getattr(args, name)).split(","):
            if port.strip() and int(port) > 0:
                assert is_port_available("0.0.0.0", int(port)), (
                    f"The parameter `{name}`:{port} is already in use."
                )
    for name in ("port", "metrics_port", "controller_port"):
        port = getattr(args, name)
        if port >= 0 and not is_port_available(args.host, port):
            raise Exception(f"The parameter `{name}`:{port} is already in use.")


def _serve(server: LabHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


def import_dependencies() -> None:
    """What upstream's api_server.py imports at start (uvicorn, zmq, fastapi,
    prometheus_client): a venv without fastdeploy-gpu's dependencies fails here, as the real
    one does (ModuleNotFoundError)."""
    for module in _lab.build().get("imports_at_start", []):
        importlib.import_module(module)


def main(argv: list | None = None) -> int:
    import_dependencies()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    args = make_parser().parse_args(argv)
    console = console_logger()
    console.info(f"Number of api-server workers: {args.workers}.")
    check_reasoning_parser(args.reasoning_parser)
    args.requested_model = args.model
    args.model = retrive_model_from_server(args.model, args.revision)
    host_ip = get_host_ip()
    api_server_logger().info(f"FastDeploy {_lab.build()['version']} on {host_ip}, args: "
                             f"{ {k: v for k, v in vars(args).items() if k != 'api_key'} }")
    check_ports(args)
    held = engine.bind_engine_ports(args)
    try:
        status = engine.start(args, stop)
        if status == engine.FAILED:
            return 1
        if status != engine.OK:
            return 0  # broken release or stopped while loading: upstream's main() just returns
        api_server_logger().info("FastDeploy LLM engine initialized!\n")
        console.info(f"Launching metrics service at http://{args.host}:{args.metrics_port}/metrics")
        console.info("Launching chat completion service at "
                     f"http://{args.host}:{args.port}/v1/chat/completions")
        console.info(f"Launching completion service at http://{args.host}:{args.port}/v1/completions")
        keys = []  # releases before API-key support ignore FD_API_KEY: the API stays open
        if _lab.has("api_key"):
            keys = args.api_key or [k for k in os.environ.get("FD_API_KEY", "").split(",") if k]
        state = ServerState(args, keys)
        servers = [LabHTTPServer(("0.0.0.0", args.metrics_port), MetricsHandler, state)]
        if args.controller_port >= 0:
            servers.append(LabHTTPServer(("0.0.0.0", args.controller_port), MetricsHandler, state))
        servers.append(LabHTTPServer((args.host, args.port), Handler, state))
        for server in servers:
            _serve(server)
        console.info(f"Uvicorn running on http://{args.host}:{args.port} (Press CTRL+C to quit)")
        stop.wait()
        console.info("Shutting down")
        for server in servers:
            server.shutdown()
            server.server_close()
        return 0
    finally:
        for sock in held:
            sock.close()


if __name__ == "__main__":
    sys.exit(main())
