"""`ansible_connection: local`: the host is this machine, and scripts run here without SSH.

Same interface as connection.Remote (run, hostname, via_gateway, forward,
exec_requests), so apply, status and facts need not know. A script runs as
`/bin/sh -c SCRIPT` from an argument list (no shell splices anything), through
sudo when this process is not root (with the become password on stdin when
the inventory gives one, see become.py), with the same time limit rule.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time

from provision.become import become_argv, become_stdin
from provision.model import HostSpec, Settings


class DirectPort:
    """What `forward` gives for a local host: the port itself (nothing to open or close)."""

    def __init__(self, port: int) -> None:
        self.local_port = port

    def close(self) -> None:
        """Nothing to close."""

    def __enter__(self) -> DirectPort:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalRemote:
    """Runs scripts on this machine; counts them as Remote counts exec requests."""

    def __init__(self, spec: HostSpec, settings: Settings, **_ignored: object) -> None:
        self.spec, self.settings = spec, settings
        self.exec_requests = 0
        self.accepted_keys: list[str] = []
        self._held: list[subprocess.Popen] = []

    def open(self) -> None:
        """Nothing to open: there is no connection."""

    def close(self) -> None:
        """End what `hold` keeps running: its stdin closes, as a connection's end would."""
        for proc in self._held:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._held = []

    def __enter__(self) -> LocalRemote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def hostname(self) -> str:
        """The services listen here: loopback."""
        return "127.0.0.1"

    @property
    def via_gateway(self) -> bool:
        return False

    def forward(self, remote_port: int, remote_host: str = "127.0.0.1") -> DirectPort:
        """No tunnel: this machine's own port, with a Tunnel's interface."""
        return DirectPort(remote_port)

    def _argv(self, script: str, stdin: bytes | None) -> tuple[list[str], bytes | None]:
        if os.geteuid() == 0:
            return ["/bin/sh", "-c", script], stdin
        return (become_argv(script, self.spec.become_password is not None),
                become_stdin(self.spec.become_password, stdin))

    def hold(self, script: str, ready: str, wait_s: float, progress=None):
        """Remote.hold here: a process that lives until close(), once it printed `ready`."""
        from provision.connection import Result

        argv, data = self._argv(script, None)
        start = time.monotonic()
        self.exec_requests += 1
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,  # noqa: S603
                                stderr=subprocess.DEVNULL)
        assert proc.stdin is not None and proc.stdout is not None
        if data:
            proc.stdin.write(data)
            proc.stdin.flush()
        timer = threading.Timer(wait_s, proc.kill)
        timer.start()
        lines: list[str] = []
        try:
            for raw in proc.stdout:
                line = raw.decode("utf-8", errors="replace")
                lines.append(line)
                if line.startswith(ready):
                    self._held.append(proc)
                    return True, Result(0, "".join(lines), "", time.monotonic() - start)
                if progress is not None and line.strip():
                    progress(line.strip())
        finally:
            timer.cancel()
        rc = proc.wait()
        return False, Result(rc if rc >= 0 else 124, "".join(lines), "",
                             time.monotonic() - start)

    def run(self, script: str, timeout: float, stdin: bytes | None = None):
        """Run a POSIX sh script here, as root (through sudo when not root)."""
        from provision.connection import RemoteTimeout, Result

        argv, data = self._argv(script, stdin)
        start = time.monotonic()
        self.exec_requests += 1
        try:
            done = subprocess.run(argv, input=data or b"", capture_output=True,  # noqa: S603
                                  timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            tail = ((exc.stdout or b"") + (exc.stderr or b""))[-400:].decode(errors="replace")
            raise RemoteTimeout(f"{self.spec.name}: a local command ran longer than its limit; "
                                f"the last output was: {tail}") from None
        decode = lambda b: b.decode("utf-8", errors="replace")  # noqa: E731
        return Result(done.returncode, decode(done.stdout), decode(done.stderr),
                      time.monotonic() - start)
