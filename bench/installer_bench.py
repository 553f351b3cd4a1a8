#!/usr/bin/env python3
"""pip against uv as the installer of a release venv, on one lab host, same indexes.

    PROVISION_LAB_ID=n .venv/bin/python bench/installer_bench.py --uv PATH/TO/uv [--runs 3]

`--uv` is a uv binary (from PyPI: `pip download uv --no-deps`, its wheel's
`uv-*.data/scripts/uv`); it is copied to the host, which cannot reach PyPI. For each run,
alternately, a fresh `python3 -m venv` is filled the way the tool's release step fills it
(provision/steps/release.py: each GPU package alone from the Paddle index with --no-deps,
then their dependencies from the host's general index with the GPU packages pinned),
once with `python -m pip install` and once with `uv pip install --python`, both without
a cache (a fresh host has none). uv is given the same indexes and pip's index rule
(`--index-strategy unsafe-best-match`: every index is asked, the best version wins)
and the general index pip reads from the host's pip.conf (uv does not read pip.conf).
Then `pip freeze` of both venvs must be identical: the same wheels resolved.
"""

from __future__ import annotations

import argparse
import configparser
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

from provision.commands.targets import resolve_targets
from provision.connection import Remote
from provision.facts import gather_command, parse_facts
from provision.plan import make_plan
from provision.steps.release import DEPENDENCIES, dependency_args, pip_args

WORK = "/opt/installer-bench"  # on the host's disk: /tmp is a small tmpfs there
UV = f"{WORK}/uv"


def uv_args(args: list[str], general_index: str) -> list[str]:
    """pip's install arguments as uv spells them, with pip's index rule and pip.conf's index."""
    out, i = ["--index-strategy", "unsafe-best-match", "--no-cache"], 0
    while i < len(args):
        arg = args[i]
        if arg in ("--disable-pip-version-check", "--no-input"):
            i += 1
            continue
        if arg == "--trusted-host":
            out += ["--allow-insecure-host", args[i + 1]]
            i += 2
            continue
        out.append(arg)
        i += 1
    if "-i" not in args:
        out += ["-i", general_index]
    return out


def install_script(kind: str, venv: str, install, general_index: str) -> str:
    """The release step's three installs into `venv`, with pip or uv; prints nothing."""
    python = f"{venv}/bin/python"
    reqs, pins = f"{venv}/deps.txt", f"{venv}/pins.txt"
    steps = [pip_args(f"paddlepaddle-gpu=={install.paddle_version}", install.paddle_index_url),
             pip_args(f"fastdeploy-gpu=={install.fastdeploy_version}",
                      install.fastdeploy_index_url),
             dependency_args(install, reqs, pins)]

    def run(args: list[str]) -> str:
        if kind == "pip":
            return shlex.join([python, "-m", "pip", *args, "--no-cache-dir", "-q"])
        return shlex.join([UV, "pip", "install", "--python", python, "-q",
                           *uv_args(args[1:], general_index)])

    pinned = (f"paddlepaddle-gpu=={install.paddle_version}\n"
              f"fastdeploy-gpu=={install.fastdeploy_version}\n")
    return " && ".join([
        shlex.join(["rm", "-rf", venv]), shlex.join(["python3", "-m", "venv", venv]),
        run(steps[0]), run(steps[1]),
        shlex.join([python, "-c", DEPENDENCIES]) + f" > {shlex.quote(reqs)}",
        f"printf %s {shlex.quote(pinned)} > {shlex.quote(pins)}",
        run(steps[2]),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uv", required=True, type=Path)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--host", default="gpu1")
    args = parser.parse_args()
    from provision_lab import paths

    extra = (f"releases_dir={WORK}/releases", f"venv_dir={WORK}/venv")
    (spec, settings), = resolve_targets(str(paths.INVENTORY), args.host, None, extra)
    remote = Remote(spec, settings)
    facts = parse_facts(spec.name, remote.run(gather_command(settings), 120).stdout)
    install = make_plan(spec.name, facts, settings).install
    if install is None:
        sys.exit(f"{args.host}: the plan builds no release (pre-flight refused it?)")
    conf = remote.run("cat /etc/pip.conf", 30).stdout
    parsed = configparser.ConfigParser()
    parsed.read_string(conf)
    general = parsed.get("global", "index-url")
    copied = remote.run(f"rm -rf {WORK} && mkdir -p {WORK} && cat > {UV} && chmod 755 {UV} "
                        f"&& {UV} --version", 60, stdin=args.uv.read_bytes())
    if not copied.ok:
        sys.exit(f"uv does not run on {args.host}: {copied.tail()}")
    times: dict[str, list[float]] = {"pip": [], "uv": []}
    for _ in range(args.runs):
        for kind in ("pip", "uv"):
            start = time.monotonic()
            got = remote.run(install_script(kind, f"{WORK}/venv-{kind}", install, general), 1800)
            times[kind].append(time.monotonic() - start)
            if not got.ok:
                sys.exit(f"{kind} install failed: {got.tail(20)}")
    freeze = {kind: remote.run(f"{WORK}/venv-{kind}/bin/python -m pip freeze --all", 60).stdout
              for kind in times}
    remote.run(f"rm -rf {WORK}", 120)
    remote.close()
    same = freeze["pip"] == freeze["uv"]
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {load}; "
          f"{copied.stdout.strip()}; host {args.host}; {args.runs} runs each, no cache")
    print(f"release venv: paddlepaddle-gpu {install.paddle_version} + fastdeploy-gpu "
          f"{install.fastdeploy_version} + {len(freeze['pip'].splitlines())} distributions "
          f"in all; general index {general}")
    for kind, values in times.items():
        print(f"  {kind:4} s min / median / max: {min(values):.2f} / "
              f"{statistics.median(values):.2f} / {max(values):.2f}")
    ratio = statistics.median(times["uv"]) / statistics.median(times["pip"])
    print(f"  uv / pip median: {ratio:.2f}; same distributions and versions: "
          f"{'yes' if same else 'NO'}")
    if not same:
        import difflib

        print("\n".join(difflib.unified_diff(freeze["pip"].splitlines(),
                                             freeze["uv"].splitlines(), "pip", "uv",
                                             lineterm="")))


if __name__ == "__main__":
    main()
