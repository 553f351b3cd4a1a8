#!/usr/bin/env python3
"""Times a converged host: the deployment alone vs the deployment plus ten user tasks.

Run as root on a machine that can run the lab (`make setup` first):
    .venv/bin/python bench/play_bench.py [--runs 5]
One lab host. A = `provision play playbooks/fastdeploy.yml`; B = the same built-in roles
in one play whose pre_tasks are the ten tasks of tests/fixtures/playbooks/site/site.yml.
Both converged, run alternately; wall clock of the whole process (median of --runs) and
the SSH exec requests of each run (the host's sshd log). The tasks' state rides in the
facts exec, so B should cost the same execs and about the same time as A.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from provision_lab.lab import Lab  # noqa: E402

SITE = ROOT / "tests" / "fixtures" / "playbooks" / "site"
DEPLOY = yaml.safe_load((ROOT / "playbooks" / "fastdeploy.yml").read_text())[0]


def combined(where: Path) -> Path:
    """site.yml's ten tasks as pre_tasks of the deployment's play (files/ and templates/ too)."""
    site = yaml.safe_load((SITE / "site.yml").read_text())[0]
    for sub in ("files", "templates"):
        shutil.copytree(SITE / sub, where / sub)
    play = {"name": "site and deployment", "hosts": "all", "vars": site["vars"],
            "pre_tasks": site["tasks"], "handlers": site["handlers"], "roles": DEPLOY["roles"]}
    path = where / "site-and-deployment.yml"
    path.write_text(yaml.safe_dump([play], sort_keys=False))
    return path


def play(playbook: Path, inventory: Path, host, home: str) -> tuple[float, int]:
    env = dict(os.environ, HOME=home, PYTHONPATH=str(ROOT))
    before, start = host.exec_request_count(), time.monotonic()
    done = subprocess.run([sys.executable, "-m", "provision.cli", "play", str(playbook), "-i",
                           str(inventory), "--limit", host.name], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    seconds = time.monotonic() - start
    if done.returncode != 0:
        sys.exit(f"play failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return seconds, host.exec_request_count() - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    lab, home, tmp = Lab(), tempfile.mkdtemp(prefix="bench-home-"), Path(tempfile.mkdtemp())
    lab.down()
    try:
        (host,) = lab.add_hosts(["a100"])
        inventory = lab.inventory()
        alone, with_tasks = ROOT / "playbooks" / "fastdeploy.yml", combined(tmp)
        play(with_tasks, inventory, host, home)  # converge both once
        times: dict[str, list[tuple[float, int]]] = {"A": [], "B": []}
        for _ in range(runs):
            times["A"].append(play(alone, inventory, host, home))
            times["B"].append(play(with_tasks, inventory, host, home))
        for key, label in (("A", "deployment alone"), ("B", "deployment + 10 user tasks")):
            secs = statistics.median(s for s, _ in times[key])
            execs = sorted({e for _, e in times[key]})
            print(f"{key} {label:28s} median {secs:.2f}s  exec requests per run {execs}")
        ratio = statistics.median(s for s, _ in times["B"]) / statistics.median(
            s for s, _ in times["A"])
        print(f"B/A wall time: {ratio:.2f}")
    finally:
        lab.down()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
