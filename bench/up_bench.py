#!/usr/bin/env python3
"""Times `provision up` on 1 and on 4 lab hosts, fresh and converged, and prints the ratios.

Run as root on a machine that can run the lab (`make setup` first):
    .venv/bin/python bench/up_bench.py [--runs 3]
The peer is the same 4-host run with --forks 1 (one host after another, as a shell loop
over hosts would do): the ratio shows what the parallel runner buys. Wall-clock seconds of
the whole `provision up` process, median of --runs for converged runs (fresh runs need
fresh hosts, so they are timed once per size).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from provision_lab.lab import Lab  # noqa: E402

PROFILES = ["a100", "l40s", "h100", "a10"]


def up(inventory: Path, hosts: list, home: str, *extra: str) -> float:
    limit = ":".join(h.name for h in hosts)
    env = dict(os.environ, HOME=home, PYTHONPATH=str(ROOT))
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "provision.cli", "up", "-i", str(inventory),
                           "--limit", limit, *extra], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    seconds = time.monotonic() - start
    if done.returncode != 0:
        sys.exit(f"up failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    lab, home = Lab(), tempfile.mkdtemp(prefix="bench-home-")
    lab.down()
    try:
        one = lab.add_hosts(PROFILES[:1])
        four = lab.add_hosts(PROFILES)
        serial = lab.add_hosts(PROFILES)
        inventory = lab.inventory()
        rows = {
            "fresh, 1 host": up(inventory, one, home),
            "fresh, 4 hosts": up(inventory, four, home),
            "fresh, 4 hosts, --forks 1 (peer)": up(inventory, serial, home, "--forks", "1"),
        }
        for label, hosts, extra in (("converged, 1 host", one, ()),
                                    ("converged, 4 hosts", four, ()),
                                    ("converged, 4 hosts, --forks 1 (peer)", serial,
                                     ("--forks", "1"))):
            rows[label] = statistics.median(up(inventory, hosts, home, *extra)
                                            for _ in range(runs))
    finally:
        lab.down()
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}; lab stand-in server load time 2 s")
    print(f"{'run':40} {'seconds':>8}")
    for label, seconds in rows.items():
        print(f"{label:40} {seconds:8.2f}")
    for kind in ("fresh", "converged"):
        base = rows[f"{kind}, 1 host"]
        print(f"{kind}: 4 hosts / 1 host = {rows[f'{kind}, 4 hosts'] / base:.2f}; "
              f"--forks 1 / --forks 10 on 4 hosts = "
              f"{rows[f'{kind}, 4 hosts, --forks 1 (peer)'] / rows[f'{kind}, 4 hosts']:.2f}")


if __name__ == "__main__":
    main()
