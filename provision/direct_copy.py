"""One host's tar stream sent straight to another host over the hosts' own network, this
machine only brokering the handshake: how a fleet copies what one host fetched when the
hosts reach each other (provision/share.py). Where they do not, the relay through this
machine's SSH connections takes over (provision/relay.py).

Why: through the relay every byte crosses this machine twice, decrypted from the source's
SSH channel and encrypted into the target's by paramiko in pure Python, on CPUs that may be
few and busy. Hosts of one fleet usually sit on one network at full speed; this machine then
only sends a few lines.

The handshake (host ends in provision/direct_ends.py): this machine makes a one-time token
of 32 random bytes and gives it to both ends on their SSH stdin. The sender listens on an
ephemeral port and says which port, and its own address towards the target. The receiver
tries that address, then the address this machine uses for the source, and says from which
address and port it connected; this machine passes that on to the sender, which accepts
exactly one connection, only from there and only with the token, or gives up within
ACCEPT_S. What arrives is as untrusted as through the relay: the caller accepts it only when
the digests that both ends print over SSH agree.

Which address: the one this machine uses for the source may not be one the target can use
(behind a NAT it is a public address whose other ports are closed; through a jump host it is
the jump's view). So the source first names its own address on the route towards the target
(through a NAT that is its private address on the hosts' network, where the target likely
is), and this machine's address for it comes second. When the hosts cannot reach each other
(another network, a firewall between them, a NAT that rewrites the target's address so the
sender refuses it), the attempt costs seconds and the relay copies instead.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import paramiko

from provision.connection import (
    EOF_GRACE_S,
    OutputEnd,
    Remote,
    RemoteCancelled,
    RemoteTimeout,
    Result,
    _without_pgid,
)
from provision.direct_ends import ACCEPT_S, CONNECT_S, MARK, NO_PATH
from provision.model import UnreachableError
from provision.relay import _drain

START_S = 15.0  # python3 starting on a busy host, on top of the ends' own bounds
_ADDRESS = re.compile(r"[A-Za-z0-9.:%_-]{1,253}")  # an IP address or a host name, one word


@dataclass(frozen=True)
class NoPath:
    """The hosts could not be joined directly (said why); nothing was copied."""

    why: str


class _End:
    """One end's channel and what it printed so far (the newest bytes of each stream)."""

    def __init__(self, remote: Remote, chan: paramiko.Channel) -> None:
        self.remote, self.chan = remote, chan
        self.out, self.err = bytearray(), bytearray()
        self.end = OutputEnd(chan)

    def poll(self) -> None:
        _drain(self.chan, self.out, self.err)

    def ended(self) -> bool:
        return self.end.reached()

    def said(self, kind: str) -> list[str] | None:
        """The words after `MARK kind` on the newest such stdout line, if any."""
        found = re.findall(rf"^{re.escape(MARK)} {kind} (.*)$", self.out.decode("utf-8", "replace"),
                           re.M)
        return found[-1].split() if found else None

    def why(self) -> str:
        found = re.findall(rf"^{re.escape(MARK)} no-path (.*)$",
                           self.err.decode("utf-8", "replace"), re.M)
        return found[-1].strip()[:300] if found else ""

    def stop(self) -> None:
        try:
            if self.ended():
                self.chan.close()
            else:
                self.remote.stop(self.chan, bytes(self.err))
        except Exception:  # noqa: BLE001 - best effort: the host's own timeout is the backstop
            pass


