"""Finding F: each package-index failure named by its cause, from the real probe against real
HTTP servers (500, 404, closed, hung, version missing, no wheel for this Python)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from provision import pipfail

PIP_SAYS = ("ERROR: Could not find a version that satisfies the requirement "
            "paddlepaddle-gpu==3.3.1 (from versions: none)\n"
            "ERROR: No matching distribution found for paddlepaddle-gpu==3.3.1\n")
PAGES = {
    "versions": ["paddlepaddle_gpu-3.0.0-cp311-cp311-linux_x86_64.whl"],
    "pyver": ["paddlepaddle_gpu-3.3.1-cp38-cp38-linux_x86_64.whl",
              "paddlepaddle_gpu-3.3.1-cp39-cp39-linux_x86_64.whl"],
    "fits": ["paddlepaddle_gpu-3.3.1-cp311-cp311-linux_x86_64.whl"],
}


def _server(mode: str) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if mode == "hung":
                time.sleep(5)
                return
            if mode in ("500", "404"):
                self.send_response(int(mode))
                self.end_headers()
                return
            body = "".join(f'<a href="/f/{f}">{f}</a>\n' for f in PAGES[mode]).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


@pytest.fixture
def index() -> Iterator[callable]:
    started: list[ThreadingHTTPServer] = []

    def start(mode: str) -> str:
        if mode == "closed":
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                return f"http://127.0.0.1:{s.getsockname()[1]}/cu126/"
        httpd = _server(mode)
        started.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}/cu126/"

    yield start
    for httpd in started:
        httpd.shutdown()


def _probe(url: str) -> str:
    line = pipfail.probe_line(sys.executable, url, "paddlepaddle-gpu", timeout_s=1)
    return subprocess.run(["sh", "-c", line], capture_output=True, text=True,
                          timeout=30).stdout


@pytest.mark.parametrize("mode, kind, words", [
    ("500", "http", "HTTP 500"),
    ("404", "missing-project", "HTTP 404"),
    ("closed", "unreachable", "unreachable"),
    ("hung", "unreachable", "timed out"),
    ("versions", "version-missing", "it lists: 3.0.0"),
    ("pyver", "no-wheel-for-python", "cp38, cp39; this host has Python 3.11.2"),
    ("fits", "unknown", "pip_extra_index_url"),
])
def test_each_index_failure_is_named_by_its_cause(index, mode: str, kind: str,
                                                  words: str) -> None:
    url = index(mode)
    cause = pipfail.classify(PIP_SAYS + _probe(url), "paddlepaddle-gpu==3.3.1", "3.11.2")
    assert cause.kind == kind and words in cause.message, cause
    assert "Fix:" in cause.message or kind == "unknown"
    if kind != "unreachable" or mode == "closed":
        assert url.rstrip("/") in cause.message


def test_pip_retry_warning_without_a_probe_is_unreachable() -> None:
    output = ("WARNING: Retrying (Retry(total=0)) after connection broken by 'NewConnectionError("
              "...: Failed to establish a new connection: [Errno 111] Connection refused')'\n")
    assert pipfail.classify(output + PIP_SAYS, "x==1", "3.10.12").kind == "unreachable"


@pytest.mark.parametrize("tag, abi, python, fits", [
    ("cp310", "cp310", "3.10.12", True), ("cp310", "cp310", "3.11.2", False),
    ("py3", "none", "3.12.1", True), ("cp38", "abi3", "3.11.2", True),
    ("cp312", "abi3", "3.11.2", False),
])
def test_fits_python(tag: str, abi: str, python: str, fits: bool) -> None:
    assert pipfail.fits_python(tag, abi, python) is fits
