"""What the no-op speed-ups rely on: the stdlib HTTP client's errors, the facts script's
commands started together, the checks after health run at once, commands imported lazily."""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from provision import facts_script, plain_http
from provision.verify import Check, Endpoint, run_together


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_refused_is_a_connection_error_not_a_timeout() -> None:
    with pytest.raises(plain_http.ConnectionError) as caught:
        plain_http.get(f"http://127.0.0.1:{_free_port()}/health", timeout=2)
    assert not isinstance(caught.value, plain_http.Timeout)


def test_connect_timeout_is_both_kinds_as_in_requests() -> None:
    assert issubclass(plain_http.ConnectTimeout, plain_http.ConnectionError)
    assert issubclass(plain_http.ConnectTimeout, plain_http.Timeout)


def test_silent_server_is_a_read_timeout_and_bad_json_a_value_error() -> None:
    with socket.socket() as quiet:
        quiet.bind(("127.0.0.1", 0))
        quiet.listen()
        with pytest.raises(plain_http.Timeout) as caught:
            plain_http.get(f"http://127.0.0.1:{quiet.getsockname()[1]}/", timeout=0.3)
        assert not isinstance(caught.value, plain_http.ConnectionError)
    with pytest.raises(ValueError):
        plain_http.Response(200, "<html>").json()
    with pytest.raises(plain_http.RequestException):
        plain_http.get("https://127.0.0.1/", timeout=1)


def test_post_sends_json_and_headers_and_reads_the_answer() -> None:
    seen: dict = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            seen["body"] = self.rfile.read(int(self.headers["Content-Length"]))
            seen["auth"] = self.headers.get("Authorization")
            data = '{"ok": "é"}'.encode()
            self.send_response(201)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        got = plain_http.post(f"http://127.0.0.1:{server.server_port}/x", timeout=5,
                              json={"a": 1}, headers={"Authorization": "Bearer k"})
    finally:
        server.shutdown()
    assert (got.status_code, got.json()) == (201, {"ok": "é"})
    assert seen == {"body": b'{"a": 1}', "auth": "Bearer k"}


def test_facts_commands_started_together_really_overlap(tmp_path: Path) -> None:
    """The first command waits for a file only the second creates: run one after the other,
    the first would give up (exit 1) before the second ever ran."""
    flag = tmp_path / "flag"
    waiter = ["sh", "-c", f"for i in $(seq 100); do [ -e {flag} ] && exit 0; sleep 0.1; done; "
                          "exit 1"]
    maker = ["sh", "-c", f"sleep 0.2; touch {flag}"]
    facts_script.start_all([waiter, maker])
    assert facts_script.run(waiter)["rc"] == 0
    assert facts_script.run(maker)["rc"] == 0
    assert facts_script.run(["sh", "-c", "echo again"])["out"] == "again\n"  # not started: runs


def test_checks_after_health_run_at_once_and_keep_their_order() -> None:
    """`models` can only pass if `metrics` runs while it waits; a probe that raises is its
    own failed check, named, not a crash of the host's run."""
    metrics_ran = threading.Event()

    def check_models(_: Endpoint) -> Check:
        return Check("models", metrics_ran.wait(10), 0.0)

    def check_metrics(_: Endpoint) -> Check:
        metrics_ran.set()
        return Check("metrics", True, 0.0)

    def check_chat(_: Endpoint) -> Check:
        raise KeyError("choices")

    got = run_together([check_models, check_chat, check_metrics], Endpoint("", "", "m"))
    assert [(c.name, c.ok) for c in got] == [("models", True), ("chat", False),
                                             ("metrics", True)]
    assert "KeyError" in got[1].detail


def test_up_imports_neither_requests_nor_other_commands() -> None:
    code = ("import sys, provision.cli, provision.commands.up; "
            "print(sorted(m for m in ('requests', 'provision.commands.inventory_cmd', "
            "'provision.commands.chat_cmd', 'provision_lab') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_index_pages_fetched_early_only_without_an_exact_pin() -> None:
    refused = f"http://127.0.0.1:{_free_port()}/simple/x/"
    facts_script.start_index_fetch({"skip_index_if_installed": "2.4.0", "index_pages": [refused]})
    assert "thread" not in facts_script._EARLY
    facts_script.start_index_fetch({"skip_index_if_installed": None, "index_pages": [refused]})
    assert "thread" in facts_script._EARLY
    got = facts_script.package_index({"skip_index_if_installed": None}, {})
    assert got["skipped"] is False and got["pages"][refused]["ok"] is False
    assert facts_script._EARLY == {}
