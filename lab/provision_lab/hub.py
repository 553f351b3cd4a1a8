"""The lab's model hub: a stand-in for AIStudio / Hugging Face, served by the index server.

The real weights of the lab's models are tens of GB; the hub serves stand-ins of a chosen
size (weights_mb, split into shards as hubs do) plus a config.json, for any ERNIE-4.5 name
under either organisation upstream's download code asks for (PaddlePaddle/ for AIStudio and
ModelScope, baidu/ for Hugging Face; fastdeploy-facts.md §5.3). Other names are 404, which
the stand-in server reports as upstream does ("The <rev> of <model> is not exist...").

    GET /<org>/<name>/manifest.json  -> {"model", "files": [{"name", "size", "sha256"}]}
    GET /<org>/<name>/<file>         -> the file; a Range: bytes=N- request resumes (206)

Shard bytes are pseudo-random (incompressible) and a function of (file name, weights_mb)
only, generated as they are sent, so a hub of any size costs no disk and a resumed download
continues the same bytes. config.json names the model, so it differs per model.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import urllib.parse
from functools import lru_cache
from http.server import BaseHTTPRequestHandler

from provision_lab.accounting import MB, MeteredHandlerMixin

BLOCK = 1 << 20  # shard bytes are generated per 1 MiB block, each from its own seed
SHARD_MAX = 64 * MB  # hubs split weights into shards; the lab's are at most this big
ORGS = ("PaddlePaddle", "baidu")
_NAME = re.compile(r"ERNIE-4\.5-[A-Za-z0-9.-]+")


def shard_names(weights_mb: float) -> list[tuple[str, int]]:
    """(file name, size) of each weight shard, upstream's naming (model-0000i-of-0000n)."""
    total = int(weights_mb * MB)
    if total <= 0:
        return []
    count = max(1, math.ceil(total / SHARD_MAX))
    size = math.ceil(total / count)
    sizes = [size] * (count - 1) + [total - size * (count - 1)]
    return [(f"model-{i + 1:05d}-of-{count:05d}.safetensors", s) for i, s in enumerate(sizes)]


@lru_cache(maxsize=128)  # a fleet fetches the same blocks: generate each once (128 MiB)
def _block(name: str, weights_mb: float, number: int) -> bytes:
    return random.Random(f"{name}/{weights_mb}/{number}").randbytes(BLOCK)


def shard_bytes(name: str, weights_mb: float, size: int, start: int = 0):
    """The shard's bytes from `start` to its end, one block at a time."""
    number, skip = divmod(start, BLOCK)
    position = start
    while position < size:
        data = _block(name, weights_mb, number)[skip:size - number * BLOCK]
        yield data
        position += len(data)
        number, skip = number + 1, 0


def config_bytes(model: str) -> bytes:
    return (json.dumps({"architectures": ["Ernie4_5_VLMoeForConditionalGeneration"],
                        "model": model, "provision_lab_stand_in": True}, sort_keys=True)
            + "\n").encode()


@lru_cache(maxsize=8)
def _shard_digest(name: str, weights_mb: float, size: int) -> str:
    h = hashlib.sha256()
    for data in shard_bytes(name, weights_mb, size):
        h.update(data)
    return h.hexdigest()


def manifest(model: str, weights_mb: float) -> dict:
    """The files of `model` ("<org>/<name>"), config.json last (a download writes it last)."""
    files = [{"name": n, "size": s, "sha256": _shard_digest(n, weights_mb, s)}
             for n, s in shard_names(weights_mb)]
    config = config_bytes(model)
    files.append({"name": "config.json", "size": len(config),
                  "sha256": hashlib.sha256(config).hexdigest()})
    return {"model": model, "files": files}


def known(org: str, name: str) -> bool:
    return org in ORGS and bool(_NAME.fullmatch(name))


class HubHandler(MeteredHandlerMixin, BaseHTTPRequestHandler):
    """GET and HEAD of manifests and files; weights_mb is set on the server (`hub_weights_mb`)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass

    def _head(self, status: int, length: int, kind: str, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()

    def _small(self, status: int, body: bytes, kind: str = "text/plain") -> None:
        self._head(status, len(body), kind)
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):  # noqa: N802 - http.server's naming
        parts = [p for p in urllib.parse.unquote(self.path.split("?", 1)[0]).split("/") if p]
        if len(parts) != 3 or not known(parts[0], parts[1]):
            self._small(404, b"Not Found: no such model on the lab hub\n")
            return
        model, file = f"{parts[0]}/{parts[1]}", parts[2]
        weights_mb = getattr(self.server, "hub_weights_mb", 1.0)
        if file == "manifest.json":
            self._small(200, json.dumps(manifest(model, weights_mb)).encode(), "application/json")
            return
        if file == "config.json":
            self._small(200, config_bytes(model), "application/json")
            return
        size = dict(shard_names(weights_mb)).get(file)
        if size is None:
            self._small(404, b"Not Found: no such file in this model\n")
            return
        start = _range_start(self.headers.get("Range"))
        if start is None or start > size:
            self._head(416, 0, "text/plain", {"Content-Range": f"bytes */{size}"})
            return
        if start:
            self._head(206, size - start, "application/octet-stream",
                       {"Content-Range": f"bytes {start}-{size - 1}/{size}"})
        else:
            self._head(200, size, "application/octet-stream")
        if self.command != "HEAD":
            for data in shard_bytes(file, weights_mb, size, start):
                self.wfile.write(data)

    do_HEAD = do_GET


def _range_start(header: str | None) -> int | None:
    """0 without a Range; N for "bytes=N-" (all a resuming download sends); None otherwise."""
    if not header:
        return 0
    match = re.fullmatch(r"\s*bytes=(\d+)-\s*", header)
    return int(match.group(1)) if match else None
