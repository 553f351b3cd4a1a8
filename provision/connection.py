"""SSH connections and remote execution: one `run` is one SSH exec request.

Built on fabric's `Connection` for what it does well (reading ~/.ssh/config:
HostName, Port, User, IdentityFile, ProxyJump), but with strict host keys on
every hop: fabric hard-codes paramiko's `AutoAddPolicy`, which would accept a
man in the middle. Trust on first use is an explicit flag decided before any
host is contacted, never a prompt.

Commands run over a raw paramiko channel rather than fabric's `run`, so each
call is exactly one exec request (the re-run budget is counted in sshd's log),
stdin can be fed, and a timeout really stops waiting.

Every wait is bounded on both ends. On the host each command runs under `timeout` in its
own process group (timeout makes itself the group leader and signals the whole group), so
a command whose time is up is killed there even when this machine can no longer reach it;
a cancelled or timed-out command is also killed at once through a second exec. On this
side a heartbeat (keepalive requests that must be answered) closes a dead transport
within KEEPALIVE_S * KEEPALIVE_MISSES seconds, so a cut link fails as "unreachable"
instead of waiting on TCP for many minutes.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import fabric
import paramiko
from paramiko.ssh_exception import BadHostKeyException, NoValidConnectionsError

from provision import shell
from provision.become import become_argv, become_stdin
from provision.connection_vars import PORT_VARS, USER_VARS, is_set, split_target
from provision.model import Hop, HostSpec, ProvisionError, Settings, UnreachableError
from provision.progress import PREFIX as PROGRESS_PREFIX

# paramiko logs a refused tunnel channel ("Secsh channel N open FAILED") at ERROR; the tool
# reports what it means itself, so those lines must not reach the user's terminal.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

SYSTEM_KNOWN_HOSTS = "~/.ssh/known_hosts"
KEEPALIVE_S = 10.0  # like ssh's ServerAliveInterval
KEEPALIVE_MISSES = 3  # like ServerAliveCountMax: dead after 30 s without an answer
HOST_KILL_GRACE_S = 5  # the host's own timeout fires this long after ours
EOF_GRACE_S = 2.0  # after the exit status, how long output still held open is waited for
PGID_MARK = "provision-pgid:"
BEAT = b"\x1e"  # the watcher's heartbeat on stderr, removed from what the caller sees
# Runs the script ($1) under timeout ($2 s): its own process group (timeout makes itself the
# leader), killed there when due; the group's id is announced by its first process as the
# first stderr line. A watcher writes a heartbeat byte to stderr every second: once this side
# is gone (the client died, the connection was torn down) the write fails and the watcher
# kills the group, so nothing the tool started outlives it on the host by much. timeout runs
# as a child, not exec'd, so that the watcher is killed the moment the command ends: sshd
# sends a channel's EOF only once every holder of its stdout and stderr has closed them, so a
# watcher left sleeping would hold each command's end back by up to a second. (A background
# job gets /dev/null as stdin unless told otherwise: fd 3 carries the channel's stdin over.)
_WRAP = ('exec 3<&0\n'
         'timeout -k 5 "$2" /bin/sh -c \'echo "provision-pgid: $PPID" >&2; exec /bin/sh -c "$1"\' '
         'sh "$1" 0<&3 3<&- &\n'
         't=$!\n'
         'exec 3<&-\n'
         "( trap '' PIPE; while sleep 1 2>/dev/null && kill -0 $t 2>/dev/null; do "
         "printf '\\036' >&2 || { kill -TERM -$t; exit 0; }; done ) </dev/null >/dev/null &\n"
         'w=$!\n'
         'wait $t\n'
         'rc=$?\n'
         'kill $w 2>/dev/null\n'
         'exit $rc')
# Stops process group $1 (negative: dash's kill takes no "--"): TERM, 2 s, then KILL.
_KILL = ('kill -TERM "$1" 2>/dev/null || exit 0\n'
         'for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$1" 2>/dev/null || exit 0; sleep 0.2; done\n'
         'kill -KILL "$1" 2>/dev/null; true')
_KNOWN_HOSTS_LOCK = threading.Lock()  # accepted keys from parallel hosts append one at a time


class HostKeyUnknownError(UnreachableError):
    """The host offered a key that no known_hosts file lists, and TOFU was not asked for."""


class HostKeyChangedError(UnreachableError):
    """The host offered a key that differs from the recorded one: possibly an attack."""


class RemoteTimeout(ProvisionError):
    """A remote command ran past its time limit (the host is reachable; the command is slow)."""


class RemoteCancelled(ProvisionError):
    """The run was interrupted (Ctrl-C, SIGTERM, another host failed) while a command ran;
    the command was killed on the host."""


@dataclass(frozen=True)
class Result:
    """What one remote command did."""

    rc: int
    stdout: str
    stderr: str
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def tail(self, lines: int = 20) -> str:
        """The last lines of stderr and stdout together: what a failure report shows."""
        text = (self.stdout.rstrip() + "\n" + self.stderr.rstrip()).strip()
        return "\n".join(text.splitlines()[-lines:])


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's fingerprint text, so users can compare it with `ssh-keygen -lf`."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def known_host_name(address: str, port: int) -> str:
    """The name a known_hosts line uses: `host`, or `[host]:port` off port 22."""
    return address if port == 22 else f"[{address}]:{port}"


def known_hosts_files(settings: Settings) -> list[Path]:
    """Where keys are looked up, most specific first (the inventory's file wins)."""
    files = [Path(settings.known_hosts_file).expanduser()] if settings.known_hosts_file else []
    return files + [Path(SYSTEM_KNOWN_HOSTS).expanduser()]


def _file_with_entry(files: list[Path], name: str) -> Path | None:
    for path in files:
        if path.is_file() and paramiko.HostKeys(str(path)).lookup(name) is not None:
            return path
    return None


class _StrictPolicy(paramiko.MissingHostKeyPolicy):
    """Refuse unknown keys, or record them (trust on first use) when the user opted in."""

    def __init__(self, label: str, host: str, port: int, accept_new: bool, store: Path) -> None:
        self.label, self.host, self.port = label, host, port
        self.accept_new, self.store = accept_new, store
        self.accepted: str | None = None

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey):
        kind = key.get_name()
        if not self.accept_new:
            scan = shell.fmt(
                "ssh-keyscan -p %s -t %s %s >> %s",
                self.port, kind.removeprefix("ssh-"), self.host, self.store,
            )
            raise HostKeyUnknownError(
                f"{self.label}: unknown host key for {hostname} ({kind} {fingerprint(key)}); "
                "nothing was run. Fix: check the fingerprint with the host's provider, then "
                f"rerun with --accept-new-host-key, or record it yourself: {scan}"
            )
        with _KNOWN_HOSTS_LOCK:
            self.store.parent.mkdir(parents=True, exist_ok=True)
            with self.store.open("a") as out:
                out.write(f"{hostname} {kind} {key.get_base64()}\n")
        client.get_host_keys().add(hostname, kind, key)
        self.accepted = f"{hostname} {kind} {fingerprint(key)}"


