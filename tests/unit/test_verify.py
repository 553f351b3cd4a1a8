"""provision.verify against a real HTTP server on loopback that plays each server state."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from provision.model import Settings
from provision.verify import (
    Endpoint,
    UnitState,
    check_chat,
    check_metrics,
    check_models,
    diagnostics_script,
    parse_unit_state,
    unit_state_script,
    verify,
    wait_healthy,
)

MODEL = "baidu/ERNIE-4.5-VL-28B-A3B-Paddle"


@dataclass
class Behaviour:
    health: list[int] = field(default_factory=lambda: [200])  # one per request, last repeats
    models: list[str] = field(default_factory=lambda: [MODEL])
    message: dict = field(default_factory=lambda: {"content": "Yes, ready.",
                                                   "reasoning_content": None})
    metrics: str = "# TYPE fastdeploy:num_requests_running gauge\n" \
                   "fastdeploy:num_requests_running 0.0\n"
    api_key: str | None = None
    config_info: str = '{"env_config": {}}'  # what GET /config-info dumps (upstream: FD env)
    seen: list[tuple[str, str, dict]] = field(default_factory=list)


def _handler(b: Behaviour) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def _send(self, code: int, body: bytes | str | dict, kind: str = "application/json"):
            data = json.dumps(body).encode() if isinstance(body, dict) else (
                body.encode() if isinstance(body, str) else body)
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorised(self) -> bool:
            if b.api_key and self.headers.get("Authorization") != f"Bearer {b.api_key}":
                self._send(401, {"error": "Unauthorized"})
                return False
            return True

        def do_GET(self) -> None:  # noqa: N802
            b.seen.append(("GET", self.path, dict(self.headers)))
            if self.path == "/health":
                code = b.health.pop(0) if len(b.health) > 1 else b.health[0]
                self._send(code, b"")
            elif self.path == "/v1/models" and self._authorised():
                self._send(200, {"object": "list", "data": [{"id": m} for m in b.models]})
            elif self.path == "/metrics":
                self._send(200, b.metrics, "text/plain")
            elif self.path == "/config-info":
                self._send(200, b.config_info)
            elif not self.path.startswith("/v1"):
                self._send(404, b"")

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            b.seen.append(("POST", self.path, body))
            if self._authorised():
                self._send(200, {"choices": [{"index": 0, "message": b.message,
                                              "finish_reason": "stop"}]})

        def log_message(self, *args: object) -> None:
            pass

    return Handler


class Server:
    def __init__(self, behaviour: Behaviour, port: int = 0) -> None:
        self.behaviour = behaviour
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), _handler(behaviour))
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def endpoint(self, model: str = MODEL, api_key: str | None = None) -> Endpoint:
        url = f"http://127.0.0.1:{self.port}"
        return Endpoint(api=url, metrics=url, model=model, api_key=api_key)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve() -> Iterator:
    servers: list[Server] = []

    def start(behaviour: Behaviour | None = None, port: int = 0) -> Server:
        servers.append(Server(behaviour or Behaviour(), port))
        return servers[-1]

    yield start
    for s in servers:
        s.stop()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeClock:
    """Time that moves only when the poller sleeps, so deadlines are exact and instant."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_healthy_server_passes_every_check_without_asking_the_unit(serve) -> None:
    server = serve()
    asked: list[int] = []
    checks = verify(server.endpoint(), 30, unit_state=lambda: asked.append(1) or UnitState(
        "active", "running", 0))
    assert [(c.name, c.ok) for c in checks] == [
        ("health", True), ("models", True), ("chat", True), ("metrics", True)]
    assert asked == []  # a healthy server costs no SSH exec
    chat = next(body for method, path, body in server.behaviour.seen if method == "POST")
    assert chat["chat_template_kwargs"] == {"enable_thinking": False}
    assert chat["model"] == MODEL and 0 < chat["max_tokens"] < 100


def test_refused_then_listening_is_loading_not_failure(serve) -> None:
    port, clock, started = _closed_port(), FakeClock(), []

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if len(clock.sleeps) == 3:  # the "model" finishes loading during the third pause
            started.append(serve(port=port))

    lines: list[str] = []
    check = wait_healthy(Endpoint(f"http://127.0.0.1:{port}", "", MODEL), 60,
                         progress=lines.append, progress_every=0.5, clock=clock, sleep=sleep)
    assert check.ok and started
    assert clock.sleeps == sorted(clock.sleeps)  # backoff grows
    assert lines and "connection refused" in lines[0]


def test_503_until_ready(serve) -> None:
    server = serve(Behaviour(health=[503, 503, 200]))
    clock = FakeClock()
    assert wait_healthy(server.endpoint(), 60, clock=clock, sleep=clock.sleep).ok
    assert len(clock.sleeps) == 2


def test_deadline_names_what_was_seen_and_the_fix() -> None:
    clock = FakeClock()
    check = wait_healthy(Endpoint(f"http://127.0.0.1:{_closed_port()}", "", MODEL), 20,
                         clock=clock, sleep=clock.sleep,
                         unit_state=lambda: UnitState("active", "running", 0))
    assert not check.ok and 20 <= clock.now < 26
    assert "not healthy within 20s" in check.detail and "health_timeout" in check.detail
    assert "active/running" in check.detail


