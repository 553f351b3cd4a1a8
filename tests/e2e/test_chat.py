"""Issue 10's acceptance tests for `provision chat`, against a lab host deployed by `up`.

The interactive mode runs in a real pseudo-terminal (stdlib `pty`): the test types, reads
the screen, attaches an image and presses Ctrl-C, as a person would. The stand-in server
says what image it received (type, bytes, PNG size), so an image that never arrives fails.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KEY = "chat-test-key-5a1f"  # the API key the host is deployed with; must never show up
SLOW = "tell me a slow story"  # a canned answer that takes long enough to interrupt


def png(width: int, height: int) -> bytes:
    """A real, valid PNG (one grey pixel row repeated), so its size and type are known."""
    def block(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + block(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0,
                                                               0, 0, 0))
            + block(b"IDAT", zlib.compress(rows)) + block(b"IEND", b""))


@pytest.fixture(scope="module")
def host(lab) -> Iterator[object]:
    [booted] = lab.add_hosts(["a100"])
    yield booted
    lab.remove_host(booted.name)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def inventory(lab, host, home) -> str:
    """The lab's inventory with the API key set in it, as a user keeps it; `up` deploys."""
    data = yaml.safe_load(lab.inventory().read_text())
    data["all"]["vars"]["api_key"] = KEY
    path = home / "inventory.yml"
    path.write_text(yaml.safe_dump(data))
    done = provision(home, "up", "-i", str(path), "--host", host.name)
    assert done.returncode == 0, done.stdout + done.stderr
    lab.write_answers({SLOW: {"text": "Once upon a time.", "delay_s": 60}}, [host.name])
    return str(path)


def _env(home: Path) -> dict:
    return dict(os.environ, HOME=str(home), PYTHONPATH=str(ROOT), TERM="dumb")


def provision(home: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "provision.cli", *args], cwd=ROOT,
                          env=_env(home), capture_output=True, text=True, timeout=timeout)


