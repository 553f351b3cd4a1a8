"""Helpers named as upstream's fastdeploy/utils.py: loggers, ports, model retrieval, host IP."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import socket
import sys

from fastdeploy import _lab, _lab_download

_FORMAT = "%(levelname)-8s %(asctime)s %(process)-5s %(filename)s[line:%(lineno)d] %(message)s"


def log_dir() -> str:
    """$FD_LOG_DIR, default `log` relative to the working directory, as upstream."""
    path = os.environ.get("FD_LOG_DIR", "log")
    os.makedirs(path, exist_ok=True)
    return path


def get_logger(name: str, file_name: str, to_stdout: bool = False) -> logging.Logger:
    logger = logging.getLogger(f"fastdeploy.{name}")
    if not logger.handlers:
        logger.setLevel(logging.INFO)
        logger.propagate = False
        handler = logging.FileHandler(os.path.join(log_dir(), file_name))
        handler.setFormatter(logging.Formatter(_FORMAT))
        logger.addHandler(handler)
        if to_stdout:
            stream = logging.StreamHandler(sys.stdout)
            stream.setFormatter(logging.Formatter(_FORMAT))
            logger.addHandler(stream)
    return logger


def console_logger() -> logging.Logger:
    return get_logger("console", "console.log", to_stdout=True)


def api_server_logger() -> logging.Logger:
    return get_logger("api_server", "api_server.log")


def worker_logger() -> logging.Logger:
    return get_logger("worker", "workerlog.0")


def is_port_available(host: str, port: int) -> bool:
    """Upstream's check: a bind that fails with EADDRINUSE means taken; other errors do not."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
            return True
        except OSError as e:
            return e.errno != errno.EADDRINUSE


def get_host_ip() -> str:
    """Exactly upstream's call: fails with socket.gaierror when the hostname does not resolve."""
    return socket.gethostbyname(socket.gethostname())


def retrive_model_from_server(model_name_or_path: str, revision: str = "master") -> str:
    """An existing path is used as is; otherwise download into upstream's cache layout.

    From 2.1: ${FD_MODEL_CACHE:-$HOME}/PaddlePaddle/<name> (AISTUDIO, MODELSCOPE) or
    .../baidu/<name> (HUGGINGFACE, by FD_MODEL_SOURCE). 2.0.x has no FD_MODEL_SOURCE and puts
    the weights into the cache directory itself (no <org>/<name>). With neither variable set
    the path starts with "None", as upstream's does. A cache holding config.json is complete.
    Otherwise the weights come from the lab's model hub (_lab.hub_url(), _lab_download.py),
    before any port opens; with no hub configured, a small config.json is written instead.
    """
    if os.path.exists(model_name_or_path):
        return model_name_or_path
    source = "AISTUDIO"
    if _lab.has("model_source_env"):
        source = os.environ.get("FD_MODEL_SOURCE", "AISTUDIO").upper()
    name = model_name_or_path
    if source == "HUGGINGFACE":
        if name.startswith("PaddlePaddle/"):
            name = "baidu/" + name[len("PaddlePaddle/"):]
    elif name.startswith("baidu/"):
        name = "PaddlePaddle/" + name[len("baidu/"):]
    base = os.environ.get("FD_MODEL_CACHE") or str(os.environ.get("HOME"))
    local = os.path.join(base, name) if _lab.has("model_cache_org_dir") else base
    if os.path.exists(os.path.join(local, "config.json")):
        return local
    console_logger().info(f"Downloading model {model_name_or_path} ({revision}) to {local}")
    hub = _lab.hub_url()
    if hub is None:
        os.makedirs(local, exist_ok=True)
        with open(os.path.join(local, "config.json"), "w") as f:
            f.write('{"architectures": ["Ernie4_5_VLMoeForConditionalGeneration"], '
                    '"provision_lab_stand_in": true}\n')
        return local
    try:
        _lab_download.download(hub, name, local, console_logger().info)
    except _lab_download.NotOnHub:
        raise Exception(f"The {revision} of {model_name_or_path} is not exist. Please check "
                        "the model name or revision.") from None
    return local


class FlexibleArgumentParser(argparse.ArgumentParser):
    """argparse plus upstream's `--config file.yaml`: its keys are flags (`max_model_len: 8`).

    Values from the file come first, so flags on the command line win. The file is read as
    flat `key: value` lines (the venv has no YAML library); true/false switch flags.
    """

    def parse_args(self, args=None, namespace=None):
        argv = list(sys.argv[1:] if args is None else args)
        if "--config" in argv:
            index = argv.index("--config")
            if index + 1 < len(argv):
                argv = self._config_argv(argv[index + 1]) + argv
        return super().parse_args(argv, namespace)

    def _config_argv(self, path: str) -> list:
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except OSError as e:
            self.error(f"argument --config: cannot read {path}: {e.strerror}")
        argv = []
        for line in lines:
            line = line.split("#", 1)[0].strip()
            if not line or ":" not in line:
                continue
            key, _, value = line.partition(":")
            flag = "--" + key.strip().replace("_", "-")
            value = value.strip().strip("'\"")
            if value.lower() == "true":
                argv.append(flag)
            elif value.lower() != "false":
                argv += [flag, value]
        return argv
