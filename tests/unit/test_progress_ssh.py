"""Progress over a real OpenSSH sshd: lines reach the callback while the command still runs,
the build's progress loop ends with its step, and the health poll measures a directory
that really grows on the host, in one exec per poll."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest

from provision.connection import Remote
from provision.model import HostSpec, Settings
from provision.progress import PREFIX, Meter, health_text
from provision.steps.release import progress_lines
from provision.verify import parse_poll, poll_script, wait_healthy
from tests.unit.sshd_server import Sshd
from tests.unit.test_progress import _refused_endpoint


@pytest.fixture
def remote(sshd: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # the real ~/.ssh stays out
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts_line())
    spec = HostSpec(name="box", address="127.0.0.1", port=sshd.port, user="root",
                    key_file=str(sshd.client_key))
    with Remote(spec, Settings(known_hosts_file=str(known))) as conn:
        yield conn


SCRIPT = (f"printf '{PREFIX}one\\n'; sleep 1.5; printf 'plain line\\n{PREFIX}two\\n'; "
          f"sleep 1.5; printf 'tail {PREFIX}not at the start\\n{PREFIX}unfinished'")


def test_progress_lines_arrive_before_the_command_ends(remote: Remote) -> None:
    seen: list[tuple[float, str]] = []
    start = time.monotonic()
    got = remote.run(SCRIPT, 30, progress=lambda line: seen.append((time.monotonic(), line)))
    ended = time.monotonic()
    assert [line for _, line in seen] == [f"{PREFIX}one", f"{PREFIX}two"]
    assert seen[0][0] - start < 1.5 and ended - seen[0][0] > 2.0  # live, not at the end
    assert ended - seen[1][0] > 1.0
    plain = remote.run(SCRIPT, 30)
    assert got.stdout == plain.stdout and got.rc == plain.rc == 0  # the output is unchanged
    assert got.stdout.endswith(f"{PREFIX}unfinished")


def test_a_failing_callback_does_not_fail_the_command(remote: Remote) -> None:
    def boom(line: str) -> None:
        raise RuntimeError("display broke")

    got = remote.run(SCRIPT, 30, progress=boom)
    assert got.ok and f"{PREFIX}two" in got.stdout


def test_build_progress_loop_reports_and_ends_with_the_step(remote: Remote,
                                                            tmp_path: Path) -> None:
    partial, log = tmp_path / "r.partial", tmp_path / "r.partial/provision-pip.log"
    script = "\n".join(["set -eu", f"mkdir -p {partial}", *progress_lines(str(partial),
                        str(log), every=1),
                        f"printf 'Collecting a\\n  Downloading a-1.whl (3 MB)\\n' > {log}",
                        f"head -c 2000000 /dev/zero > {partial}/blob",
                        "sleep 3.5", "false"])
    lines: list[str] = []
    start = time.monotonic()
    got = remote.run(script, 30, progress=lines.append)
    assert got.rc == 1 and time.monotonic() - start < 6  # the loop did not hold the output
    assert len(lines) >= 2
    assert lines[-1].startswith(f"{PREFIX}venv_kb=")
    assert lines[-1].endswith("pip=  Downloading a-1.whl (3 MB)")
    # The connection's watcher (whose argv holds the script) ends within ~1 s; a loop
    # that outlived its step would still be there.
    deadline = time.monotonic() + 5
    while _running(f"provision_progress {partial}") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _running(f"provision_progress {partial}"), "the progress loop outlived its step"


def _running(pattern: str) -> bool:
    return subprocess.run(["pgrep", "-f", pattern], capture_output=True).returncode == 0


def test_health_poll_measures_a_growing_download(remote: Remote, sshd: Sshd,
                                                 tmp_path: Path) -> None:
    """The size comes from the host (du over SSH), one exec per poll, and the progress
    text says bytes, rate and ETA as the directory grows."""
    cache = tmp_path / "cache"
    target = cache / "PaddlePaddle" / "M"
    target.mkdir(parents=True)
    settings = Settings(model="baidu/M", model_cache_dir=str(cache), log_dir=str(tmp_path),
                        service_name="provision-test-none")
    stop = threading.Event()

    def grow() -> None:
        for i in range(200):
            (target / f"part{i}").write_bytes(b"\0" * 2_000_000)
            if stop.wait(0.1):
                return

    before = remote.exec_requests
    polls: list[int] = []

    def poll():
        polls.append(1)
        got = remote.run(poll_script(settings, (str(target),)), 30)
        return parse_poll(got.stdout)

    said: list[str] = []
    writer = threading.Thread(target=grow, daemon=True)
    writer.start()
    try:
        check = wait_healthy(_refused_endpoint(), 4.0, unit_state=poll, progress=said.append,
                             unit_every=1.0, progress_every=1.0, weights_gb=1.0)
    finally:
        stop.set()
        writer.join()
    assert not check.ok
    assert remote.exec_requests - before == len(polls) >= 3  # one exec per poll, no more
    texts = [s for s in said if "downloading weights" in s]
    assert texts, said
    assert any("MB/s" in s and "ETA" in s and "of ~1.0 GB" in s for s in texts), said


def test_poll_with_no_download_dirs_has_no_size() -> None:
    """model_dir set (nothing downloads): the poll asks for no size at all."""
    script = poll_script(Settings(), ())
    assert "du " not in script
    meter = Meter()
    assert health_text(parse_poll("ActiveState=active\nprovision-size:\n"
                                  "provision-load:\n").progress, meter, 60.0) is None