@dataclass(frozen=True)
class Endpoint:
    """Where and as whom to connect, with ~/.ssh/config applied beneath the inventory."""

    address: str  # ssh_config's HostName applied
    port: int
    user: str
    key_file: str | None
    jump: tuple[Hop, ...]  # the inventory's hops, else ssh_config's ProxyJump


def _ssh_config(path: str | None) -> fabric.Config:
    return fabric.Config(runtime_ssh_path=path)


def resolve_endpoint(spec: HostSpec, ssh_config_path: str | None = None) -> Endpoint:
    """Resolve a host's connection without connecting: the inventory (any spelling) wins,
    then ~/.ssh/config (User, Port, HostName, IdentityFile, ProxyJump), then port 22 and root.
    """
    found = _ssh_config(ssh_config_path).base_ssh_config.lookup(spec.address)
    user = spec.user
    if "user" in found and not is_set(spec.vars, USER_VARS):
        user = found["user"]
    port = spec.port
    if "port" in found and not is_set(spec.vars, PORT_VARS):
        port = int(found["port"])
    key = spec.key_file
    if key is None and found.get("identityfile"):
        key = found["identityfile"][0]
    jump = spec.jump
    if not jump and found.get("proxyjump", "none").lower() != "none":
        jump = tuple(Hop(address=a, port=p, user=u) for u, a, p in (
            split_target(part.strip(), "~/.ssh/config", "ProxyJump")
            for part in found["proxyjump"].split(",")))
    return Endpoint(found.get("hostname", spec.address), port, user, key, jump)


