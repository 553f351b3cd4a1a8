"""Issue 12, goal 3 on lab hosts: a cold `up` of several hosts fetches each release from the
package index once and the weights from the hub once; the other hosts copy them from the host
that fetched them, and when a copy fails they fetch as they would have alone. The lab's
index server counts what it sent to whom (its access log), so the bytes are the proof."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from provision.commands.targets import resolve_targets
from provision.connection import Remote
from provision.direct_ends import NO_PATH, receive_prefix, send_prefix
from provision.share import receive_script, source_script
from provision_lab import paths
from provision_lab.network import netns_name
from provision_lab.system import run
from tests.e2e.test_fleet import provision

VENV_PYTHON = "/opt/fastdeploy/venv/bin/python"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


PAD_MB, WEIGHTS_MB = 8, 24  # big enough to tell one fetch from three, small enough to be quick


@pytest.fixture(scope="module")
def hosts(lab) -> Iterator[list]:
    lab.set_upstream(pad_mb=PAD_MB, weights_mb=WEIGHTS_MB)
    booted = lab.add_hosts(["a100", "a100", "a100"], seed_weights=False)
    yield booted
    for host in booted:
        lab.remove_host(host.name)
    lab.set_upstream()


@pytest.fixture(scope="module")
def inventory(lab, hosts) -> str:
    return str(lab.inventory())


# A small model: hosts without seeded weights must have the catalogue's weights size free for
# pre-flight, and the default model's 60 GB would refuse them on a machine with less free disk.
MODEL = "baidu/ERNIE-4.5-0.3B-Paddle"


def _up(home: Path, inventory: str, hosts) -> tuple[int, dict]:
    done = provision(home, "up", "-i", inventory, "--limit", ":".join(h.name for h in hosts),
                     "--json", "-e", f"model={MODEL}")
    try:
        return done.returncode, {r["host"]: r for r in json.loads(done.stdout)["hosts"]}
    except ValueError:
        pytest.fail(f"up gave no JSON ({done.returncode}): {done.stdout}{done.stderr}")


def _release_reason(result: dict) -> str:
    return next(s["reason"] for s in result["steps"] if s["name"] == "release")


def _freeze(host) -> str:
    done = host.ssh(f"{VENV_PYTHON} -m pip freeze --all", check=True)
    return done.stdout


def _sent(lab, mark: int) -> dict:
    """What the index server sent since the mark (it logs a request as its response ends)."""
    time.sleep(1)
    return lab.index_bytes(mark)


def _here_received() -> int:
    """Bytes this machine received from the lab's hosts (its side of the lab bridge; traffic
    the bridge forwards between two hosts is not counted there)."""
    return int(Path(f"/sys/class/net/{paths.BRIDGE}/statistics/rx_bytes").read_text())


def _weights_reasons(results: dict) -> dict:
    return {name: next((s["reason"] for s in r["steps"] if s["name"] == "weights"), "")
            for name, r in results.items()}


def test_a_cold_fleet_fetches_once_and_copies(lab, home, inventory, hosts) -> None:
    mark, here = lab.index_mark(), _here_received()
    code, results = _up(home, inventory, hosts)
    assert code == 0, json.dumps(results, indent=1)[-3000:]
    received = _here_received() - here
    sent = _sent(lab, mark)
    reasons = {name: _release_reason(r) for name, r in results.items()}
    built = [name for name, why in reasons.items() if why.startswith("build ")]
    copied = [name for name, why in reasons.items() if why.startswith("copied ")]
    assert len(built) == 1 and len(copied) == len(hosts) - 1, reasons
    assert all(f"from {built[0]} host to host" in reasons[name] for name in copied), reasons
    # host to host: the two copies of the release and the weights (each over PAD_MB +
    # WEIGHTS_MB) did not come through this machine, which got only SSH output and HTTP
    assert received < WEIGHTS_MB * 1e6, received
    # one padded paddlepaddle-gpu (+ a quarter for fastdeploy-gpu) left the index, not three;
    # the weights left the hub once: the other two servers found a verified copy in place
    assert PAD_MB * 1e6 < sent["paddle"] < 2 * PAD_MB * 1e6, sent
    assert WEIGHTS_MB * 1e6 <= sent["hub"] < 1.5 * WEIGHTS_MB * 1e6, sent
    weights = _weights_reasons(results)
    assert sum(why.startswith("copied ") and "host to host" in why
               for why in weights.values()) == len(hosts) - 1, weights
    # the copies are the built release: the same distributions, each checked on its own host
    freezes = {h.name: _freeze(h) for h in hosts}
    assert len(set(freezes.values())) == 1, freezes
    assert "fastdeploy-gpu==" in freezes[built[0]]
    for host in hosts:
        assert requests.get(f"http://{host.address}:8180/health", timeout=5).status_code == 200
    again_code, again = _up(home, inventory, hosts)
    assert again_code == 0 and all(r["status"] == "ok" for r in again.values()), again


def test_a_failed_copy_falls_back_to_the_index(home, inventory, hosts) -> None:
    """tar broken on every host: no copy can work, so each host builds from the index, as it
    would have alone, and the run still converges."""
    pair = hosts[:2]
    for host in pair:
        host.ssh("systemctl stop fastdeploy; rm -rf /opt/fastdeploy /etc/fastdeploy "
                 "/etc/systemd/system/fastdeploy.service; systemctl daemon-reload", check=True)
        host.ssh("printf '#!/bin/sh\\necho tar: broken by the test >&2\\nexit 2\\n' "
                 "> /usr/local/bin/tar && chmod 755 /usr/local/bin/tar", check=True)
    try:
        code, results = _up(home, inventory, pair)
    finally:
        for host in pair:
            host.ssh("rm -f /usr/local/bin/tar")
    assert code == 0, json.dumps(results, indent=1)[-3000:]
    reasons = {name: _release_reason(r) for name, r in results.items()}
    assert all(why.startswith("build ") for why in reasons.values()), reasons
    for host in pair:
        assert requests.get(f"http://{host.address}:8180/health", timeout=5).status_code == 200


def _cold(host) -> None:
    """The host as before its first `up`: no release, unit, env or weights."""
    host.ssh("systemctl stop fastdeploy; rm -rf /opt/fastdeploy /etc/fastdeploy "
             "/var/lib/fastdeploy /etc/systemd/system/fastdeploy.service; "
             "systemctl daemon-reload", check=True)


def test_hosts_that_cannot_reach_each_other_relay_the_copy(lab, home, inventory, hosts) -> None:
    """Each host's own kernel refuses traffic to the other (a reject rule between them, as a
    firewall would have): the direct path fails at once, the relay through this machine
    takes over, and the copies still arrive and are checked."""
    pair = hosts[:2]
    for host in pair:
        _cold(host)
    routes = [(netns_name(a.name), b.address) for a in pair for b in pair if a is not b]
    for ns, address in routes:
        run("ip", "-n", ns, "route", "add", "prohibit", f"{address}/32")
    here = _here_received()
    try:
        code, results = _up(home, inventory, pair)
    finally:
        for ns, address in routes:
            run("ip", "-n", ns, "route", "del", "prohibit", f"{address}/32", check=False)
    assert code == 0, json.dumps(results, indent=1)[-3000:]
    reasons = {name: _release_reason(r) for name, r in results.items()}
    copied = [why for why in reasons.values() if why.startswith("copied ")]
    assert len(copied) == 1 and "relayed through this machine" in copied[0], reasons
    weights = [why for why in _weights_reasons(results).values() if why.startswith("copied ")]
    assert len(weights) == 1 and "relayed through this machine" in weights[0], weights
    # the relay: the release and the weights came up to this machine on their way across
    assert _here_received() - here > (PAD_MB + WEIGHTS_MB) * 1e6
    for host in pair:
        assert requests.get(f"http://{host.address}:8180/health", timeout=5).status_code == 200


def _line(chan, mark: str, seconds: float = 30) -> list[str]:
    """The words after `provision-direct: <mark>` on a channel's stdout."""
    out, end = b"", time.monotonic() + seconds
    while time.monotonic() < end:
        if chan.recv_ready():
            out += chan.recv(4096)
            for line in out.decode().splitlines():
                if line.startswith(f"provision-direct: {mark} "):
                    return line.split()[2:]
        else:
            time.sleep(0.05)
    pytest.fail(f"no `{mark}` line in {out!r}")


