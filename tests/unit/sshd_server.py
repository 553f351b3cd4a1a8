"""A private OpenSSH sshd on loopback for tests: real protocol, own keys, countable execs.

It logs at DEBUG1 so exec requests can be counted from its log, independently of
the counters under test.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import paramiko

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, deadline_s: float = 10.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)  # poll interval inside a deadline, not a fixed wait
    raise AssertionError(f"sshd did not listen on {port} within {deadline_s}s")


class Sshd:
    """A private sshd: its port, keys and log."""

    def __init__(self, root: Path, forwarding: bool = True) -> None:
        self.root = root
        self.port = free_port()
        self.host_key = root / "host_ed25519"
        self.client_key = root / "id_ed25519"
        self.log = root / "sshd.log"
        for key in (self.host_key, self.client_key):
            new_key(key)
        (root / "authorized_keys").write_text((root / "id_ed25519.pub").read_text())
        (root / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.host_key}\n"
            f"PidFile {root}/sshd.pid\nAuthorizedKeysFile {root}/authorized_keys\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            f"AllowTcpForwarding {'yes' if forwarding else 'no'}\nLogLevel DEBUG1\n"
        )
        Path("/run/sshd").mkdir(exist_ok=True)
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-f", str(root / "sshd_config"), "-E", str(self.log)]
        )
        _wait_port(self.port)

    @property
    def host_public(self) -> paramiko.PKey:
        return paramiko.Ed25519Key.from_private_key_file(str(self.host_key))

    def exec_requests(self) -> int:
        return len(re.findall(r"request exec", self.log.read_text()))

    def known_hosts_line(self) -> str:
        key = self.host_public
        return f"[127.0.0.1]:{self.port} {key.get_name()} {key.get_base64()}\n"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def new_key(path: Path) -> paramiko.PKey:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return paramiko.Ed25519Key.from_private_key_file(str(path))
