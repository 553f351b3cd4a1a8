"""One host's output streamed into another host's input, through this machine's two SSH
connections: how a fleet copies what one host fetched (provision/share.py) when the hosts
cannot reach each other directly (provision/direct_copy.py is tried first).

Why through this machine: it already holds a verified connection to both hosts, so no host
needs a route, a key or an open port towards another, and nothing secret is placed on either.
The stream is never held whole here: a bounded window of 64 KiB at a time, so a copy of many
GB costs this machine no memory. Both ends run as every remote command does (their own
process group, the host's own timeout as the backstop), and both are killed on the hosts
when the copy times out, is interrupted, or one end fails.
"""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Callable

import paramiko

from provision.connection import (
    OutputEnd,
    Remote,
    RemoteCancelled,
    RemoteTimeout,
    Result,
    _without_pgid,
)
from provision.model import UnreachableError

CHUNK = 1 << 16
STALL_S = 60.0  # the receiving end accepted nothing for this long: it is gone
KEEP_ERR = 1 << 16  # the stderr kept of each end (its tail is what a failure shows)


def relay(source: Remote, source_script: str, target: Remote, target_script: str,
          timeout: float, *, cancel: threading.Event | None = None,
          progress: Callable[[int, float], None] | None = None,
          progress_every: float = 10.0) -> tuple[Result, Result]:
    """Run `source_script` on one host and `target_script` on another, the first's stdout
    fed to the second's stdin; returns both Results (stdout of the source is not kept).

    `progress(bytes, seconds)` is called every `progress_every` s while bytes flow. Raises
    RemoteTimeout (past `timeout`), RemoteCancelled (`cancel` set) or UnreachableError (a
    connection failed), after stopping both ends on their hosts.
    """
    start = time.monotonic()
    deadline = start + timeout
    src = source.start(source_script, timeout)
    try:
        dst = target.start(target_script, timeout)
    except BaseException:
        source.stop(src, b"")
        raise
    src.shutdown_write()
    dst.settimeout(STALL_S)
    src_err, dst_out, dst_err = bytearray(), bytearray(), bytearray()
    sent, next_progress, fed = 0, start + progress_every, True
    src_end, dst_end = OutputEnd(src), OutputEnd(dst)
    try:
        while True:
            if cancel is not None and cancel.is_set():
                raise RemoteCancelled(f"{target.spec.name}: interrupted; the copy from "
                                      f"{source.spec.name} was stopped on both hosts")
            if time.monotonic() > deadline:
                raise RemoteTimeout(f"{target.spec.name}: the copy from {source.spec.name} ran "
                                    f"past its limit of {timeout:.0f}s and was stopped on both "
                                    "hosts")
            _drain(src, None, src_err)
            _drain(dst, dst_out, dst_err)
            if fed and src.recv_ready():
                data = src.recv(CHUNK)
                if data:
                    dst.sendall(data)
                    sent += len(data)
            elif fed and src_end.reached() and not src.recv_ready():
                _drain(src, None, src_err)
                dst.shutdown_write()
                fed = False
            if not fed and dst_end.reached():
                _drain(dst, dst_out, dst_err)
                break
            if progress is not None and time.monotonic() >= next_progress:
                progress(sent, time.monotonic() - start)
                next_progress = time.monotonic() + progress_every
            select.select([src, dst], [], [], 0.2)
    except (RemoteTimeout, RemoteCancelled):
        _stop_both(source, src, src_err, target, dst, dst_err)
        raise
    except (paramiko.SSHException, OSError, EOFError) as exc:
        _stop_both(source, src, src_err, target, dst, dst_err)
        raise UnreachableError(f"{target.spec.name}: the copy from {source.spec.name} failed: "
                               f"{exc or type(exc).__name__}") from None
    seconds = time.monotonic() - start
    src_rc, dst_rc = src.recv_exit_status(), dst.recv_exit_status()
    src.close()
    dst.close()
    text = lambda b: _without_pgid(bytes(b)).decode("utf-8", "replace")  # noqa: E731
    return (Result(src_rc, "", text(src_err), seconds),
            Result(dst_rc, text(dst_out), text(dst_err), seconds))


def _drain(chan: paramiko.Channel, out: bytearray | None, err: bytearray) -> None:
    """What is waiting on a channel's stderr (and stdout, when `out` is given), the newest
    KEEP_ERR bytes kept (the first line, the process group, is kept too)."""
    while out is not None and chan.recv_ready():
        out += chan.recv(CHUNK)
        del out[:-KEEP_ERR]
    while chan.recv_stderr_ready():
        err += chan.recv_stderr(CHUNK)
        if len(err) > 2 * KEEP_ERR:
            first = bytes(err).partition(b"\n")
            del err[:]
            err += first[0] + first[1] + first[2][-KEEP_ERR:]


def _stop_both(source: Remote, src: paramiko.Channel, src_err: bytearray, target: Remote,
               dst: paramiko.Channel, dst_err: bytearray) -> None:
    for remote, chan, err in ((target, dst, dst_err), (source, src, src_err)):
        try:
            remote.stop(chan, bytes(err))
        except Exception:  # noqa: BLE001 - best effort: the host's own timeout is the backstop
            pass
