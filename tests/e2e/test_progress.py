"""Issue 12 goal 5 on a lab host: `provision up` shows progress while it waits.

The CLI runs as a user runs it, its stdout a pipe (as in CI), read line by line as it
arrives with the time each line came. The release build (real pip against the lab's
index) must show a progress line before the build's own result line, and the health
wait must show the stand-in server's `Loading Weights: N%` lines from its workerlog.0
(the lab's load time is raised so the wait spans several polls). Both are seen while
the run is still going, not reconstructed afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOAD_SECONDS = 48  # four "Loading Weights" steps of 12 s: the 15 s unit poll sees some


@pytest.fixture(scope="module")
def host(lab) -> Iterator[object]:
    booted = lab.add_host("a100")
    etc = booted.root / "etc/provision-lab"
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "load-seconds").write_text(f"{LOAD_SECONDS}\n")
    yield booted
    lab.remove_host(booted.name)


def up_live(home: Path, inventory: str, limit: str, timeout: float = 900) -> list[tuple]:
    """(seconds since start, line) for every stdout line of `up`, as each arrived."""
    env = dict(os.environ, HOME=str(home), PYTHONPATH=str(ROOT))
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "provision.cli", "up", "-i", inventory,
                             "--limit", limit], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append((time.monotonic() - start, line.rstrip("\n")))
        if time.monotonic() - start > timeout:
            proc.kill()
            break
    assert proc.wait(timeout=60) == 0, "\n".join(text for _, text in lines)
    return lines


def test_up_shows_build_and_loading_progress(lab, host, tmp_path: Path) -> None:
    lines = up_live(tmp_path, str(lab.inventory()), host.name)
    text = "\n".join(f"{t:6.1f} {line}" for t, line in lines)
    print(text)  # the run as it was seen (pytest -s shows it)
    build = [(t, line) for t, line in lines if f"{host.name} | release | building:" in line]
    built = [t for t, line in lines if line.startswith(f"{host.name} | release | changed")]
    assert build and built, text
    assert build[0][0] < built[0], text  # shown while pip ran, not after
    assert "venv" in build[0][1] and "pip cache" in build[0][1], text
    loading = [(t, line) for t, line in lines
               if f"{host.name} | health | waiting" in line and "loading weights" in line]
    healthy = [t for t, line in lines if line.startswith(f"{host.name} | verify health | ok")]
    assert loading and healthy, text
    assert loading[0][0] < healthy[0], text
    # In a pipe progress is plain lines, at most one per host about every 10 s.
    waits = [t for t, line in lines if " | health | waiting" in line]
    assert all(b - a >= 9 for a, b in zip(waits, waits[1:], strict=False)), text
