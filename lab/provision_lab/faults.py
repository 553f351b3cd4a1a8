"""Faults the lab can inject, so tests can prove what the tool does when things go wrong.

Each fault is real where it can be: a link cut is the host's own eth0 taken down inside
its network namespace (its TCP sessions see silence, not a reset), a failing package index
is a real HTTP server on the lab bridge answering 500, 404, never, or slowly, a held dpkg
lock is a process on the host holding apt's own fcntl lock, a killed host is its
systemd-nspawn killed. An unreachable route for the lab's /24 (behind the bridge's own
route) makes sure a downed bridge can never send lab traffic out of the default route.
Used by tests/faults/ and by `provision lab fault ...`.
"""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

from provision_lab import machine, paths
from provision_lab.machine import LabHost
from provision_lab.network import netns_name
from provision_lab.system import run

INDEX_MODES = ("500", "404", "closed", "hung", "slow")
ROUTE_METRIC = "4242"  # above the bridge's own route: used only when that route is gone


def ensure_unreachable_route() -> None:
    """Lab addresses never leave this machine, even when the bridge is down."""
    run("ip", "route", "replace", "unreachable", f"{paths.SUBNET}.0/24", "metric", ROUTE_METRIC)


_CUTS: dict[str, threading.Event] = {}  # host -> set when its link is restored early


def cut_link(host: LabHost, seconds: float) -> threading.Thread:
    """Take the host's eth0 down now and up again after `seconds` (returns the timer);
    restore_link ends the cut early (and for good: a later timer does nothing)."""
    ns = netns_name(host.name)
    restored = threading.Event()
    _CUTS[host.name] = restored
    run("ip", "-n", ns, "link", "set", "eth0", "down")

    def restore() -> None:
        if not restored.wait(seconds):
            run("ip", "-n", ns, "link", "set", "eth0", "up", check=False)

    timer = threading.Thread(target=restore, daemon=True)
    timer.start()
    return timer


def restore_link(host: LabHost) -> None:
    cut = _CUTS.pop(host.name, None)
    if cut is not None:
        cut.set()
    run("ip", "-n", netns_name(host.name), "link", "set", "eth0", "up", check=False)


HOLD_LOCK = ("import fcntl, sys, time\n"
             "f = open('/var/lib/dpkg/lock-frontend', 'a')\n"
             "fcntl.lockf(f, fcntl.LOCK_EX)\n"
             "time.sleep(float(sys.argv[1]))\n")


def hold_dpkg_lock(host: LabHost, seconds: float) -> None:
    """A process on the host (a transient unit, as unattended-upgrades would be) holding
    dpkg's frontend lock for `seconds`."""
    command = ["systemd-run", "--unit=lab-dpkg-lock", "--collect", "/usr/bin/python3", "-c",
               HOLD_LOCK, str(seconds)]
    host.ssh(" ".join(_quote(a) for a in command), check=True)


DISK_SOURCE = "provision-lab-disk"  # the tmpfs's name in the host's mount table


def shrink_disk(host: LabHost, path: str, mib: int) -> None:
    """Only `mib` MiB free at `path` on the host: a tmpfs of that size mounted there (the
    host sees it through statvfs and df as a small disk, as a cloud host's root often is).
    Whatever was under `path` is hidden until restore_disk."""
    host.ssh(f"mkdir -p {_quote(path)} && mount -t tmpfs -o size={int(mib)}m "
             f"{DISK_SOURCE} {_quote(path)}", check=True)


def restore_disk(host: LabHost, path: str) -> None:
    """Undo shrink_disk, every one stacked at `path` (and only those: a path with no lab
    tmpfs on top is left alone); fails when one is still there afterwards."""
    top = f"$(findmnt -n -o SOURCE -M {_quote(path)} | tail -n 1)"
    host.ssh(f'while [ "{top}" = {DISK_SOURCE} ]; do umount {_quote(path)} || exit 1; done',
             check=True)


def kill_host(host: LabHost) -> None:
    """The host dies: its link goes silent first (so no FIN or RST reaches anyone, as with a
    lost machine), then its container is stopped and its state removed."""
    run("ip", "-n", netns_name(host.name), "link", "set", "eth0", "down", check=False)
    machine.stop(host)


def _quote(word: str) -> str:
    import shlex

    return shlex.quote(word)


class FaultIndex:
    """A package index that fails in one way: 500, 404, closed (nothing listens), hung
    (accepts, never answers), slow (answers the real lab index's pages after `delay_s`)."""

    def __init__(self, mode: str, delay_s: float = 5.0) -> None:
        if mode not in INDEX_MODES:
            raise ValueError(f"index fault {mode!r}: one of {', '.join(INDEX_MODES)}")
        self.mode, self.delay_s = mode, delay_s
        self._httpd: ThreadingHTTPServer | None = None
        if mode == "closed":
            with socket.socket() as probe:
                probe.bind((paths.GATEWAY, 0))
                self.port = probe.getsockname()[1]
            return
        self._httpd = ThreadingHTTPServer((paths.GATEWAY, 0), self._handler())
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://{paths.GATEWAY}:{self.port}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fault = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if fault.mode == "hung":
                    time.sleep(3600)
                    return
                if fault.mode in ("500", "404"):
                    self.send_response(int(fault.mode))
                    self.end_headers()
                    self.wfile.write(b"lab fault\n")
                    return
                time.sleep(fault.delay_s)
                got = requests.get(paths.INDEX_URL + self.path, timeout=30)
                self.send_response(got.status_code)
                self.send_header("Content-Type", got.headers.get("Content-Type", "text/html"))
                self.send_header("Content-Length", str(len(got.content)))
                self.end_headers()
                self.wfile.write(got.content)

        return Handler

    def close(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self) -> FaultIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def host_processes(host: LabHost) -> list[str]:
    """Processes on the host that a provision run started (none may outlive the run)."""
    done = host.ssh("ps -eo args=", check=True)
    words = ("pip", "provision", "timeout ", "flock", "systemd-run", " cat")
    return [line for line in done.stdout.splitlines()
            if any(w in line for w in words) and "ps -eo" not in line]


def wait_for(predicate, timeout: float, every: float = 0.5) -> bool:
    """Poll until `predicate()` is true, at most `timeout` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(every)
    return False


class SshOnlyForward:
    """A port on this machine that forwards to the host's SSH port only, as a GPU cloud's
    mapped port does: the host's other ports are not reachable through it."""

    def __init__(self, host: LabHost) -> None:
        self.target = (host.address, 22)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    def close(self) -> None:
        self._stopped.set()
        self._listener.close()

    def __enter__(self) -> SshOnlyForward:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
