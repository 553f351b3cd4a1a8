"""The fleet share: who fetches and who copies (threads), the copy scripts under a real sh
with real tar and sha256sum, and the relay between two real SSH connections."""

from __future__ import annotations

import os
import re
import secrets
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from provision.connection import Remote, RemoteCancelled, RemoteTimeout
from provision.direct_copy import NoPath, direct
from provision.direct_ends import NO_PATH, OK, SENDER, receive_prefix, send_prefix
from provision.model import HostSpec, Settings
from provision.relay import relay
from provision.share import (
    FleetShare,
    Source,
    announced_path,
    digest_of,
    place_script,
    receive_script,
    secret_inside,
    source_script,
    weights_source_script,
)
from tests.unit.sshd_server import Sshd
from tests.unit.sshd_server import free_port as sshd_free_port

SPEC = HostSpec(name="gpu1", address="10.0.0.1")
SOURCE = Source(SPEC, Settings())


# --------------------------------------------------------------------------- who fetches


def test_the_first_host_fetches_and_the_others_copy_from_it() -> None:
    share, abort = FleetShare(), threading.Event()
    first = share.claim(("release", "r1"), "gpu1", 5, abort)
    assert first.fetch and first.owner
    got: list = []
    waiter = threading.Thread(target=lambda: got.append(
        share.claim(("release", "r1"), "gpu2", 30, abort)))
    waiter.start()
    time.sleep(0.3)
    assert not got, "gpu2 waits while gpu1 fetches"
    share.done(("release", "r1"), SOURCE)
    waiter.join(5)
    assert got and not got[0].fetch and got[0].source == SOURCE and got[0].waited_s >= 0.2
    other = share.claim(("release", "r2"), "gpu2", 5, abort)
    assert other.owner, "another release is another fetch"


def test_when_the_owner_fails_the_next_host_fetches() -> None:
    share, abort = FleetShare(), threading.Event()
    share.claim(("weights", "m"), "gpu1", 5, abort)
    got: list = []
    waiter = threading.Thread(target=lambda: got.append(
        share.claim(("weights", "m"), "gpu2", 30, abort)))
    waiter.start()
    time.sleep(0.2)
    share.done(("weights", "m"), None)
    waiter.join(5)
    assert got and got[0].fetch and got[0].owner


def test_a_wait_is_bounded_and_cut_short_by_an_interruption() -> None:
    share, abort = FleetShare(), threading.Event()
    share.claim(("release", "r"), "gpu1", 5, abort)
    said: list[str] = []
    start = time.monotonic()
    alone = share.claim(("release", "r"), "gpu2", 0.5, abort, say=said.append)
    assert alone.fetch and not alone.owner and 0.4 < time.monotonic() - start < 3
    assert said and "gpu1" in said[0]
    threading.Timer(0.3, abort.set).start()
    start = time.monotonic()
    assert share.claim(("release", "r"), "gpu3", 60, abort).fetch
    assert time.monotonic() - start < 3


# --------------------------------------------------------------------------- the scripts


def _sh(script: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", script], input=stdin, capture_output=True, timeout=60)


def _tree(root: Path) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "tool").write_bytes(os.urandom(300_000))
    (root / "bin" / "tool").chmod(0o755)
    (root / "lib.txt").write_text("library\n")
    (root / "bin" / "python").symlink_to("/usr/bin/python3")
    return root


def _copy(parent: Path, name: str, dest: Path) -> tuple[str | None, str | None]:
    sent = _sh(source_script(str(parent), name))
    assert sent.returncode == 0, sent.stderr
    got = _sh(receive_script(str(dest)), sent.stdout)
    assert got.returncode == 0, got.stderr
    return digest_of(sent.stderr.decode()), digest_of(got.stdout.decode())


def test_a_copied_tree_has_the_same_digest_and_contents(tmp_path: Path) -> None:
    _tree(tmp_path / "src" / "rel-1")
    expected, arrived = _copy(tmp_path / "src", "rel-1", tmp_path / "dst" / "rel-1.partial")
    assert expected and expected == arrived
    copied = tmp_path / "dst" / "rel-1.partial"
    assert (copied / "bin" / "tool").read_bytes() == (tmp_path / "src/rel-1/bin/tool").read_bytes()
    assert os.readlink(copied / "bin" / "python") == "/usr/bin/python3"
    assert (copied / "bin" / "tool").stat().st_mode & 0o777 == 0o755