def direct(source: Remote, source_script: str, target: Remote, target_script: str,
           timeout: float, *, cancel: threading.Event | None = None,
           progress: Callable[[int, float], None] | None = None,
           progress_every: float = 10.0) -> tuple[Result, Result] | NoPath:
    """Run the sender script (direct_ends.send_prefix before its tar) on `source` and the
    receiver script (receive_prefix) on `target`, joined by one TCP connection; both
    Results like relay()'s, or NoPath when no connection could be made and checked.

    Raises RemoteTimeout (past `timeout`), RemoteCancelled or UnreachableError (an SSH
    connection failed), after stopping both ends on their hosts.
    """
    start = time.monotonic()
    token = secrets.token_hex(32)
    src = _End(source, source.start(source_script, timeout))
    ends = [src]
    try:
        src.chan.sendall(f"{token} {_address(target.hostname)}\n".encode())
        listen = _until(ends, lambda: src.said("listen"), start + timeout, START_S + ACCEPT_S,
                        cancel)
        port, own = _listen(listen)
        if port is None:
            return _no_path(ends, f"the sender on {source.spec.name} did not listen")
        addresses = list(dict.fromkeys(a for a in (own, _address(source.hostname)) if a != "-"))
        dst = _End(target, target.start(target_script, timeout))
        ends.append(dst)
        dst.chan.sendall(f"{token} {port} {' '.join(addresses)}\n".encode())
        dst.chan.shutdown_write()
        came = _until(ends, lambda: dst.said("from"), start + timeout,
                      START_S + CONNECT_S * len(addresses), cancel)
        if not came or len(came) != 2 or not _ADDRESS.fullmatch(came[0]) \
                or not came[1].isdigit():
            return _no_path(ends, f"{target.spec.name} could not reach {source.spec.name} "
                                  f"({dst.why() or src.why() or 'no answer'})")
        src.chan.sendall(f"{came[0]} {came[1]}\n".encode())
        src.chan.shutdown_write()
        _stream(ends, start, timeout, cancel, progress, progress_every)
    except (RemoteTimeout, RemoteCancelled):
        for end in ends:
            end.stop()
        raise
    except (paramiko.SSHException, OSError, EOFError) as exc:
        for end in ends:
            end.stop()
        raise UnreachableError(f"{target.spec.name}: the copy from {source.spec.name} failed: "
                               f"{exc or type(exc).__name__}") from None
    dst_rc = dst.chan.recv_exit_status()
    if not src.ended():  # the receiver failed: the sender may be stuck writing to nobody
        src.stop()
    src.chan.status_event.wait(EOF_GRACE_S)  # its EOF may come just before its exit status
    src_rc = src.chan.recv_exit_status() if src.chan.exit_status_ready() else -1
    if NO_PATH in (src_rc, dst_rc):
        return _no_path(ends, src.why() or dst.why() or "the connection was refused")
    for end in ends:
        end.chan.close()
    text = lambda b: _without_pgid(bytes(b)).decode("utf-8", "replace")  # noqa: E731
    seconds = time.monotonic() - start
    return (Result(src_rc, "", text(src.err), seconds),
            Result(dst_rc, text(dst.out), text(dst.err), seconds))


def _stream(ends: list[_End], start: float, timeout: float, cancel: threading.Event | None,
            progress: Callable[[int, float], None] | None, every: float) -> None:
    """Wait for both ends to finish, or only the receiver when it failed (it gives up on a
    stalled stream itself; the sender may then be blocked in a write to a dead peer for as
    long as TCP retries), passing the receiver's byte counts on."""
    dst = ends[1]
    next_progress = time.monotonic() + every

    def finished() -> bool | None:
        nonlocal next_progress
        got = dst.said("got")
        if progress is not None and got and time.monotonic() >= next_progress:
            progress(int(got[0]) if got[0].isdigit() else 0, time.monotonic() - start)
            next_progress = time.monotonic() + every
        if dst.ended() and dst.chan.exit_status_ready() and dst.chan.recv_exit_status():
            return True
        return True if all(end.ended() for end in ends) else None

    _until(ends, finished, start + timeout, timeout + 1, cancel, until_all_end=True)
    for end in ends:
        end.poll()


def _until(ends: list[_End], ready: Callable[[], object], deadline: float, bound: float,
           cancel: threading.Event | None, until_all_end: bool = False):
    """Poll the ends until `ready()` gives something (returned), an end has ended without
    it (all of them, with `until_all_end`), or `bound` seconds pass (None); past
    `deadline` RemoteTimeout, on `cancel` RemoteCancelled."""
    until = time.monotonic() + bound
    while True:
        for end in ends:
            end.poll()
        got = ready()
        if got is not None:
            return got
        ended = [end.ended() for end in ends]
        if (all(ended) if until_all_end else any(ended)) or time.monotonic() > until:
            return None
        if cancel is not None and cancel.is_set():
            raise RemoteCancelled(f"{ends[-1].remote.spec.name}: interrupted; the copy was "
                                  "stopped on both hosts")
        if time.monotonic() > deadline:
            raise RemoteTimeout(f"{ends[-1].remote.spec.name}: the copy ran past its limit and "
                                "was stopped on both hosts")
        select.select([end.chan for end in ends], [], [], 0.2)


def _listen(words: list[str] | None) -> tuple[int | None, str]:
    """The sender's port and own address (untrusted text: checked, else none)."""
    if not words or len(words) != 2 or not words[0].isdigit() or not 0 < int(words[0]) < 65536:
        return None, "-"
    try:
        own = str(ipaddress.ip_address(words[1]))
    except ValueError:
        own = "-"
    return int(words[0]), own


def _address(name: str) -> str:
    """An address for the host ends' argv-free protocol: one word, else `-` (none)."""
    return name if _ADDRESS.fullmatch(name) else "-"


def _no_path(ends: list[_End], why: str) -> NoPath:
    for end in ends:
        end.stop()
    return NoPath(why)