def test_unit_restarting_ends_the_wait_early() -> None:
    clock = FakeClock()
    states = iter([UnitState("activating", "start", 0), UnitState("activating", "start", 1)])
    calls: list[float] = []

    def unit() -> UnitState:
        calls.append(clock.now)
        return next(states)

    check = wait_healthy(Endpoint(f"http://127.0.0.1:{_closed_port()}", "", MODEL), 1800,
                         unit_state=unit, unit_every=15, clock=clock, sleep=clock.sleep)
    assert not check.ok and "stopped while loading" in check.detail
    assert len(calls) == 2 and calls[0] >= 15 and clock.now < 60  # rare, and early


def test_failed_unit_ends_the_wait() -> None:
    clock = FakeClock()
    check = wait_healthy(Endpoint(f"http://127.0.0.1:{_closed_port()}", "", MODEL), 1800,
                         unit_state=lambda: UnitState("failed", "failed", 0, "exit-code"),
                         clock=clock, sleep=clock.sleep)
    assert not check.ok and "failed/failed" in check.detail


def test_models_must_list_the_served_model(serve) -> None:
    server = serve(Behaviour(models=["other/model"]))
    check = check_models(server.endpoint())
    assert not check.ok and "other/model" in check.detail and MODEL in check.detail


def test_chat_needs_content_not_only_reasoning(serve) -> None:
    server = serve(Behaviour(message={"content": "", "reasoning_content": "Let me think"}))
    check = check_chat(server.endpoint())
    assert not check.ok and "only reasoning_content" in check.detail


def test_bearer_key_is_sent_and_never_in_details(serve) -> None:
    server = serve(Behaviour(api_key="s3cret-key"))
    assert not check_models(server.endpoint()).ok  # without the key: 401
    checks = verify(server.endpoint(api_key="s3cret-key"), 10)
    assert all(c.ok for c in checks)
    assert all("s3cret-key" not in c.detail for c in checks)


def test_metrics_must_be_prometheus_text(serve) -> None:
    assert check_metrics(serve().endpoint()).ok
    bad = serve(Behaviour(metrics="<html>hello</html>"))
    check = check_metrics(bad.endpoint())
    assert not check.ok and "Prometheus" in check.detail


def test_unit_state_parsing_and_scripts_quote_values() -> None:
    state = parse_unit_state("ActiveState=activating\nSubState=auto-restart\nNRestarts=3\n"
                             "Result=exit-code\n")
    assert state.broken and state.restarts == 3
    assert not parse_unit_state("ActiveState=active\nSubState=running\nNRestarts=0\n").broken
    settings = Settings(service_name="fd x", log_dir="/var/log/fd dir")
    assert "'fd x'" in unit_state_script(settings)
    diag = diagnostics_script(settings)
    assert "journalctl -u 'fd x' -n 30 --no-pager" in diag
    assert "'/var/log/fd dir/workerlog.0'" in diag


def test_release_checks_pick_the_endpoints_and_the_401_proof(serve) -> None:
    """C2/C3: no /v1/models check where the release lacks it; with an enforced key, a
    request without it must get 401, and an open API fails verify."""
    import dataclasses

    from provision.model import ServerChecks
    from provision.verify import check_auth

    keyed = serve(Behaviour(api_key="s3cret-key"))
    endpoint = dataclasses.replace(keyed.endpoint(api_key="s3cret-key"),
                                   checks=ServerChecks(api_key=True))
    names = [c.name for c in verify(endpoint, 10)]
    assert names == ["health", "models", "api-key", "chat", "metrics"]
    assert all(c.ok for c in verify(endpoint, 10))
    open_api = serve(Behaviour())
    check = check_auth(dataclasses.replace(open_api.endpoint(api_key="s3cret-key"),
                                           checks=ServerChecks(api_key=True)))
    assert not check.ok and "open to anyone" in check.detail
    old = dataclasses.replace(open_api.endpoint(), checks=ServerChecks(models_endpoint=False))
    assert [c.name for c in verify(old, 10)] == ["health", "chat", "metrics"]


def test_thinking_switch_and_tokens_are_sent(serve) -> None:
    import dataclasses

    from provision.model import ServerChecks

    server = serve()
    endpoint = dataclasses.replace(server.endpoint(), checks=ServerChecks(
        chat_template_kwargs=None, max_tokens=2048))
    assert check_chat(endpoint).ok
    body = server.behaviour.seen[-1][2]
    assert "chat_template_kwargs" not in body and body["max_tokens"] == 2048


def test_key_hidden_fails_when_config_info_leaks_the_key(serve) -> None:
    import dataclasses

    from provision.verify import check_key_hidden

    server = serve(Behaviour(config_info='{"env_config": {"FD_API_KEY": "s3cret-key"}}'))
    url = f"http://127.0.0.1:{server.port}"
    leak = dataclasses.replace(server.endpoint(api_key="s3cret-key"), outside_metrics=url)
    got = check_key_hidden(leak)
    assert not got.ok and "s3cret-key" not in got.detail
    server.behaviour.config_info = '{"env_config": {}}'
    assert check_key_hidden(leak).ok
    closed = dataclasses.replace(leak, outside_metrics=f"http://127.0.0.1:{_closed_port()}")
    assert check_key_hidden(closed).ok
