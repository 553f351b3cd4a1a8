"""Progress: parsing what hosts report (hostile input included), rate and ETA, and how the
Reporter shows it on a real pseudo-terminal versus a pipe."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import socket
from dataclasses import replace

import pytest

from provision.apply import download_dirs
from provision.model import Settings
from provision.plan import make_plan
from provision.progress import (
    PREFIX,
    BuildProgress,
    HostProgress,
    Meter,
    clean,
    health_text,
    human_bytes,
    parse_host_progress,
)
from provision.report import Reporter
from provision.rollout import RolloutRow, fleet_line
from provision.verify import Endpoint, UnitState, parse_poll, wait_healthy
from tests.unit.lab_facts import facts_from_profile

UNIT = "ActiveState=activating\nSubState=start\nNRestarts=0\nResult=success\n"

# ------------------------------------------------------------------ parsing


def test_poll_parses_sizes_and_the_newest_loading_line() -> None:
    out = (UNIT + "provision-size:\n1000000\t/cache/PaddlePaddle/m\n24\t/cache/baidu/m\n"
           "provision-load:\nLoading Weights: 75%|#######   | 75/100 [00:10<00:03]\n")
    state = parse_poll(out)
    assert (state.active, state.sub, state.restarts) == ("activating", "start", 0)
    assert state.progress == HostProgress(1000024, ("weights", 75))


@pytest.mark.parametrize("section, expect", [
    ("provision-size:\n-5\t/x\n", None),  # a sign is not a size
    ("provision-size:\n1e9\t/x\n", None),
    ("provision-size:\n" + "9" * 19 + "\t/x\n", None),  # more digits than a disk holds
    ("provision-size:\n12 /x\n", None),  # not du's tab
    ("provision-size:\n\x1b[2J\n", None),
    ("provision-size:\n7\t/x\n7\t/y\n", 14),
])
def test_hostile_sizes_are_not_numbers(section: str, expect: int | None) -> None:
    assert parse_poll(UNIT + section).progress.download_bytes == expect


@pytest.mark.parametrize("log, expect", [
    ("Loading Weights: 250%\n", None),  # no such percentage
    ("Loading Weights: 1000%\n", None),
    ("Loading Weights: -5%\n", None),
    ("Loading weights: 50%\n", None),  # not the server's spelling
    ("Loading Layers: 100%|##| 100/100\n", ("layers", 100)),
    ("Loading Weights: 25%\nLoading Weights: 50%\n", ("weights", 50)),  # the newest
])
def test_hostile_loading_lines(log: str, expect: tuple | None) -> None:
    assert parse_poll(UNIT + "provision-size:\nprovision-load:\n" + log).progress.loading == expect


def test_a_log_line_cannot_pass_for_the_units_state() -> None:
    """A log that says ActiveState=active must not hide a failed unit."""
    out = ("ActiveState=failed\nSubState=failed\nNRestarts=0\nprovision-size:\n"
           "provision-load:\nActiveState=active\nSubState=running\nNRestarts=0\n")
    state = parse_poll(out)
    assert state.broken and state.active == "failed"


def test_sizes_before_the_marker_are_ignored() -> None:
    """Only the size section counts: a number in the unit section is not a download."""
    assert parse_host_progress("123\t/x\nprovision-load:\n").download_bytes is None


def test_clean_strips_escapes_credentials_and_length() -> None:
    got = clean("Downloading https://user:s3cret@idx.example/simple/x.whl\x1b]0;pwned\x07 "
                + "a" * 300)
    assert "s3cret" not in got and "user" not in got
    assert "\x1b" not in got and "\x07" not in got
    assert len(got) == 120 and got.endswith("...")
    assert all(" " <= c <= "~" for c in got)


def test_build_progress_lines() -> None:
    build = BuildProgress()
    first = build.text(f"{PREFIX}venv_kb=1000 cache_kb=0 pip=Collecting paddle\r\n", 0.0)
    assert first == "building: venv 1 MB, pip cache 0 B; Collecting paddle"
    second = build.text(f"{PREFIX}venv_kb=1000 cache_kb=48828 pip=  Downloading x (1 GB)", 10.0)
    assert second == "building: venv 1 MB, pip cache 50 MB, 5 MB/s; Downloading x (1 GB)"
    for bad in (f"{PREFIX}venv_kb=-1 cache_kb=0", f"{PREFIX}venv_kb=1 cache_kb=2x",
                f"{PREFIX}rm -rf /", f"{PREFIX}venv_kb={'1' * 16} cache_kb=0"):
        assert build.text(bad, 20.0) is None


# ------------------------------------------------------------------ rate and ETA


def test_meter_rate_and_eta() -> None:
    meter = Meter()
    meter.feed(0.0, 0)
    assert meter.rate is None and meter.eta(60) is None
    meter.feed(10.0, 480_000_000)
    assert meter.rate == pytest.approx(48e6)
    assert meter.eta(60e9) == pytest.approx((60e9 - 480e6) / 48e6)
    assert health_text(HostProgress(480_000_000), meter, 60.0) == (
        "downloading weights 480 MB of ~60.0 GB, 48 MB/s, ETA 21 min")


def test_meter_shrinking_or_stalled() -> None:
    meter = Meter()
    meter.feed(0.0, 5_000_000_000)
    meter.feed(15.0, 1_000_000_000)  # cleaned and restarted: no negative rate
    assert meter.rate is None and meter.eta(60e9) is None
    meter.feed(30.0, 1_000_000_000)  # stalled: 0 B/s, no ETA (not "infinite")
    assert meter.rate == 0 and meter.eta(60e9) is None
    assert health_text(HostProgress(1_000_000_000), meter, None) == (
        "downloading weights 1.0 GB, 0 B/s")
    meter.feed(45.0, 61_000_000_000)  # more than the catalogue says: no ETA
    assert meter.eta(60e9) is None


def test_loading_beats_downloading_and_nothing_is_none() -> None:
    meter = Meter()
    meter.feed(0.0, 10)
    assert health_text(HostProgress(10, ("weights", 75)), meter, 60.0) == "loading weights 75%"
    assert health_text(HostProgress(None, None), meter, 60.0) is None
    assert health_text(None, meter, 60.0) is None


def test_human_bytes() -> None:
    assert [human_bytes(n) for n in (0, 999, 1500, 2.5e6, 12.44e9, 3e12)] == [
        "0 B", "999 B", "2 kB", "2 MB", "12.4 GB", "3.0 TB"]


def _refused_endpoint() -> Endpoint:
    with socket.socket() as s:  # a port that was just free: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return Endpoint(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}", "m")


def test_health_wait_says_bytes_rate_and_eta() -> None:
    """A refused port, a fake clock, a growing download: the text says how far it is."""
    now = [0.0]
    sizes = iter([1_000_000_000 * i for i in range(1, 100)])
    said: list[str] = []

    def poll() -> UnitState:
        return UnitState("activating", "start", 0, progress=HostProgress(next(sizes)))

    def sleep(seconds: float) -> None:
        now[0] += max(seconds, 1.0)

    check = wait_healthy(_refused_endpoint(), 50, unit_state=poll, progress=said.append,
                         weights_gb=60.0, clock=lambda: now[0], sleep=sleep)
    assert not check.ok
    assert any(re.fullmatch(r"waiting \d+s/50s: downloading weights \d+\.\d GB of ~60\.0 GB, "
                            r"\d+ MB/s, ETA \d+ min; unit activating/start", s) for s in said), said
    assert said[0].startswith("waiting 1") and "connection refused" in said[0]  # before a poll


# ------------------------------------------------------------------ the reporter


def _screen(data: str) -> list[str]:
    """What a terminal shows for the subset the Reporter writes: text, \\n, ESC[nF, ESC[J."""
    rows, row = [""], 0
    for token in re.findall(r"\x1b\[(\d*)F|\x1b\[J|(\n)|([^\x1b\n]+)", data):
        up, newline, text = token
        if up:
            row = max(row - int(up), 0)
        elif newline:
            row += 1
            if row == len(rows):
                rows.append("")
        elif text:
            rows[row] = text
        else:  # ESC[J: clear from here down
            del rows[row + 1:]
            rows[row] = ""
    return [r for r in rows if r]


def _drain(master: int) -> str:
    """Everything written to the pty so far (a read may return it in pieces)."""
    data = b""
    while select.select([master], [], [], 0.5)[0]:
        chunk = os.read(master, 65536)
        if not chunk:
            break
        data += chunk
    return data.decode()


def test_reporter_on_a_terminal_updates_one_line_per_host() -> None:
    master, slave = pty.openpty()
    stream = os.fdopen(slave, "w")
    reporter = Reporter(stream, secrets=["hunter2"])
    assert reporter.live
    reporter.progress("gpu1", "health", "waiting 10s: loading weights 25%")
    reporter.progress("gpu2", "release", "building: venv 1 MB; key hunter2")
    reporter.line("gpu3", "facts", "ok", 0.5)
    reporter.progress("gpu1", "health", "waiting 20s: loading weights 50%")
    reporter.line("gpu2", "release", "changed", 61.0)
    stream.flush()
    data = _drain(master).replace("\r\n", "\n")  # the tty's ONLCR
    stream.close()
    os.close(master)
    assert "hunter2" not in data
    assert _screen(data) == [
        "gpu3 | facts | ok | 0.5s",
        "gpu2 | release | changed | 61.0s",
        "gpu1 | health | waiting 20s: loading weights 50%",
    ]


def test_reporter_cuts_progress_to_the_terminal_width() -> None:
    master, slave = pty.openpty()
    import fcntl
    import struct
    import termios

    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 40, 0, 0))
    stream = os.fdopen(slave, "w")
    Reporter(stream).progress("gpu1", "release", "x" * 200)
    stream.flush()
    data = _drain(master)
    stream.close()
    os.close(master)
    assert max(len(line) for line in _screen(data.replace("\r\n", "\n"))) == 39


def test_reporter_in_a_pipe_writes_plain_lines_per_host_at_most_every_10s() -> None:
    read, write = os.pipe()
    stream = os.fdopen(write, "w")
    now = [0.0]
    reporter = Reporter(stream, clock=lambda: now[0], secrets=["hunter2"])
    assert not reporter.live
    for second in (0, 3, 6, 9.8, 12, 19, 21):
        now[0] = second
        reporter.progress("gpu1", "health", f"waiting {second}s")
        reporter.progress("gpu2", "health", f"waiting {second}s hunter2")
    reporter.line("gpu1", "verify health", "ok", 21.5)
    now[0] = 22
    reporter.progress("gpu1", "release", "building")  # a new wait shows at once
    stream.close()
    with os.fdopen(read) as got:
        lines = got.read().splitlines()
    assert "\x1b" not in "".join(lines)
    assert [ln for ln in lines if ln.startswith("gpu1")] == [
        "gpu1 | health | waiting 0s", "gpu1 | health | waiting 9.8s",
        "gpu1 | health | waiting 21s", "gpu1 | verify health | ok | 21.5s",
        "gpu1 | release | building"]
    assert [ln for ln in lines if ln.startswith("gpu2")] == [
        "gpu2 | health | waiting 0s ********", "gpu2 | health | waiting 9.8s ********",
        "gpu2 | health | waiting 21s ********"]


def test_reporter_on_stderr_is_plain_even_on_a_terminal(monkeypatch) -> None:
    """--json sends the live lines to stderr: they stay plain lines, for logs."""
    master, slave = pty.openpty()
    stream = os.fdopen(slave, "w")
    monkeypatch.setattr("sys.stderr", stream)
    assert not Reporter(stream).live
    assert Reporter(stream, live=True).live
    assert not Reporter(io.StringIO()).live
    stream.close()
    os.close(master)


def test_fleet_line() -> None:
    rows = [RolloutRow("a", "r1", "r2", "ok", 3.0), RolloutRow("b", "r1", "r2", "unchanged", None),
            RolloutRow("c", "r1", "r2", "unreachable", None),
            RolloutRow("d", None, None, "skipped", None, "not started")]
    assert fleet_line(rows, 5, 2) == (
        "fleet | batch 2: 3/5 hosts done, 2 in service, 1 failed, 1 skipped, 1 to go")


def test_download_dirs_follow_the_release_cache_layout() -> None:
    """Where the health poll measures the download: FD_MODEL_CACHE itself on 2.0 (flat,
    C8), the model's org directories after, nothing with model_dir or weights present."""
    facts = facts_from_profile("a100")
    base = Settings(model="baidu/ERNIE-4.5-21B-A3B-Paddle", model_cache_dir="/c")
    assert download_dirs(replace(base, fastdeploy_version="2.0.3"), facts) == (
        "/c/PaddlePaddle/ERNIE-4.5-21B-A3B-Paddle",)
    assert download_dirs(replace(base, fastdeploy_version="2.5"), facts) == (
        "/c/PaddlePaddle/ERNIE-4.5-21B-A3B-Paddle", "/c/baidu/ERNIE-4.5-21B-A3B-Paddle")
    assert download_dirs(replace(base, model_dir="/w"), facts) == ()
    assert download_dirs(base, replace(facts, model_present=True)) == ()
    assert download_dirs(base, None) == ()


def test_the_release_build_runs_the_progress_loop() -> None:
    """The plan's build step starts the loop (that apply feeds to the reporter) before pip,
    with the trap that ends it; no other step prints progress lines."""
    plan = make_plan("gpu1", facts_from_profile("a100"), Settings(fastdeploy_version="2.4"))
    build = next(s for s in plan.steps if s.name == "release")
    script = build.script
    assert script.index("provision_progress ") < script.index("-m pip install")
    assert "trap 'kill \"$progress_pid\"" in script
    assert [s.name for s in plan.steps if PREFIX.strip() in s.script] == ["release"]
