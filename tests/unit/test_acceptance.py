"""Acceptance verdicts, both ways, and the HTTP path against a real local server."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from provision import acceptance
from provision.acceptance import judge, last_number, load_prompts, run_acceptance
from provision.sandbox import SandboxRun
from provision.verify import Endpoint
from provision_lab.answers import lab_answers

PROB = next(p for p in load_prompts() if p.name == "probability")
PROGRAM = next(p for p in load_prompts() if p.name == "program")
# The lab's canned answers (its own data, never the tool's): right answers to every prompt.
LAB_ANSWERS = lab_answers()
PROGRAM_ANSWER = LAB_ANSWERS[PROGRAM.key]


def _local(program: str, args: list[str], timeout_s: float) -> SandboxRun:
    """A stand-in sandbox for these tests only: the programs here are the test's own text."""
    try:
        got = subprocess.run([sys.executable, "-I", "-", *args], input=program, text=True,
                             capture_output=True, timeout=timeout_s, env={})
    except subprocess.TimeoutExpired:
        return SandboxRun(124, "", "", timed_out=True)
    return SandboxRun(got.returncode, got.stdout, got.stderr)


@pytest.mark.parametrize("answer", [
    "2/11", "The answer is 2/11.", "≈ 0.1818", "0.18", "about 18.2%", "1/6 is wrong; it is 2/11",
    "Answer: 2 / 11",
])
def test_probability_right_answers_pass(answer: str) -> None:
    assert judge(PROB.kind, PROB.expected, answer).ok


@pytest.mark.parametrize("answer", ["1/6", "5/36", "11/36", "2/11 no wait, 1/11", "0.2", "no idea"])
def test_probability_wrong_answers_fail_with_the_expected_value(answer: str) -> None:
    verdict = judge(PROB.kind, PROB.expected, answer)
    assert not verdict.ok
    assert "2/11" in verdict.reason


def test_empty_answer_fails() -> None:
    verdict = judge(PROB.kind, PROB.expected, "   ")
    assert not verdict.ok and "empty" in verdict.reason


def test_last_number_takes_the_final_answer() -> None:
    assert last_number("first 1/6, finally 2/11") == acceptance.Fraction(2, 11)
    assert last_number("nothing here") is None


def test_words_are_matched_as_words() -> None:
    assert judge("contains_word", ["au"], "Au").ok
    assert not judge("contains_word", ["au"], "Gold is shiny, because of its aura").ok


def test_program_is_run_and_checked() -> None:
    assert judge(PROGRAM.kind, PROGRAM.expected, PROGRAM_ANSWER, _local).ok
    wrong = "```python\ndef add_digits(n):\n    return n % 10\n```"
    verdict = judge(PROGRAM.kind, PROGRAM.expected, wrong, _local)
    assert not verdict.ok and "returned 4, expected 10" in verdict.reason
    missing = judge(PROGRAM.kind, PROGRAM.expected, "def other(n): return 1", _local)
    assert not missing.ok and "no function add_digits" in missing.reason
    crash = judge(PROGRAM.kind, PROGRAM.expected, "def add_digits(n):\n    raise KeyError('x')",
                  _local)
    assert not crash.ok and "KeyError" in crash.reason


def test_model_code_never_runs_on_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding K: without a sandbox on the host, the program is not run at all."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model's program was started on this machine")

    monkeypatch.setattr(subprocess, "run", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    verdict = judge(PROGRAM.kind, PROGRAM.expected, PROGRAM_ANSWER)
    assert not verdict.ok and "not run" in verdict.reason


def test_sandbox_command_isolates_and_keeps_the_code_off_argv() -> None:
    from provision.sandbox import host_sandbox, sandbox_command

    command = sandbox_command("/usr/bin/python3", ["[1]"], 5)
    for prop in ("DynamicUser=yes", "PrivateNetwork=yes", "ProtectSystem=strict",
                 "MemoryMax=", "RuntimeMaxSec=5"):
        assert prop in command
    sent = []
    sandbox = host_sandbox(lambda script, t, stdin: (sent.append((script, stdin)) or (0, "[]", "")))
    sandbox("def add_digits(n): return 'SECRET-CODE'", ["[]"], 5)
    assert b"SECRET-CODE" in sent[0][1] and "SECRET-CODE" not in sent[0][0]


def test_program_that_never_returns_is_stopped() -> None:
    loop = "def add_digits(n):\n    while True:\n        pass\n"
    verdict = acceptance.judge_python_function(PROGRAM.expected, loop, _local, timeout_s=1.0)
    assert not verdict.ok and "did not return" in verdict.reason


def test_png_is_a_valid_png() -> None:
    data = acceptance.png_square((255, 0, 0), size=4)
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and data.endswith(b"IEND\xaeB`\x82")


# --------------------------------------------------------------------------- real HTTP


class _Server:
    """Answers chats by substring, like the lab's stand-in; can be slow or fail."""

    def __init__(self, answers: dict[str, object]) -> None:
        self.answers = answers
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                content = body["messages"][-1]["content"]
                text = content if isinstance(content, str) else content[-1]["text"]
                reply: object = ""
                for key, value in server.answers.items():
                    if key in text.lower():
                        reply = value
                if isinstance(reply, tuple):  # (status or delay, text)
                    code, reply = reply
                    if code == "sleep":
                        time.sleep(3)
                    else:
                        self.send_response(code)
                        self.end_headers()
                        self.wfile.write(str(reply).encode())
                        return
                payload = json.dumps({"choices": [{"message": {"content": reply}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server(dict(LAB_ANSWERS))
    thread = threading.Thread(target=srv.httpd.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def _endpoint(srv: _Server) -> Endpoint:
    return Endpoint(api=srv.url, metrics=srv.url, model="m")


def test_all_pass_with_right_answers_and_vision_sends_an_image(server: _Server) -> None:
    checks = run_acceptance(_endpoint(server), vision=True, timeout_s=10, sandbox=_local)
    assert [c.name for c in checks] == [f"acceptance:{p.name}" for p in load_prompts()]
    assert all(c.ok for c in checks), [c.detail for c in checks if not c.ok]
    image = server.requests[-1]["messages"][0]["content"][0]["image_url"]["url"]
    assert image.startswith("data:image/png;base64,")


def test_text_models_skip_the_vision_prompt(server: _Server) -> None:
    names = [c.name for c in run_acceptance(_endpoint(server), vision=False, timeout_s=10)]
    assert "acceptance:vision" not in names and len(names) == 4


def test_wrong_empty_slow_and_failing_answers(server: _Server) -> None:
    server.answers.update({
        "at least one die shows a 5": "It is 1/6.",
        "chemical symbol of gold": "",
        "the projector broke": ("sleep", ""),
        "add_digits": (500, "engine error"),
    })
    checks = {c.name: c for c in run_acceptance(_endpoint(server), vision=False, timeout_s=1)}
    assert not checks["acceptance:probability"].ok
    assert "expected 2/11" in checks["acceptance:probability"].detail
    assert "empty" in checks["acceptance:knowledge"].detail
    assert "no answer within 1s" in checks["acceptance:language"].detail
    assert checks["acceptance:language"].seconds >= 1
    assert "HTTP 500" in checks["acceptance:program"].detail