def _stderr(chan, seconds: float = 60) -> str:
    """A channel's stderr until its command exits (at most `seconds`)."""
    err, end = b"", time.monotonic() + seconds
    while time.monotonic() < end and not chan.closed and (
            chan.recv_stderr_ready() or not chan.exit_status_ready()):
        err += chan.recv_stderr(4096) if chan.recv_stderr_ready() else b""
        time.sleep(0.02)
    while chan.recv_stderr_ready():
        err += chan.recv_stderr(4096)
    return err.decode()


def test_the_sender_refuses_a_receiver_with_a_wrong_token(inventory, hosts) -> None:
    """The real ends on two lab hosts, the receiver given another token than the sender: the
    sender sends nothing and says why; the receiver unpacks nothing."""
    a, b = hosts[0], hosts[1]
    a.ssh("rm -rf /tmp/direct && mkdir -p /tmp/direct/tree && echo data > /tmp/direct/tree/f",
          check=True)
    [(spec_a, settings_a)] = resolve_targets(inventory, a.name, None, ())
    [(spec_b, settings_b)] = resolve_targets(inventory, b.name, None, ())
    with Remote(spec_a, settings_a) as src_host, Remote(spec_b, settings_b) as dst_host:
        src = src_host.start(source_script("/tmp/direct", "tree", send_prefix()), 60)
        src.sendall(f"{'a' * 64} {b.address}\n".encode())
        port, own = _line(src, "listen")
        assert own == a.address  # the sender's own address towards the target
        dst = dst_host.start(receive_script("/tmp/direct/staging", receive_prefix()), 60)
        dst.sendall(f"{'b' * 64} {port} {own}\n".encode())
        came = _line(dst, "from")
        assert came[0] == b.address
        src.sendall(f"{came[0]} {came[1]}\n".encode())
        src_err, dst_err = _stderr(src), _stderr(dst)
        assert src.recv_exit_status() == NO_PATH, src_err
        assert "wrong token" in src_err, src_err
        assert dst.recv_exit_status() == NO_PATH and "the source refused" in dst_err, dst_err
    assert b.ssh("ls -A /tmp/direct/staging", check=True).stdout == ""
