"""What the lab's index server sends, counted and throttled: a far upstream, measurable.

Every response body byte the index server writes (Paddle index, general index, its HTTPS
pypi.org stand-in, the model hub) goes through one writer that

- takes its turn from one token bucket shared by every connection on every port (the
  upstream's total rate, as a far mirror or hub has: hosts on the lab bridge still reach each
  other at full speed), and
- counts what the socket actually accepted, so a client that hangs up midway counts what it
  was sent, not what it asked for.

Each finished request (or broken one) appends one JSON line to the access log: time, server
kind, client address, path, body bytes. The log is append-only; a position in it (its size)
is a mark, and totals since a mark are what a test or `bench/` compares.

MB here is 10**6 bytes, as network rates are quoted.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

MB = 1_000_000
KINDS = ("paddle", "general", "pypi", "hub")
CHUNK = 64 * 1024  # one send: small enough that parallel clients interleave fairly


class TokenBucket:
    """A total rate in bytes/s, shared by every caller; rate 0 means unlimited.

    Callers reserve bytes in turn (the debt is kept, so concurrent senders are served in the
    order they asked and together never exceed the rate beyond one burst). The burst, 50 ms
    of the rate (at least one chunk), lets a sender that slept too long (a loaded machine)
    catch up: with a burst of one chunk a single client got 75% of 40 MB/s here."""

    BURST_S = 0.05

    def __init__(self, rate_bytes: float) -> None:
        self.rate = float(rate_bytes)
        self.burst = max(float(CHUNK), self.rate * self.BURST_S)
        self._tokens = self.burst
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def take(self, count: int) -> None:
        """Block until `count` bytes may be sent."""
        if self.rate <= 0:
            return
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= count
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            time.sleep(wait)


class AccessLog:
    """The append-only JSON-lines log (one line per request), or nowhere when path is None."""

    def __init__(self, path: Path | None) -> None:
        self.path = Path(path) if path else None
        self._lock = threading.Lock()

    def record(self, kind: str, client: str, path: str, sent: int) -> None:
        if self.path is None:
            return
        line = json.dumps({"t": round(time.time(), 3), "kind": kind, "client": client,
                           "path": path, "bytes": sent}, sort_keys=True) + "\n"
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)


class MeteredWriter:
    """The handler's wfile: every write through the bucket in chunks, body bytes counted as
    the socket accepts them (headers, written before `body` is set, are not counted)."""

    def __init__(self, sock, bucket: TokenBucket) -> None:
        self._sock = sock
        self._bucket = bucket
        self.body = False
        self.sent = 0
        self.closed = False

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        total = len(view)
        while view:
            piece = view[:CHUNK]
            self._bucket.take(len(piece))
            while piece:
                done = self._sock.send(piece)
                if self.body:
                    self.sent += done
                piece = piece[done:]
            view = view[CHUNK:]
        return total

    def flush(self) -> None:
        pass

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True  # the socket is the server's to close


_UNLIMITED = TokenBucket(0)


class MeteredHandlerMixin:
    """Mix into an http.server handler: its responses go through the server's bucket and
    land in the server's access log (attributes set by `meter`; absent: unlimited, unlogged).
    """

    def setup(self) -> None:
        super().setup()
        self.wfile = MeteredWriter(self.connection, getattr(self.server, "lab_bucket",
                                                             _UNLIMITED))

    def end_headers(self) -> None:
        super().end_headers()
        self.wfile.body = True

    def handle_one_request(self) -> None:
        self.wfile.body = False
        self.wfile.sent = 0
        self.requestline = ""
        try:
            super().handle_one_request()
        except (ConnectionError, TimeoutError):
            self.close_connection = True  # the client hung up: counted below, not an error
        finally:
            log = getattr(self.server, "lab_log", None)
            if log is not None and self.requestline:
                path = getattr(self, "path", "")
                log.record(self.server.lab_kind, self.client_address[0], path,
                           self.wfile.sent)


def meter(server, kind: str, log: AccessLog, bucket: TokenBucket) -> None:
    """Put a built server (its handler a MeteredHandlerMixin) under the log and bucket."""
    if kind not in KINDS:
        raise ValueError(f"server kind {kind!r}: use one of {', '.join(KINDS)}")
    server.lab_kind = kind
    server.lab_log = log
    server.lab_bucket = bucket


def mark(path: Path) -> int:
    """A position in the log: totals `since` it count only what was served after."""
    try:
        return Path(path).stat().st_size
    except FileNotFoundError:
        return 0


def totals(path: Path, since: int | None = None, until: int | None = None) -> dict:
    """Body bytes served between the marks (None: since the log began, up to now), per
    server kind, in all, and per client address."""
    result: dict = {kind: 0 for kind in KINDS}
    result["total"] = 0
    result["by_client"] = {}
    try:
        with open(path, "rb") as f:
            f.seek(since or 0)
            data = f.read() if until is None else f.read(max(0, until - (since or 0)))
    except FileNotFoundError:
        return result
    for raw in data.splitlines():
        try:
            entry = json.loads(raw)
        except ValueError:
            continue  # a line cut by a crash of the server
        sent = int(entry.get("bytes", 0))
        kind = entry.get("kind")
        if kind in KINDS:
            result[kind] += sent
        result["total"] += sent
        client = str(entry.get("client", "?"))
        result["by_client"][client] = result["by_client"].get(client, 0) + sent
    return result