class Remote:
    """One SSH connection to one host; counts the exec requests it makes.

    A host whose inventory says `ansible_connection: local` gets a LocalRemote
    instead (same interface, no SSH), so every caller stays the same.
    """

    def __new__(cls, spec: HostSpec, *args, **kwargs):
        if cls is Remote and spec.connection == "local":
            from provision.local import LocalRemote

            return LocalRemote(spec, *args, **kwargs)
        return super().__new__(cls)

    def __init__(
        self,
        spec: HostSpec,
        settings: Settings,
        *,
        accept_new_host_key: bool = False,
        connect_timeout: float = 15.0,
        ssh_config_path: str | None = None,
    ) -> None:
        self.spec, self.settings = spec, settings
        self.accept_new_host_key = accept_new_host_key
        self.connect_timeout = connect_timeout
        self.ssh_config_path = ssh_config_path
        self.exec_requests = 0
        self.accepted_keys: list[str] = []
        self.lost: str | None = None  # why the heartbeat gave the transport up
        self._conn: fabric.Connection | None = None
        self._held: list[paramiko.Channel] = []  # long-lived sessions (the host lock)

    # ------------------------------------------------------------------ connecting

    def _connection(self) -> fabric.Connection:
        """fabric's Connection for the host, through the inventory's jump hops if any
        (else fabric follows ~/.ssh/config's ProxyJump itself)."""
        config = _ssh_config(self.ssh_config_path)
        end = resolve_endpoint(self.spec, self.ssh_config_path)
        gateway = None
        for hop in self.spec.jump:
            gateway = fabric.Connection(
                hop.address, user=hop.user, port=hop.port, config=config, gateway=gateway,
                connect_timeout=int(self.connect_timeout),
                connect_kwargs=self._auth(hop.key_file or self.spec.key_file, None))
        return fabric.Connection(
            self.spec.address,
            user=end.user,
            port=end.port,
            config=config,
            gateway=gateway,
            connect_timeout=int(self.connect_timeout),
            connect_kwargs=self._auth(self.spec.key_file, self.spec.password),
        )

    def _auth(self, key_file: str | None, password: str | None) -> dict:
        limit = self.connect_timeout
        kwargs: dict = {"banner_timeout": limit, "auth_timeout": limit}
        if key_file:
            kwargs["key_filename"] = [str(Path(key_file).expanduser())]
        if password is not None:
            kwargs["password"] = password
        return kwargs

    def _harden(self, conn: fabric.Connection) -> None:
        """Strict keys on this hop and every ProxyJump hop before it."""
        files = known_hosts_files(self.settings)
        while isinstance(conn, fabric.Connection):
            keys = conn.client.get_host_keys()
            for path in files:  # most specific first: HostKeys answers with the first match
                if path.is_file():
                    keys.load(str(path))
            conn.client.set_missing_host_key_policy(
                _StrictPolicy(self.spec.name, conn.host, int(conn.port),
                              self.accept_new_host_key, files[0])
            )
            conn = conn.gateway

    def open(self) -> None:
        """Connect and verify the host key; nothing runs on the host here."""
        if self._conn is not None and self._conn.is_connected:
            return
        conn = self._connection()
        self._harden(conn)
        where = f"{conn.user}@{known_host_name(conn.host, int(conn.port))}"
        try:
            conn.open()
        except UnreachableError:
            raise
        except BadHostKeyException as exc:
            raise self._changed_key_error(exc, conn) from None
        except paramiko.AuthenticationException as exc:
            raise UnreachableError(
                f"{self.spec.name}: SSH authentication as {where} failed ({exc}). Fix: check "
                "ansible_user and ansible_ssh_private_key_file (or IdentityFile in ~/.ssh/config)"
            ) from None
        except (NoValidConnectionsError, OSError, EOFError, paramiko.SSHException) as exc:
            raise UnreachableError(
                f"{self.spec.name}: cannot connect to {where}: {exc or type(exc).__name__}. "
                "Fix: check the address and port, that the host is up and sshd listens"
            ) from None
        policy = conn.client._policy
        if isinstance(policy, _StrictPolicy) and policy.accepted:
            self.accepted_keys.append(policy.accepted)
        self._conn = conn
        if conn.transport is not None:
            conn.transport.set_keepalive(int(KEEPALIVE_S))
            threading.Thread(target=self._heartbeat, args=(conn.transport,), daemon=True).start()

    def _heartbeat(self, transport: paramiko.Transport) -> None:
        """Ask the server to answer every KEEPALIVE_S; close the transport when it stops."""
        limit = KEEPALIVE_S * KEEPALIVE_MISSES
        while transport.is_active():
            time.sleep(KEEPALIVE_S)
            answered = threading.Event()
            threading.Thread(target=_ping, args=(transport, answered), daemon=True).start()
            if not answered.wait(limit) and transport.is_active():
                self.lost = f"no answer from the host for {limit:.0f}s (keepalive)"
                transport.close()
                return

    def _changed_key_error(self, exc: BadHostKeyException, conn) -> HostKeyChangedError:
        name = known_host_name(exc.hostname, int(conn.port))
        files = known_hosts_files(self.settings)
        path = _file_with_entry(files, name) or files[0]
        fix = shell.cmd("ssh-keygen", "-R", name, "-f", str(path))
        return HostKeyChangedError(
            f"{self.spec.name}: HOST KEY CHANGED for {name}: {path} has "
            f"{exc.expected_key.get_name()} {fingerprint(exc.expected_key)}, the host now offers "
            f"{exc.key.get_name()} {fingerprint(exc.key)}. This is either a reinstalled host or "
            "someone intercepting the connection; nothing was run. Fix, once you know the new "
            f"key is genuine: {fix} then rerun with --accept-new-host-key"
        )

    @property
    def hostname(self) -> str:
        """The address actually connected to (ssh_config's HostName resolved)."""
        self.open()
        return self._conn.host

    @property
    def via_gateway(self) -> bool:
        """Whether the host is reached through a jump host (then its ports likely are not)."""
        self.open()
        return bool(self._conn.gateway)

    def _transport(self) -> paramiko.Transport:
        self.open()
        transport = self._conn.transport if self._conn else None
        if transport is None or not transport.is_active():
            raise UnreachableError(f"{self.spec.name}: the SSH connection was lost"
                                   + (f": {self.lost}" if self.lost else ""))
        return transport

    def close(self) -> None:
        for chan in self._held:
            chan.close()
        self._held = []
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ running

    def run(self, script: str, timeout: float, stdin: bytes | None = None,
            cancel: threading.Event | None = None, limit_name: str = "",
            progress: Callable[[str], None] | None = None) -> Result:
        """Run a POSIX sh script as ONE exec request; the exit status is the caller's to judge.

        The script goes through `/bin/sh -c` so the login shell of the remote user does not
        matter (and through `sudo -n` for a non-root login), under `timeout` in its own
        process group. Transport failures raise UnreachableError; a slow command
        RemoteTimeout naming `limit_name` (which limit it was); a set `cancel`
        RemoteCancelled. Both of the latter kill the command's process group on the host.
        `progress`, when given, sees each complete stdout line that starts with
        progress.PREFIX as it arrives (the Result still holds all the output).
        """
        transport = self._transport()
        start = time.monotonic()
        pgid: list[int] = []
        try:
            chan = transport.open_session(timeout=self.connect_timeout)
            self._exec(chan, script, timeout)
            if self._sudo():
                stdin = become_stdin(self.spec.become_password, stdin)
            if stdin:
                chan.sendall(stdin)
            chan.shutdown_write()
            out, err = self._collect(chan, start + timeout, pgid, cancel, timeout, limit_name,
                                     progress)
            rc = chan.recv_exit_status()
        except (RemoteTimeout, RemoteCancelled):
            self._kill_group(pgid)
            _until_closed(chan, 15)  # it has ended on the host before anyone acts on that
            raise
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise UnreachableError(
                f"{self.spec.name}: the SSH connection failed while running a command: {exc}"
            ) from None
        finally:
            if "chan" in locals():
                chan.close()
        if rc == -1:  # the server closed the channel without an exit status
            raise UnreachableError(f"{self.spec.name}: the connection dropped mid-command"
                                   + (f": {self.lost}" if self.lost else ""))
        decode = lambda b: b.decode("utf-8", errors="replace")  # noqa: E731
        return Result(rc, decode(out), decode(_without_pgid(err)), time.monotonic() - start)

    def start(self, script: str, timeout: float) -> paramiko.Channel:
        """Start a script as `run` does (one exec request, its own process group, killed on
        the host after `timeout`) and hand back the open channel, for a caller that streams
        its stdin or stdout (provision/relay.py). The caller drains it and calls `stop`
        when it gives up early."""
        chan = self._transport().open_session(timeout=self.connect_timeout)
        self._exec(chan, script, timeout)
        if self._sudo():
            password = become_stdin(self.spec.become_password, None)
            if password:
                chan.sendall(password)
        return chan

    def _exec(self, chan: paramiko.Channel, script: str, timeout: float) -> None:
        """One exec request: the script under the wrapper (own process group, the host's
        own timeout `timeout` + grace), through sudo for a non-root login."""
        self.exec_requests += 1
        host_limit = max(1, int(timeout + 0.999)) + HOST_KILL_GRACE_S
        chan.exec_command(self._command(shell.cmd("/bin/sh", "-c", _WRAP, "provision",
                                                  script, host_limit)))

    def stop(self, chan: paramiko.Channel, stderr: bytes) -> None:
        """Kill a started script's process group on the host (its group is announced on the
        first stderr line, which `stderr` holds), then close the channel."""
        found = _read_pgid(stderr)
        self._kill_group([found] if found is not None else [])
        _until_closed(chan, 15)
        chan.close()

    def _kill_group(self, pgid: list[int]) -> None:
        """Kill a command's process group on the host (best effort: the host's own timeout
        is the backstop when this machine cannot reach it)."""
        if not pgid:
            return
        group = f"-{pgid[0]}"  # dash's kill: a negative pid is a group (it knows no "--")
        try:
            chan = self._transport().open_session(timeout=self.connect_timeout)
            self.exec_requests += 1
            chan.exec_command(self._command(
                shell.cmd("/bin/sh", "-c", _KILL, "provision", group)))
            chan.recv_exit_status()
            chan.close()
        except (ProvisionError, paramiko.SSHException, OSError, EOFError):
            pass

    def hold(self, script: str, ready: str, wait_s: float,
             progress: Callable[[str], None] | None = None) -> tuple[bool, Result]:
        """Start a long-lived session (the host lock); (True, what it printed so far) once it
        printed the line that starts with `ready`.

        The session stays open until close(): whatever it holds on the host is released
        when this connection ends, however it ends. Otherwise (it exited, or `wait_s`
        passed) (False, a Result that says why).
        """
        transport = self._transport()
        start = time.monotonic()
        chan = transport.open_session(timeout=self.connect_timeout)
        self.exec_requests += 1
        chan.exec_command(self._command(script))
        out, mark = bytearray(), b"\n" + ready.encode()
        while time.monotonic() - start < wait_s:
            if chan.recv_ready():
                seen = len(out)
                out += chan.recv(65536)
                if progress is not None and b"\n" in out[seen:]:
                    for line in bytes(out[seen:]).decode(errors="replace").splitlines():
                        if line.strip() and not line.startswith(ready):
                            progress(line.strip())
                at = (b"\n" + out).find(mark)
                if at >= 0 and b"\n" in out[at:]:
                    self._held.append(chan)
                    return True, Result(0, out.decode(errors="replace"), "",
                                        time.monotonic() - start)
            elif chan.exit_status_ready() or chan.closed:
                break
            else:
                select.select([chan], [], [], 0.5)
        rc = chan.recv_exit_status() if chan.exit_status_ready() else 124
        err = chan.recv_stderr(65536) if chan.recv_stderr_ready() else b""
        chan.close()
        return False, Result(rc, out.decode(errors="replace"), err.decode(errors="replace"),
                             time.monotonic() - start)

    def _command(self, script: str) -> str:
        """`/bin/sh -c script`, through `sudo -n` when logged in as someone other than root.

        Cloud images log in as a user with passwordless sudo (ubuntu@...); `-n` makes a
        sudo that wants a password fail at once instead of hanging on a prompt. With
        ansible_become_password the password goes first on stdin (become.py).
        """
        if self._sudo():
            return shell.cmd(*become_argv(script, self.spec.become_password is not None))
        return shell.cmd("/bin/sh", "-c", script)

    def _sudo(self) -> bool:
        return self._conn is not None and self._conn.user != "root"

    def _collect(self, chan: paramiko.Channel, deadline: float, pgid: list[int],
                 cancel: threading.Event | None, limit: float, limit_name: str,
                 progress: Callable[[str], None] | None = None) -> tuple[bytes, bytes]:
        out, err = bytearray(), bytearray()
        fed = 0  # where the first stdout line not yet given to `progress` starts
        end = OutputEnd(chan)
        while True:
            ended = end.reached()
            while chan.recv_ready():
                out += chan.recv(65536)
            if progress is not None:
                fed = _feed_progress(out, fed, progress)
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(65536)
            if not pgid:
                found = _read_pgid(bytes(err))
                if found is not None:
                    pgid.append(found)
            drained = not chan.recv_ready() and not chan.recv_stderr_ready()
            if ended and drained and (chan.exit_status_ready() or chan.closed):
                return bytes(out), bytes(err)
            if cancel is not None and cancel.is_set() and (pgid or time.monotonic() > deadline):
                raise RemoteCancelled(f"{self.spec.name}: interrupted; the running command "
                                      "was stopped on the host")
            if cancel is not None and cancel.is_set():  # its group not announced yet: soon
                deadline = min(deadline, time.monotonic() + 5)
            left = deadline - time.monotonic()
            if left <= 0:
                last = (bytes(out) + _without_pgid(bytes(err)))[-400:]
                which = f" ({limit_name})" if limit_name else ""
                raise RemoteTimeout(
                    f"{self.spec.name}: a remote command ran past its limit of {limit:.0f}s"
                    f"{which} and was stopped on the host; the last output was: "
                    f"{last.decode(errors='replace')}"
                )
            if ended and drained:  # the output is complete: only the exit status is due
                chan.status_event.wait(min(left, 0.5))
            else:
                select.select([chan], [], [], min(left, 0.5))

    # ------------------------------------------------------------------ forwarding

    def can_forward(self, host: str, port: int) -> bool:
        """Whether sshd lets this connection forward to host:port. A refused connect there
        still counts as yes (forwarding works; nothing listens yet); "administratively
        prohibited" (AllowTcpForwarding no) as no. No exec request."""
        try:
            chan = self._transport().open_channel("direct-tcpip", (host, port), ("127.0.0.1", 0),
                                                  timeout=self.connect_timeout)
        except paramiko.ChannelException as exc:
            return exc.code != paramiko.common.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        except (paramiko.SSHException, OSError, EOFError):
            return False
        chan.close()
        return True

    def forward(self, remote_port: int, remote_host: str = "127.0.0.1") -> Tunnel:
        """A local port that reaches `remote_host:remote_port` as seen from the host."""
        return Tunnel(self._transport(), remote_host, remote_port)