@pytest.mark.parametrize("change", ["content", "mode", "link", "extra"])
def test_the_digest_tells_any_difference(tmp_path: Path, change: str) -> None:
    a, b = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    (b / "bin" / "tool").write_bytes((a / "bin" / "tool").read_bytes())
    digest = lambda p: digest_of(_sh(receive_script(str(tmp_path / "x")), _tar(p)).stdout.decode())  # noqa: E731
    assert digest(a) == digest(b)
    if change == "content":
        (b / "lib.txt").write_text("librarz\n")
    elif change == "mode":
        (b / "lib.txt").chmod(0o600)
    elif change == "link":
        (b / "bin" / "python").unlink()
        (b / "bin" / "python").symlink_to("/usr/bin/python3.10")
    else:
        (b / "stray").write_text("")
    assert digest(a) != digest(b)


def _tar(path: Path) -> bytes:
    return subprocess.run(["tar", "-C", str(path.parent), "-cf", "-", path.name],
                          capture_output=True, check=True).stdout


def test_weights_come_only_from_a_complete_expected_directory(tmp_path: Path) -> None:
    cache = tmp_path / "models"
    incomplete = cache / "PaddlePaddle" / "ERNIE-x"
    incomplete.mkdir(parents=True)
    (incomplete / "shard-1").write_bytes(b"half")
    candidates = (str(cache / "PaddlePaddle" / "ERNIE-x"), str(cache / "baidu" / "ERNIE-x"))
    none = _sh(weights_source_script(candidates))
    assert none.returncode == 3 and b"no complete copy" in none.stderr
    done = cache / "baidu" / "ERNIE-x"
    done.mkdir(parents=True)
    (done / "config.json").write_text("{}")
    (done / "shard-1").write_bytes(os.urandom(1000))
    sent = _sh(weights_source_script(candidates))
    assert sent.returncode == 0, sent.stderr
    assert announced_path(sent.stderr.decode(), candidates) == str(done)
    assert announced_path(sent.stderr.decode(), candidates[:1]) is None  # not one we expect
    staging = tmp_path / "host2" / ".provision-incoming-ERNIE-x"
    got = _sh(receive_script(str(staging)), sent.stdout)
    assert digest_of(got.stdout.decode()) == digest_of(sent.stderr.decode())
    target = tmp_path / "host2" / "baidu" / "ERNIE-x"
    assert _sh(place_script(str(staging), str(target))).returncode == 0
    assert (target / "shard-1").read_bytes() == (done / "shard-1").read_bytes()
    assert not staging.exists()


def test_digest_output_is_read_strictly() -> None:
    good = "a" * 64
    assert digest_of(f"noise\nprovision-digest: {good}\n") == good
    assert digest_of(f"provision-digest: {good}; rm -rf /\n") is None
    assert digest_of("provision-digest: XYZ\n") is None


# --------------------------------------------------------------------------- the relay


