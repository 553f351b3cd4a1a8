"""Issue 8's findings on lab hosts: concurrent runs, verification behind an SSH-only port,
a failing index, a held dpkg lock, the API key on the host, a model's code in a sandbox."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from provision_lab import faults
from tests.faults.test_faults import Run, provision

KEY = "sk-hostile-0123456789"


@pytest.fixture(scope="module")
def hosts(lab) -> Iterator[dict]:
    faults.ensure_unreachable_route()
    booted = lab.add_hosts(["a100", "a100"])
    named = {"main": booted[0], "index": booted[1], "bare": lab.add_host("a10", bare=True)}
    yield named
    lab.mend()
    for host in named.values():
        lab.remove_host(host.name)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def inventory(lab, hosts) -> str:
    return str(lab.inventory())


@pytest.fixture(scope="module")
def main(hosts, inventory, home):
    host = hosts["main"]
    done = provision(home, "up", "-i", inventory, "--host", host.name,
                     "-e", "fastdeploy_version=2.3")
    assert done.returncode == 0, done.stdout + done.stderr
    return host


# --------------------------------------------------------------------------- D: the host lock


def test_second_run_waits_then_names_the_holder(lab, main, inventory, home) -> None:
    lab.break_version("2.4.0", [main.name])
    try:
        first = Run(home, "-i", inventory, "--host", main.name, "--json",
                    "-e", "fastdeploy_version=2.4.0", "-e", f"api_key={KEY}",
                    "-e", "health_timeout=300")
        assert first.wait_for("| health | waiting"), first.text
        second = provision(home, "up", "-i", inventory, "--host", main.name, "--lock-wait", "3",
                           "-e", f"api_key={KEY}")
        assert first.finish() == 1  # the broken 2.4.0 fails its gate: rolled back
    finally:
        lab.mend([main.name])
    assert second.returncode == 1, second.stdout + second.stderr
    assert "another run holds this host (provision (pid" in second.stdout
    assert f"(pid {first.proc.pid})" in second.stdout and "nothing was changed" in second.stdout
    assert "waiting up to 3s for the host lock" in second.stdout
    after = provision(home, "up", "-i", inventory, "--host", main.name, "--json",
                      "-e", f"api_key={KEY}")
    assert after.returncode == 0, after.stdout + after.stderr  # the lock went with the run


# --------------------------------------------------------------------------- A: verify route


class _Impostor:
    """A healthy-looking FastDeploy on this machine, where an SSH-only address leads."""

    def __init__(self, port: int) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                body = (b"fastdeploy_requests_total 1\n" if self.path == "/metrics" else
                        b'{"data": [{"id": "baidu/ERNIE-4.5-VL-28B-A3B-Paddle"}]}')
                self._send(body)

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers["Content-Length"]))
                self._send(b'{"choices": [{"message": {"content": "I am not your server."}}]}')

            def _send(self, body: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_verify_behind_an_ssh_only_port_checks_the_hosts_own_server(
        lab, main, inventory, home, tmp_path: Path) -> None:
    """Finding A: through a mapped SSH port, a converged host verifies at once (no wait for
    health_timeout), and a server answering at the SSH address is never the one verified."""
    data = yaml.safe_load(Path(inventory).read_text())
    entry = data["all"]["hosts"][main.name]
    known = tmp_path / "known_hosts"
    with faults.SshOnlyForward(main) as forward:
        entry.update(ansible_host="127.0.0.1", ansible_port=forward.port)
        data["all"]["vars"]["known_hosts_file"] = str(known)
        mapped = tmp_path / "mapped.yml"
        mapped.write_text(yaml.safe_dump(data))
        done = provision(home, "up", "-i", str(mapped), "--host", main.name, "--json",
                         "--accept-new-host-key", "-e", f"api_key={KEY}", "-e",
                         "health_timeout=60")
        assert done.returncode == 0, done.stdout + done.stderr
        # verified through the tunnel from the start: the health wait is the server's load
        # alone, never a wait on "refused" at the SSH address until health_timeout (60 s)
        steps = json.loads(done.stdout)["hosts"][0]["steps"]
        health = next(s for s in steps if s["name"] == "verify health")
        assert health["status"] == "ok" and health["seconds"] < 50, steps
        # a change that breaks the host's server, while an impostor answers at the SSH address
        impostor = _Impostor(8180)
        try:
            done = provision(home, "up", "-i", str(mapped), "--host", main.name, "--json",
                             "-e", f"api_key={KEY}", "-e", "extra_server_args=--no-such-flag",
                             "-e", "health_timeout=20")
        finally:
            impostor.close()
    assert done.returncode == 1, done.stdout + done.stderr
    result = json.loads(done.stdout)["hosts"][0]
    assert "rolled back to" in result["error"], result["error"]
    again = provision(home, "up", "-i", inventory, "--host", main.name, "-e", f"api_key={KEY}")
    assert again.returncode == 0, again.stdout + again.stderr


# --------------------------------------------------------------------------- G: the API key


SPY = ("import base64, glob, sys, time\n"
       "key = base64.b64decode(sys.argv[1])[::-1]\n"
       "end = time.monotonic() + float(sys.argv[2])\n"
       "while time.monotonic() < end:\n"
       "    for path in glob.glob('/proc/[0-9]*/cmdline'):\n"
       "        try:\n"
       "            if key in open(path, 'rb').read():\n"
       "                open('/run/spy-found', 'w').write(path)\n"
       "        except OSError:\n"
       "            pass\n"
       "    time.sleep(0.002)\n")


def test_api_key_never_in_any_command_line_on_the_host(main, inventory, home) -> None:
    """Finding G: a process on the host watching every /proc/*/cmdline during the env file's
    change never sees the key; the file holds it, mode 0600."""
    new_key = "sk-rotated-9876543210"
    hidden = base64.b64encode(new_key.encode()[::-1]).decode()
    main.ssh("rm -f /run/spy-found", check=True)
    main.ssh(f"systemd-run --unit=lab-spy --collect /usr/bin/python3 -c '{SPY}' {hidden} 90",
             check=True)
    done = provision(home, "up", "-i", inventory, "--host", main.name, "-e",
                     f"api_key={new_key}")
    main.ssh("systemctl stop lab-spy || true")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "env-file | changed" in done.stdout
    assert main.ssh("cat /run/spy-found").returncode != 0, "the key was in a command line"
    assert f"FD_API_KEY='{new_key}'" in main.read_file("/etc/fastdeploy/env")
    assert oct((main.root / "etc/fastdeploy/env").stat().st_mode & 0o777) == "0o600"
    assert new_key not in done.stdout + done.stderr
    back = provision(home, "up", "-i", inventory, "--host", main.name, "-e", f"api_key={KEY}")
    assert back.returncode == 0


# --------------------------------------------------------------------------- K: the sandbox


def test_model_code_runs_only_in_a_sandbox_on_the_host(main, inventory) -> None:
    """Finding K: no network, read-only system, no home, a time limit; a dynamic user."""
    from provision.commands.targets import resolve_targets
    from provision.connection import Remote
    from provision.sandbox import host_sandbox

    [(spec, settings)] = resolve_targets(inventory, main.name, None, ())
    with Remote(spec, settings) as remote:
        def run(script: str, timeout: float, stdin: bytes) -> tuple[int, str, str]:
            got = remote.run(script, timeout, stdin=stdin)
            return got.rc, got.stdout, got.stderr

        sandbox = host_sandbox(run, "python3")
        me = sandbox("import os, sys; print(os.getuid(), sys.argv[1])", ["x"], 5)
        assert me.rc == 0 and me.stdout.split()[1] == "x" and me.stdout.split()[0] != "0"
        net = sandbox("import socket; socket.create_connection(('10.0.0.1', 22), timeout=2)",
                      [], 5)
        assert net.rc != 0 and "Address family not supported" in net.stderr
        write = sandbox("open('/etc/pwned', 'w').write('x')", [], 5)
        assert write.rc != 0 and "Read-only file system" in write.stderr
        home = sandbox("open('/root/x', 'w')", [], 5)
        assert home.rc != 0
        start = time.monotonic()
        loop = sandbox("while True: pass", [], 2)
        assert loop.timed_out and time.monotonic() - start < 15
    assert main.ssh("test -e /etc/pwned").returncode != 0


# --------------------------------------------------------------------------- F: the index


@pytest.mark.parametrize("mode, words", [
    ("500", "HTTP 500"),
    ("404", "HTTP 404"),
    ("closed", "refused"),
    ("hung", "timed out"),  # accepts, never answers: the host's fetch gives up, bounded
])
def test_index_failures_are_named_by_cause(hosts, inventory, home, mode: str,
                                           words: str) -> None:
    host = hosts["index"]
    started = time.monotonic()
    with faults.FaultIndex(mode) as index:
        done = provision(home, "up", "-i", inventory, "--host", host.name, "--json",
                         "-e", f"package_index_url={index.url}")
    # The host reads the index in the facts trip (issue 7), so a failing index is a pre-flight
    # refusal (exit 4, nothing changed) naming the cause and the fix, never the Python.
    assert done.returncode == 4, done.stdout + done.stderr
    assert time.monotonic() - started < 60, "a hung index must not hold the run"
    problems = [p for p in json.loads(done.stdout)["hosts"][0]["problems"]
                if p["severity"] == "error"]
    text = json.dumps(problems)
    assert words in text and index.url in text and problems[0]["fix"], text
    assert "Python" not in problems[0]["message"], text


def test_a_slow_index_is_waited_for_not_refused(hosts, inventory, home) -> None:
    """An index that answers late (5 s a page, a far upstream) is no failure: the plan
    comes out as with the lab's own index."""
    host = hosts["index"]
    with faults.FaultIndex("slow", delay_s=5) as index:
        done = provision(home, "up", "-i", inventory, "--host", host.name, "--json",
                         "--check", "-e", f"package_index_url={index.url}/packages/stable/")
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)["hosts"][0]
    assert not [p for p in result["problems"] if p["severity"] == "error"], result
    assert "release" in [s["name"] for s in result["steps"]], result


# --------------------------------------------------------------------------- a small disk

RELEASES = "/opt/fastdeploy/releases"


def test_a_small_disk_is_refused_before_any_change(hosts, inventory, home) -> None:
    host = hosts["index"]
    faults.shrink_disk(host, RELEASES, 300)
    try:
        done = provision(home, "up", "-i", inventory, "--host", host.name, "--json")
        listed = host.ssh(f"ls -A {RELEASES}").stdout
    finally:
        faults.restore_disk(host, RELEASES)
    assert done.returncode == 4, done.stdout + done.stderr
    problems = [p for p in json.loads(done.stdout)["hosts"][0]["problems"]
                if p["severity"] == "error"]
    assert problems and RELEASES in problems[0]["message"] + problems[0]["value"], problems
    assert "disk" in problems[0]["fix"], problems
    assert listed == "", "nothing may be written before pre-flight passes"
    assert host.ssh("test -e /opt/fastdeploy/venv").returncode != 0


def test_a_failed_builds_leftovers_count_as_free_space(hosts, inventory, home) -> None:
    """A `.partial` release is deleted by the next build before it starts, so pre-flight
    counts its space as free: 300 MiB short without it, enough with it."""
    from provision.preflight import RELEASE_MIB

    host = hosts["index"]
    faults.shrink_disk(host, RELEASES, RELEASE_MIB + 100)
    try:
        host.ssh(f"mkdir {RELEASES}/fastdeploy-0.0.1_x.partial && head -c 400M /dev/zero "
                 f"> {RELEASES}/fastdeploy-0.0.1_x.partial/blob", check=True)
        done = provision(home, "up", "-i", inventory, "--host", host.name, "--json", "--check")
    finally:
        faults.restore_disk(host, RELEASES)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)["hosts"][0]
    assert not [p for p in result["problems"] if p["severity"] == "error"], result


# --------------------------------------------------------------------------- I: dpkg lock


def test_held_dpkg_lock_is_waited_for(hosts, inventory, home) -> None:
    host = hosts["bare"]
    faults.hold_dpkg_lock(host, 20)
    start = time.monotonic()
    done = provision(home, "up", "-i", inventory, "--host", host.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "lock-frontend is held by python3" in done.stdout
    assert "waiting up to 600s" in done.stdout
    assert time.monotonic() - start >= 15
    assert "packages | changed" in done.stdout


# --------------------------------------------------------------------------- E: a dying host


def test_a_host_that_dies_midway_is_reported_within_the_keepalive(lab, hosts, inventory,
                                                                  home) -> None:
    """Finding E: silence from a dead host fails within the keepalive limit (30 s), exit 3,
    saying the host was changed and what the next run will do."""
    host = hosts["index"]
    done = provision(home, "up", "-i", inventory, "--host", host.name,
                     "-e", "fastdeploy_version=2.3")
    assert done.returncode == 0, done.stdout + done.stderr
    lab.break_version("2.4.0", [host.name])
    run = Run(home, "-i", inventory, "--host", host.name, "--json",
              "-e", "fastdeploy_version=2.4.0", "-e", "health_timeout=300")
    assert run.wait_for("| health | waiting"), run.text
    start = time.monotonic()
    # The link goes silent at once; stopping the container after it can take long on a
    # loaded machine, and is not what the tool has to notice: time the tool alone.
    killer = threading.Thread(target=faults.kill_host, args=(host,))
    killer.start()
    code = run.finish()
    took = time.monotonic() - start
    killer.join(120)
    assert code == 3, run.text
    assert took < 75, f"a dead host took {took:.0f}s to notice"
    error = json.loads(run.stdout)["hosts"][0]["error"]
    assert "WAS changed" in error and "next run on this host rolls it back" in error, error