class OutputEnd:
    """Whether a command's output is all here: its channel's EOF (or close).

    sshd may send the exit status before the last of the output (OpenSSH's
    session_exit_message: "there could be some more data waiting in the pipe"), but EOF
    only after it, so the exit status alone is not the end. Something the command left
    running that holds its output open gets EOF_GRACE_S after the exit status.
    """

    def __init__(self, chan: paramiko.Channel) -> None:
        self.chan = chan
        self._status_at: float | None = None  # when the exit status came without the EOF

    def reached(self) -> bool:
        if self.chan.eof_received or self.chan.closed:
            return True
        if not self.chan.exit_status_ready():
            return False
        self._status_at = self._status_at or time.monotonic()
        return time.monotonic() - self._status_at > EOF_GRACE_S


def _until_closed(chan: paramiko.Channel, seconds: float) -> None:
    """Wait (bounded) until a killed command's channel reports its end."""
    end = time.monotonic() + seconds
    while not (chan.exit_status_ready() or chan.closed) and time.monotonic() < end:
        while chan.recv_ready():
            chan.recv(65536)
        while chan.recv_stderr_ready():
            chan.recv_stderr(65536)
        select.select([chan], [], [], 0.2)


def _feed_progress(out: bytearray, fed: int, progress: Callable[[str], None]) -> int:
    """Give `progress` the complete lines after `fed` that carry PROGRESS_PREFIX; returns
    where the next incomplete line starts. A failing display never fails the command."""
    end = out.rfind(b"\n", fed)
    if end < 0:
        return fed
    for raw in bytes(out[fed:end]).split(b"\n"):
        line = raw.decode("utf-8", errors="replace")
        if line.startswith(PROGRESS_PREFIX):
            try:
                progress(line)
            except Exception:  # noqa: BLE001 - progress is only shown, never decides
                pass
    return end + 1


