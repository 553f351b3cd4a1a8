"""provision.connection against a real OpenSSH sshd on loopback (no lab VM needed)."""

from __future__ import annotations

import http.server
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import requests
import yaml

from provision.become import BECOME_EXIT
from provision.connection import (
    HostKeyChangedError,
    HostKeyUnknownError,
    Remote,
    RemoteTimeout,
    fingerprint,
    resolve_endpoint,
)
from provision.inventory import load_inventory
from provision.local import LocalRemote
from provision.model import HostSpec, Settings, UnreachableError
from tests.unit.sshd_server import Sshd, free_port, new_key


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep the real ~/.ssh (known_hosts, config) out of every test."""
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def _spec(sshd: Sshd, **kw) -> HostSpec:
    base = HostSpec(name="box", address="127.0.0.1", port=sshd.port, user="root",
                    key_file=str(sshd.client_key))
    return replace(base, **kw)


def _settings(tmp_path: Path, known: str | None) -> Settings:
    path = tmp_path / "known_hosts"
    if known is not None:
        path.write_text(known)
    return Settings(known_hosts_file=str(path))


def test_run_is_one_exec_request_each(sshd: Sshd, tmp_path: Path) -> None:
    before = sshd.exec_requests()
    with Remote(_spec(sshd), _settings(tmp_path, sshd.known_hosts_line())) as remote:
        first = remote.run("echo out; echo err >&2; exit 3", timeout=10)
        second = remote.run("cat; printf ' %s' \"$0\"", timeout=10, stdin=b"fed")
        assert remote.exec_requests == 2
    assert (first.rc, first.stdout, first.stderr) == (3, "out\n", "err\n")
    assert second.ok and second.stdout == "fed /bin/sh"
    assert sshd.exec_requests() - before == 2


def test_timeout_stops_waiting(sshd: Sshd, tmp_path: Path) -> None:
    with Remote(_spec(sshd), _settings(tmp_path, sshd.known_hosts_line())) as remote:
        start = time.monotonic()
        with pytest.raises(RemoteTimeout, match="box"):
            remote.run("echo started; sleep 30", timeout=1.0)
        assert time.monotonic() - start < 12  # 1 s, then the command is stopped on the host


def test_unknown_key_refused_with_fingerprint_and_fix(sshd: Sshd, tmp_path: Path) -> None:
    before = sshd.exec_requests()
    remote = Remote(_spec(sshd), _settings(tmp_path, ""))
    with pytest.raises(HostKeyUnknownError) as err:
        remote.run("true", timeout=5)
    text = str(err.value)
    assert "box" in text and fingerprint(sshd.host_public) in text
    assert "--accept-new-host-key" in text and f"ssh-keyscan -p {sshd.port}" in text
    assert sshd.exec_requests() == before and remote.exec_requests == 0


def test_accept_new_records_key_then_strict_works(sshd: Sshd, tmp_path: Path) -> None:
    settings = _settings(tmp_path, None)
    with Remote(_spec(sshd), settings, accept_new_host_key=True) as remote:
        assert remote.run("true", timeout=5).ok
        assert remote.accepted_keys and fingerprint(sshd.host_public) in remote.accepted_keys[0]
    recorded = Path(settings.known_hosts_file).read_text()
    assert recorded.startswith(f"[127.0.0.1]:{sshd.port} ssh-ed25519 ")
    with Remote(_spec(sshd), settings) as remote:  # strict again, now known
        assert remote.run("true", timeout=5).ok


def test_changed_key_aborts_before_any_command(sshd: Sshd, tmp_path: Path) -> None:
    other = new_key(tmp_path / "old")
    settings = _settings(tmp_path, f"[127.0.0.1]:{sshd.port} ssh-ed25519 {other.get_base64()}\n")
    before = sshd.exec_requests()
    remote = Remote(_spec(sshd), settings, accept_new_host_key=True)  # TOFU never covers a change
    with pytest.raises(HostKeyChangedError) as err:
        remote.run("true", timeout=5)
    text = str(err.value)
    assert f"ssh-keygen -R '[127.0.0.1]:{sshd.port}' -f {settings.known_hosts_file}" in text
    assert fingerprint(other) in text and fingerprint(sshd.host_public) in text
    assert sshd.exec_requests() == before


def test_inventory_file_wins_over_stale_system_known_hosts(
    sshd: Sshd, tmp_path: Path, isolated_home: Path
) -> None:
    stale = new_key(tmp_path / "x")
    (isolated_home / ".ssh").mkdir()
    (isolated_home / ".ssh/known_hosts").write_text(
        f"[127.0.0.1]:{sshd.port} ssh-ed25519 {stale.get_base64()}\n")
    with Remote(_spec(sshd), _settings(tmp_path, sshd.known_hosts_line())) as remote:
        assert remote.run("true", timeout=5).ok


def test_closed_port_is_unreachable(sshd: Sshd, tmp_path: Path) -> None:
    spec = _spec(sshd, port=free_port())
    with pytest.raises(UnreachableError, match="box: cannot connect"):
        Remote(spec, _settings(tmp_path, ""), connect_timeout=3).run("true", timeout=5)


def test_ssh_config_alias_and_proxyjump(sshd: Sshd, tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host jump\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User root\n"
        f"  IdentityFile {sshd.client_key}\n"
        f"Host target\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User root\n"
        f"  IdentityFile {sshd.client_key}\n  ProxyJump jump\n"
    )
    spec = HostSpec(name="target", address="target")  # port 22, no key: ssh_config decides
    log_before = sshd.log.read_text()
    with Remote(spec, _settings(tmp_path, sshd.known_hosts_line()),
                ssh_config_path=str(config)) as remote:
        assert remote.run("echo via-jump", timeout=10).stdout == "via-jump\n"
    new_log = sshd.log.read_text()[len(log_before):]
    assert "direct-tcpip" in new_log  # the target hop went through the jump host


def test_proxyjump_hop_key_is_checked_too(sshd: Sshd, tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host jump\n  HostName localhost\n  Port {sshd.port}\n  IdentityFile {sshd.client_key}\n"
        f"Host target\n  HostName 127.0.0.1\n  Port {sshd.port}\n"
        f"  IdentityFile {sshd.client_key}\n  ProxyJump jump\n"
    )
    # only the target's name is known; the jump host ("localhost") is not
    spec = HostSpec(name="target", address="target")
    with pytest.raises(HostKeyUnknownError, match=r"\[localhost\]"):
        Remote(spec, _settings(tmp_path, sshd.known_hosts_line()),
               ssh_config_path=str(config)).run("true", timeout=5)


def test_forward_reaches_a_port_only_the_host_sees(sshd: Sshd, tmp_path: Path) -> None:
    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"hello through ssh")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with Remote(_spec(sshd), _settings(tmp_path, sshd.known_hosts_line())) as remote:
            with remote.forward(server.server_address[1]) as tunnel:
                got = requests.get(f"http://127.0.0.1:{tunnel.local_port}/", timeout=5)
            assert got.text == "hello through ssh"
            assert remote.exec_requests == 0
    finally:
        server.shutdown()


# --------------------------------------------------------------------------- from the inventory


@pytest.fixture(scope="module")
def jump_sshd(tmp_path_factory: pytest.TempPathFactory):
    """A second sshd with its own host key and client key: the bastion."""
    server = Sshd(tmp_path_factory.mktemp("jump"))
    yield server
    server.stop()


def _inventory_host(tmp_path: Path, host_vars: dict) -> HostSpec:
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump({"all": {"hosts": {"target": host_vars}}}))
    return load_inventory(path).hosts["target"]


def _known(tmp_path: Path, *servers: Sshd) -> Settings:
    return _settings(tmp_path, "".join(s.known_hosts_line() for s in servers))


def test_proxyjump_in_ssh_common_args_goes_through_the_bastion(
        sshd: Sshd, jump_sshd: Sshd, tmp_path: Path) -> None:
    # the bastion authorizes only its own client key: given with -i in the ProxyCommand
    spec = _inventory_host(tmp_path, {
        "ansible_host": "127.0.0.1", "ansible_port": sshd.port, "ansible_user": "root",
        "ansible_ssh_private_key_file": str(sshd.client_key),
        "ansible_ssh_common_args": (f"-o ProxyCommand='ssh -i {jump_sshd.client_key} -W %h:%p "
                                    f"-p {jump_sshd.port} root@127.0.0.1' -o ControlMaster=auto"),
    })
    assert [str(h) for h in spec.jump] == [f"root@127.0.0.1:{jump_sshd.port}"]
    jump_log, target_execs = jump_sshd.log.read_text(), sshd.exec_requests()
    with Remote(spec, _known(tmp_path, sshd, jump_sshd)) as remote:
        assert remote.run("echo through-bastion", timeout=10).stdout == "through-bastion\n"
        assert remote.via_gateway
    assert "direct-tcpip" in jump_sshd.log.read_text()[len(jump_log):]
    assert sshd.exec_requests() == target_execs + 1  # the command ran on the target only


def test_proxyjump_option_and_jump_flag(sshd: Sshd, tmp_path: Path) -> None:
    spec = _inventory_host(tmp_path, {
        "ansible_host": "127.0.0.1", "ansible_port": sshd.port,
        "ansible_ssh_private_key_file": str(sshd.client_key),
        "ansible_ssh_extra_args": f"-J root@127.0.0.1:{sshd.port}",
    })
    log = sshd.log.read_text()
    with Remote(spec, _known(tmp_path, sshd)) as remote:
        assert remote.run("echo hop", timeout=10).stdout == "hop\n"
    assert "direct-tcpip" in sshd.log.read_text()[len(log):]


def test_every_hop_key_is_verified_strictly(sshd: Sshd, jump_sshd: Sshd, tmp_path: Path) -> None:
    spec = _inventory_host(tmp_path, {
        "ansible_host": "127.0.0.1", "ansible_port": sshd.port,
        "ansible_ssh_private_key_file": str(sshd.client_key),
        "ansible_ssh_common_args": f"-o ProxyJump=root@localhost:{jump_sshd.port}",
    })
    before = sshd.exec_requests()
    with pytest.raises(HostKeyUnknownError, match=rf"\[localhost\]:{jump_sshd.port}"):
        Remote(spec, _known(tmp_path, sshd)).run("true", timeout=5)  # the bastion is unknown
    assert sshd.exec_requests() == before


def test_ssh_config_is_beneath_both_spellings(sshd: Sshd, tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text(f"Host target-alias\n  HostName 127.0.0.1\n  Port 1\n  User nobody\n"
                      f"  IdentityFile {sshd.client_key}\n")
    for spelling in ({"ansible_port": sshd.port, "ansible_user": "root"},
                     {"ansible_ssh_port": sshd.port, "ansible_ssh_user": "root"}):
        spec = _inventory_host(tmp_path, {"ansible_host": "target-alias", **spelling})
        end = resolve_endpoint(spec, str(config))
        assert (end.address, end.port, end.user) == ("127.0.0.1", sshd.port, "root")
        with Remote(spec, _known(tmp_path, sshd), ssh_config_path=str(config)) as remote:
            assert remote.run("echo ok", timeout=10).ok
    bare = _inventory_host(tmp_path, {"ansible_host": "target-alias"})
    end = resolve_endpoint(bare, str(config))
    assert (end.port, end.user, end.key_file) == (1, "nobody", str(sshd.client_key))


def test_local_connection_runs_here_without_ssh(sshd: Sshd, tmp_path: Path) -> None:
    spec = _inventory_host(tmp_path, {"ansible_connection": "local",
                                      "ansible_host": "192.0.2.1"})  # never contacted
    before = sshd.exec_requests()
    with Remote(spec, Settings()) as remote:
        assert isinstance(remote, LocalRemote)
        result = remote.run('read line; echo "$line $(id -u) $PPID"', timeout=10, stdin=b"fed\n")
        assert remote.exec_requests == 1 and not remote.via_gateway
    words = result.stdout.split()
    assert result.ok and words[:2] == ["fed", str(os.geteuid())]
    assert remote.hostname == "127.0.0.1" and sshd.exec_requests() == before
    with pytest.raises(RemoteTimeout):
        LocalRemote(spec, Settings()).run("sleep 5", timeout=0.5)
    with LocalRemote(spec, Settings()).forward(8180) as port:
        assert port.local_port == 8180  # this machine's own port: no tunnel


BECOME_USER = "provtest-become"


@pytest.fixture(scope="module")
def open_sshd():
    """An sshd whose authorized_keys a non-root user can read (pytest's tmp is root-only)."""
    root = Path(tempfile.mkdtemp(prefix="provision-sshd-"))
    root.chmod(0o755)
    server = Sshd(root)
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def sudo_user() -> str:
    """A real login user whose sudo asks for a password; removed afterwards."""
    assert shutil.which("sudo"), "sudo is needed here (make setup installs it)"
    password = secrets.token_urlsafe(12)
    subprocess.run(["useradd", "-M", "-s", "/bin/sh", BECOME_USER], check=False,
                   capture_output=True)
    subprocess.run(["chpasswd"], input=f"{BECOME_USER}:{password}".encode(), check=True)
    sudoers = Path("/etc/sudoers.d/provision-test-become")
    sudoers.write_text(f"{BECOME_USER} ALL=(ALL) ALL\n")
    sudoers.chmod(0o440)
    yield password
    sudoers.unlink()
    subprocess.run(["userdel", BECOME_USER], check=False, capture_output=True)


def test_become_password_goes_on_stdin_never_on_a_command_line(
        open_sshd: Sshd, tmp_path: Path, sudo_user: str) -> None:
    sshd = open_sshd
    base = {"ansible_host": "127.0.0.1", "ansible_port": sshd.port, "ansible_user": BECOME_USER,
            "ansible_ssh_private_key_file": str(sshd.client_key), "ansible_become": True}
    spec = _inventory_host(tmp_path, {**base, "ansible_become_password": sudo_user})
    assert spec.become_password == sudo_user
    with Remote(spec, _known(tmp_path, sshd)) as remote:
        result = remote.run('printf "%s|" "$(cat)"; id -u', timeout=20, stdin=b"payload")
        assert sudo_user not in remote._command("true")
    assert (result.rc, result.stdout) == (0, "payload|0\n"), result.tail()
    assert sudo_user not in sshd.log.read_text()
    wrong = _inventory_host(tmp_path, {**base, "ansible_become_password": "not-it"})
    with Remote(wrong, _known(tmp_path, sshd)) as remote:
        refused = remote.run("id -u", timeout=20)
    assert refused.rc == BECOME_EXIT and "ansible_become_password" in refused.stderr
    without = _inventory_host(tmp_path, base)
    with Remote(without, _known(tmp_path, sshd)) as remote:
        assert not remote.run("id -u", timeout=20).ok  # sudo -n: no prompt, no hang
def _gone(pid: int, within_s: float = 10.0) -> bool:
    import os

    end = time.monotonic() + within_s
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # a killed child not yet reaped by its parent still answers kill(0): check its state
        try:
            if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
                return True
        except OSError:
            return True
        time.sleep(0.2)
    return False


def test_timed_out_command_is_killed_on_the_host_with_its_children(sshd: Sshd,
                                                                   tmp_path: Path) -> None:
    """Finding E: the whole process group goes, and the message names the real limit."""
    pidfile = tmp_path / "pid"
    with Remote(_spec(sshd), _settings(tmp_path, sshd.known_hosts_line())) as remote:
        with pytest.raises(RemoteTimeout) as err:
            remote.run(f"sleep 300 & echo $! > {pidfile}; wait", timeout=1.0,
                       limit_name="the per-host limit --host-timeout 1s")
    assert "limit of 1s (the per-host limit --host-timeout 1s)" in str(err.value)
    assert _gone(int(pidfile.read_text()), within_s=3.0)  # before the host's own timeout (6s)


def test_cancel_stops_the_command_on_the_host(sshd: Sshd, tmp_path: Path) -> None:
    import threading

    from provision.connection import RemoteCancelled

    pidfile = tmp_path / "pid"
    cancel = threading.Event()
    threading.Timer(1.0, cancel.set).start()
    with Remote(_spec(sshd), _settings(tmp_path, sshd.known_hosts_line())) as remote:
        start = time.monotonic()
        with pytest.raises(RemoteCancelled):
            remote.run(f"sleep 300 & echo $! > {pidfile}; wait", timeout=60, cancel=cancel)
        assert time.monotonic() - start < 10
    assert _gone(int(pidfile.read_text()))


def test_host_side_timeout_kills_even_when_nobody_asks(sshd: Sshd, tmp_path: Path) -> None:
    """The host's own `timeout` bounds a command when this side cannot reach it to kill."""
    from provision.connection import _WRAP

    pidfile = tmp_path / "pid"
    import subprocess

    err = tmp_path / "err"
    with err.open("wb") as sink:
        proc = subprocess.Popen(["/bin/sh", "-c", _WRAP, "provision",
                                 f"sleep 300 & echo $! > {pidfile}; wait", "1"],
                                stdout=subprocess.DEVNULL, stderr=sink)
        assert proc.wait(timeout=30) == 124
    assert err.read_text().startswith("provision-pgid: ")
    assert _gone(int(pidfile.read_text()))


def test_output_is_whole_and_stdin_reaches_the_script(sshd: Sshd, tmp_path: Path) -> None:
    """The end of a command is its EOF, not its exit status (sshd may send that before the
    last output): megabytes written right before exiting all arrive; the wrapper hands the
    channel's stdin to the script though it runs as a background job."""
    with Remote(_spec(sshd), _settings(tmp_path, sshd.known_hosts_line())) as remote:
        got = remote.run("head -c 3000000 /dev/zero | tr '\\0' a; echo end >&2; exit 3",
                         timeout=30)
        assert (got.rc, len(got.stdout), got.stdout.strip("a"), got.stderr) == (
            3, 3000000, "", "end\n")
        assert remote.run("cat; echo", timeout=10, stdin=b"from stdin").stdout == "from stdin\n"


def test_output_left_open_by_a_background_process_ends_the_command_anyway(
        sshd: Sshd, tmp_path: Path) -> None:
    """A script that leaves something running with its stdout open (no EOF until it exits)
    still ends with its exit status, EOF_GRACE_S later, not when that process ends."""
    from provision.connection import EOF_GRACE_S

    with Remote(_spec(sshd), _settings(tmp_path, sshd.known_hosts_line())) as remote:
        got = remote.run(f"sleep 60 & echo $! > {tmp_path / 'pid'}; echo started", timeout=30)
        assert (got.rc, got.stdout) == (0, "started\n")
        assert got.seconds < 60 - EOF_GRACE_S
    os.kill(int((tmp_path / "pid").read_text()), 9)