@pytest.fixture()
def pair(sshd: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Two connections to the loopback sshd, standing for two hosts of a fleet."""
    monkeypatch.setenv("HOME", str(tmp_path))
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts_line())
    settings = Settings(known_hosts_file=str(known))
    remotes = [Remote(HostSpec(name=n, address="127.0.0.1", port=sshd.port, user="root",
                               key_file=str(sshd.client_key)), settings) for n in ("gpu1", "gpu2")]
    for remote in remotes:
        remote.open()
    yield remotes
    for remote in remotes:
        remote.close()


def test_relay_streams_a_tree_between_two_connections(pair, sshd: Sshd, tmp_path: Path) -> None:
    source, target = pair
    tree = _tree(tmp_path / "src" / "rel")
    (tree / "big").write_bytes(os.urandom(24 << 20))  # many windows of the SSH channel
    before = sshd.exec_requests()
    seen: list[int] = []
    sent, got = relay(source, source_script(str(tree.parent), "rel"), target,
                      receive_script(str(tmp_path / "dst")), 60,
                      progress=lambda n, s: seen.append(n), progress_every=0.01)
    assert sent.ok and got.ok, (sent, got)
    assert digest_of(sent.stderr) == digest_of(got.stdout) is not None
    assert (tmp_path / "dst" / "big").read_bytes() == (tree / "big").read_bytes()
    assert sshd.exec_requests() - before == 2 and source.exec_requests == target.exec_requests == 1
    assert seen and max(seen) > 0


def test_relay_reports_a_failing_source(pair, tmp_path: Path) -> None:
    source, target = pair
    sent, got = relay(source, "echo 'no such release' >&2; exit 7", target,
                      receive_script(str(tmp_path / "dst")), 30)
    assert sent.rc == 7 and "no such release" in sent.stderr
    assert digest_of(sent.stderr) is None


def _alive(marker: str) -> bool:
    return subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 0


@pytest.mark.parametrize("how", ["timeout", "cancel"])
def test_a_stopped_relay_stops_both_ends_on_the_hosts(pair, how: str) -> None:
    source, target = pair
    cancel = threading.Event()
    if how == "cancel":
        threading.Timer(1.0, cancel.set).start()
    start = time.monotonic()
    with pytest.raises(RemoteTimeout if how == "timeout" else RemoteCancelled):
        relay(source, "while :; do echo y; sleep 0.01; done # provision-relay-src", target,
              "sleep 300 # provision-relay-dst", 2 if how == "timeout" else 60, cancel=cancel)
    assert time.monotonic() - start < 25
    deadline = time.monotonic() + 10
    while (_alive("provision-relay-src") or _alive("provision-relay-dst")) \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive("provision-relay-src") and not _alive("provision-relay-dst")


# --------------------------------------------------------------------------- the direct path


def _ends(tree: Path, dest: Path) -> tuple[str, str]:
    return (source_script(str(tree.parent), tree.name, send_prefix()),
            receive_script(str(dest), receive_prefix()))


def test_direct_streams_a_tree_host_to_host(pair, sshd: Sshd, tmp_path: Path) -> None:
    """Both ends on the loopback host: the stream goes over one TCP connection between
    them (the receiver says how many bytes it read from it), not through the SSH channels,
    and the token never appears in any command line."""
    source, target = pair
    tree = _tree(tmp_path / "src" / "rel")
    (tree / "big").write_bytes(os.urandom(24 << 20))
    before = sshd.exec_requests()
    seen: list[int] = []
    send, receive = _ends(tree, tmp_path / "dst")
    got = direct(source, send, target, receive, 60,
                 progress=lambda n, s: seen.append(n), progress_every=0.01)
    assert not isinstance(got, NoPath), got
    sent, received = got
    assert sent.ok and received.ok, (sent, received)
    assert digest_of(sent.stderr) == digest_of(received.stdout) is not None
    assert (tmp_path / "dst" / "big").read_bytes() == (tree / "big").read_bytes()
    assert re.search(r"^provision-direct: got (\d+)$", received.stdout, re.M)
    total = int(re.findall(r"^provision-direct: got (\d+)$", received.stdout, re.M)[-1])
    assert total > 24 << 20, "the tar stream came over the direct connection"
    assert "sending to 127.0.0.1" in sent.stderr
    assert sshd.exec_requests() - before == 2
    assert seen and max(seen) > 0


def _sender(token: str, target: str = "127.0.0.1", accept_s: float = 5) -> subprocess.Popen:
    """The sender program as a host runs it, here, streaming `echo secret-stream`."""
    proc = subprocess.Popen(["python3", "-c", SENDER, str(accept_s), "--", "echo",
                             "secret-stream"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(f"{token} {target}\n".encode())
    proc.stdin.flush()
    return proc


def _listening(proc: subprocess.Popen) -> int:
    words = proc.stdout.readline().decode().split()
    assert words[:2] == ["provision-direct:", "listen"] and words[3] == "127.0.0.1", words
    return int(words[2])


def _connect(port: int, send: bytes) -> tuple[socket.socket, tuple[str, int]]:
    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn.sendall(send)
    return conn, conn.getsockname()


def _read_all(conn: socket.socket) -> bytes:
    """Everything the sender sent before it closed (a close with our token unread is a
    reset: still the end)."""
    data = b""
    try:
        while chunk := conn.recv(4096):
            data += chunk
    except ConnectionResetError:
        pass
    return data


@pytest.mark.parametrize("wrong, said", [("token", b"wrong token"), ("peer", b"not the target")])
def test_the_sender_refuses_a_wrong_token_or_a_peer_this_machine_did_not_name(
        wrong: str, said: bytes) -> None:
    token = secrets.token_hex(32)
    proc = _sender(token)
    port = _listening(proc)
    sent = secrets.token_hex(32) if wrong == "token" else token
    conn, (addr, own) = _connect(port, (sent + "\n").encode())
    named = own + 1 if wrong == "peer" else own  # another port: another peer
    proc.stdin.write(f"{addr} {named}\n".encode())
    proc.stdin.close()
    assert _read_all(conn) == b"", "nothing is sent to a wrong peer or without the token"
    assert proc.wait(10) == NO_PATH
    assert said in proc.stderr.read()


def test_the_sender_takes_the_named_peer_with_the_token_and_only_once() -> None:
    token = secrets.token_hex(32)
    proc = _sender(token)
    port = _listening(proc)
    conn, (addr, own) = _connect(port, (token + "\n").encode())
    proc.stdin.write(f"{addr} {own}\n".encode())
    proc.stdin.close()
    assert _read_all(conn) == OK + b"secret-stream\n"
    assert proc.wait(10) == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2)


def test_the_sender_gives_up_when_nobody_comes() -> None:
    start = time.monotonic()
    proc = _sender(secrets.token_hex(32), accept_s=1.5)
    _listening(proc)
    assert proc.wait(10) == NO_PATH and time.monotonic() - start < 8
    assert b"no word from the control machine" in proc.stderr.read()


def test_direct_gives_no_path_when_the_source_cannot_be_reached(pair, tmp_path: Path) -> None:
    """A sender that never listens where the receiver looks (its host's address unreachable
    here: a port nobody listens on) ends in NoPath quickly, both ends stopped."""
    source, target = pair
    tree = _tree(tmp_path / "src" / "rel")
    # the sender says a port on which nothing listens: what a firewall or a wrong address gives
    fake = ("printf 'provision-direct: listen %s 127.0.0.1\\n' "
            f"{sshd_free_port()}; sleep 30 # provision-direct-fake")
    start = time.monotonic()
    got = direct(source, fake, target, _ends(tree, tmp_path / "dst")[1], 60)
    assert isinstance(got, NoPath) and "could not reach" in got.why, got
    assert "refused" in got.why.lower(), got
    assert time.monotonic() - start < 20
    deadline = time.monotonic() + 10
    while _alive("provision-direct-fake") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive("provision-direct-fake")


def test_secret_files_never_go_host_to_host() -> None:
    settings = Settings(model_cache_dir="/var/lib/fd/models", env_file="/var/lib/fd/models/b/m/env")
    assert secret_inside(settings, ("/var/lib/fd/models/b/m",)) == "/var/lib/fd/models/b/m/env"
    assert secret_inside(settings, ("/var/lib/fd/models/b/m2",)) is None
    assert secret_inside(Settings(), ("/opt/fastdeploy/releases/r1",)) is None


def test_a_failed_receiver_does_not_wait_for_a_stuck_sender(pair) -> None:
    """The receiver's end fails mid-stream while the sender's end goes on (as one blocked in
    a write to a peer that vanished does): direct() returns the failure at once and stops the
    sender on its host, instead of waiting for it up to the copy's limit."""
    source, target = pair
    send = send_prefix() + "sh -c 'cat /dev/zero; sleep 300' # provision-direct-stuck"
    receive = receive_prefix() + "sh -c 'head -c 100000 >/dev/null; exit 3'"
    start = time.monotonic()
    got = direct(source, send, target, receive, 120)
    assert not isinstance(got, NoPath), got
    sent, received = got
    assert received.rc == 1 and "broken after" in received.stderr, received
    assert time.monotonic() - start < 30
    deadline = time.monotonic() + 10
    while _alive("provision-direct-stuck") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive("provision-direct-stuck")