def _ping(transport: paramiko.Transport, answered: threading.Event) -> None:
    """One keepalive request; `answered` is set when the server replied (or gave up)."""
    try:
        transport.global_request("keepalive@openssh.com", wait=True)
    except Exception:  # noqa: BLE001 - a dying transport; the heartbeat judges it
        pass
    answered.set()


def _read_pgid(err: bytes) -> int | None:
    """The process group the wrapper announced on its first stderr line (a heartbeat may
    come before it on a host too slow to start the command within a second)."""
    first, nl, _ = err.lstrip(BEAT).partition(b"\n")
    if nl and first.startswith(PGID_MARK.encode()):
        value = first[len(PGID_MARK):].strip()
        return int(value) if value.isdigit() else None
    return None


def _without_pgid(err: bytes) -> bytes:
    """stderr without the wrapper's announcement line and heartbeats."""
    err = err.replace(BEAT, b"")
    if err.startswith(PGID_MARK.encode()):
        err = err.partition(b"\n")[2]
    return err


class Tunnel:
    """A loopback listener whose connections become direct-tcpip channels (ssh -L).

    Used by verify when the API port is not reachable from the control node. A refused
    remote connect closes the local socket, which HTTP clients see as "not up yet".
    """

    def __init__(self, transport: paramiko.Transport, host: str, port: int) -> None:
        self._transport, self._dest = transport, (host, port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.local_port: int = self._listener.getsockname()[1]
        self._stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            chan = self._transport.open_channel("direct-tcpip", self._dest, ("127.0.0.1", 0))
        except (paramiko.SSHException, OSError, EOFError):
            client.close()
            return
        try:
            while True:
                ready, _, _ = select.select([client, chan], [], [], 1.0)
                if self._stopped.is_set():
                    return
                if client in ready:
                    data = client.recv(65536)
                    if not data:
                        return
                    chan.sendall(data)
                if chan in ready:
                    data = chan.recv(65536)
                    if not data:
                        return
                    client.sendall(data)
        except (OSError, paramiko.SSHException, EOFError):  # either end went away
            return
        finally:
            chan.close()
            client.close()

    def close(self) -> None:
        self._stopped.set()
        self._listener.close()

    def __enter__(self) -> Tunnel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

