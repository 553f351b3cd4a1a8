"""Real wheels from PyPI for the lab's general index ("site mirror"): Gradio and its deps.

Lab hosts have no internet, but the chat page must install the real Gradio. So the lab
downloads the wheels it needs on this machine (`pip download`, for the hosts' Python 3.11
on x86_64 Linux) into SHARED_CACHE/general-wheels, which the general index serves beside its
stand-ins. The list is the lab's own (a site mirror carries what its users need), never
read from the tool's data.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from provision_lab import paths
from provision_lab.system import LabError, build_lock

# Source: https://pypi.org/project/gradio/5.50.0/ (the page's pinned release).
REQUIREMENTS = ("gradio==5.50.0",)
WHEELS = paths.GENERAL_WHEELS
PYPI = "https://pypi.org/simple"
HOST_PYTHON = "3.11"  # Debian 12, the lab's root filesystem
HOST_PLATFORMS = ("manylinux2014_x86_64", *(f"manylinux_2_{m}_x86_64"
                                              for m in (17, 24, 27, 28, 31, 34, 35, 36)))
_STAMP = ".provision-lab-requirements"


def download_argv(dest: Path, requirements: tuple[str, ...]) -> list[str]:
    """pip download for the hosts' interpreter and platform, binary wheels only."""
    tag = HOST_PYTHON.replace(".", "")
    argv = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "-q",
            "--only-binary=:all:", "--python-version", HOST_PYTHON, "--implementation", "cp",
            "--abi", f"cp{tag}", "--index-url", PYPI, "--dest", str(dest)]
    for platform in HOST_PLATFORMS:
        argv += ["--platform", platform]
    return [*argv, *requirements]


def mirror(dest: Path = WHEELS, requirements: tuple[str, ...] = REQUIREMENTS,
           run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> Path:
    """Download the wheels once; a stamp naming the requirements makes reruns free."""
    stamp = dest / _STAMP
    wanted = "\n".join(requirements) + "\n"
    if stamp.is_file() and stamp.read_text() == wanted:
        return dest
    with build_lock(dest.with_name(dest.name + ".lock")):
        if not (stamp.is_file() and stamp.read_text() == wanted):
            _download(dest, requirements, wanted, run)
    return dest


def _download(dest: Path, requirements: tuple[str, ...], wanted: str,
              run: Callable[..., subprocess.CompletedProcess]) -> None:
    stamp = dest / _STAMP
    dest.mkdir(parents=True, exist_ok=True)
    done = run(download_argv(dest, requirements), capture_output=True, text=True)
    if done.returncode != 0:
        raise LabError(f"pip download {' '.join(requirements)} failed (exit "
                       f"{done.returncode}); this machine needs PyPI for it:\n"
                       f"{done.stderr[-2000:]}")
    stamp.write_text(wanted)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m provision_lab.general_wheels",
                                     description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("mirror", help=f"download {' '.join(REQUIREMENTS)} and deps into {WHEELS}")
    parser.parse_args(argv)
    try:
        wheels = mirror()
    except LabError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    print(wheels)
    return 0


if __name__ == "__main__":
    sys.exit(main())