class Terminal:
    """A program on a pseudo-terminal: type into it, wait for text on its screen."""

    def __init__(self, argv: list[str], env: dict) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: a session leader with the pty as its terminal
            os.chdir(ROOT)
            os.execve(argv[0], argv, env)
        self.screen = ""  # everything shown so far
        self.mark = 0  # where the next expect() starts looking

    def expect(self, pattern: str, timeout: float = 30) -> str:
        """The screen text from the mark up to the first match; the mark moves past it."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while True:
            found = regex.search(self.screen, self.mark)
            if found:
                seen, self.mark = self.screen[self.mark:found.end()], found.end()
                return seen
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"{pattern!r} not on screen within {timeout}s; "
                            f"screen since mark:\n{self.screen[self.mark:]}")
            ready, _, _ = select.select([self.fd], [], [], min(left, 0.5))
            if ready:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:  # the child closed the terminal
                    data = b""
                if not data:
                    pytest.fail(f"{pattern!r} never shown; the program ended:\n"
                                f"{self.screen[self.mark:]}")
                self.screen += data.decode("utf-8", "replace")

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def wait(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            try:  # keep draining the screen so the child never blocks on output
                if select.select([self.fd], [], [], 0.2)[0]:
                    self.screen += os.read(self.fd, 65536).decode("utf-8", "replace")
            except OSError:
                time.sleep(0.2)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        pytest.fail(f"the chat did not end within {timeout}s:\n{self.screen[self.mark:]}")

    def close(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(self.fd)


@pytest.fixture
def terminal(inventory, host, home) -> Iterator[Terminal]:
    term = Terminal([sys.executable, "-m", "provision.cli", "chat", "-i", inventory,
                     "--host", host.name], _env(home))
    yield term
    term.close()


def test_interactive_chat_streams_thinks_reads_images_and_survives_ctrl_c(
        terminal: Terminal, tmp_path: Path) -> None:
    term = terminal
    term.expect(r"Chatting with baidu/ERNIE-4\.5-VL-28B-A3B-Paddle on gpu\d+")
    term.expect(r"you> ")
    term.type("Hello, who are you?\r")
    turn = term.expect(r"you> ")
    # the reasoning comes first, dimmed, apart from the answer
    assert re.search(r"\x1b\[2mthinking: The user asks: 'Hello, who are you\?'", turn), turn
    assert re.search(r"\x1b\[0m\r?\nHello from baidu/ERNIE-4\.5-VL-28B-A3B-Paddle", turn), turn

    term.type("/think off\r")
    term.expect(r"\(thinking off\)")
    term.expect(r"you> ")
    term.type("And again?\r")
    turn = term.expect(r"you> ")
    assert "Hello from" in turn and "thinking:" not in turn, turn  # the model's switch is off

    image = tmp_path / "pixel grid.png"
    image.write_bytes(png(7, 5))
    term.type(f"/image {image}\r")
    term.expect(r"\(image pixel grid\.png attached to your next question\)")
    term.expect(r"you> ")
    term.type("What is in this picture?\r")
    turn = term.expect(r"you> ")
    assert f"[image: image/png, {len(image.read_bytes())} bytes, 7x5]" in turn, turn

    term.type(SLOW + "\r")
    time.sleep(2)  # the answer is under way (the server holds it for a minute)
    started = time.monotonic()
    term.type("\x03")  # Ctrl-C
    term.expect(r"\[stopped\]", timeout=10)
    term.expect(r"you> ", timeout=10)
    assert time.monotonic() - started < 10
    term.type("Still there?\r")
    assert "Hello from" in term.expect(r"you> ")  # the session went on after Ctrl-C

    saved = tmp_path / "conversation.json"
    term.type(f"/save {saved}\r")
    term.expect(r"\(saved \d+ messages")
    term.expect(r"you> ")
    term.type("/exit\r")
    assert term.wait() == 0
    data = json.loads(saved.read_text())
    questions = [t["question"] for t in data["turns"]]
    assert questions == ["Hello, who are you?", "And again?", "What is in this picture?", SLOW,
                         "Still there?"]
    assert data["turns"][3]["stopped"] is True
    assert data["messages"][4]["content"][0]["image_url"]["url"].startswith(
        "data:image/png;base64,")
    assert KEY not in term.screen and KEY not in saved.read_text()


def test_one_shot_json_with_an_image(inventory, host, home, tmp_path: Path) -> None:
    image = tmp_path / "x.png"
    image.write_bytes(png(3, 2))
    done = provision(home, "chat", "-i", inventory, "--host", host.name, "-m", "Describe it",
                     "--image", str(image), "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["answer"].startswith(f"[image: image/png, {len(image.read_bytes())} bytes, 3x2]")
    assert "Describe it" in data["reasoning"]
    assert data["latency_first_token_s"] > 0 and data["tokens_per_s"] > 0
    assert KEY not in done.stdout + done.stderr


def test_one_shot_plain_prints_only_the_answer(inventory, host, home) -> None:
    done = provision(home, "chat", "-i", inventory, "--host", host.name, "-m", "Hi",
                     "--no-think")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Hello from baidu/ERNIE-4.5-VL-28B-A3B-Paddle")
    assert "thinking" not in done.stdout


def test_a_wrong_key_and_a_down_server_are_one_line_each(inventory, host, home) -> None:
    wrong = provision(home, "chat", "-i", inventory, "--host", host.name, "-m", "Hi",
                      "-e", "api_key=not-the-key")
    assert wrong.returncode == 1 and "HTTP 401" in wrong.stderr
    assert "not-the-key" not in wrong.stdout + wrong.stderr

    host.ssh("systemctl stop fastdeploy", check=True)
    try:
        down = provision(home, "chat", "-i", inventory, "--host", host.name, "-m", "Hi")
    finally:
        host.ssh("systemctl start fastdeploy", check=True)
    assert down.returncode == 1
    lines = down.stderr.strip().splitlines()
    assert len(lines) == 1, down.stderr  # no traceback
    assert "unit fastdeploy is inactive/dead" in lines[0]
    assert f"Fix: provision up -i {inventory} --host {host.name}" in lines[0]
    assert "Traceback" not in down.stderr and KEY not in down.stderr


def test_config_errors_exit_2_before_any_connection(home, tmp_path: Path) -> None:
    missing = provision(home, "chat", "-i", str(tmp_path / "none.yml"), "--host", "gpu1",
                        "-m", "Hi")
    assert missing.returncode == 2 and "the inventory does not exist" in missing.stderr
    usage = provision(home, "chat", "--host", "gpu1", "--json")
    assert usage.returncode == 2 and "--image and --json go with -m" in usage.stderr
