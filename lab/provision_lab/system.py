"""Running this machine's commands for the lab, and the checks before it starts anything."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Debian packages the lab needs on this machine, by the command that shows they are there.
NEEDED = {
    "debootstrap": "debootstrap",
    "systemd-nspawn": "systemd-container",
    "ip": "iproute2",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "dpkg-scanpackages": "dpkg-dev",
    "openssl": "openssl",  # the lab CA and its pypi.org certificate (tls.py)
}


class LabError(Exception):
    """The lab cannot do what was asked; the text says why and the fix."""


def run(*argv: str, check: bool = True, timeout: float = 120,
        cwd: str | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, cwd=cwd)
    if check and done.returncode != 0:
        raise LabError(f"`{' '.join(argv)}` failed (exit {done.returncode}): "
                       f"{(done.stderr or done.stdout).strip()[-800:]}")
    return done


@contextmanager
def build_lock(path: Path) -> Iterator[None]:
    """Held while one lab builds something every lab shares: a second lab (a parallel test
    worker) waits, then finds it built, instead of building it again beside the first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, mounts, systemd-nspawn): "
                       "run it with sudo, or as root")


def ensure_packages() -> None:
    """Install what is missing, and say so: a fresh machine must work with no set-up."""
    missing = sorted({pkg for tool, pkg in NEEDED.items() if shutil.which(tool) is None})
    if not missing:
        return
    print(f"lab: installing {' '.join(missing)} (apt-get)", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv in (["apt-get", "update", "-q"],
                 ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]):
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900)
        if done.returncode != 0:
            raise LabError(f"could not install {' '.join(missing)}: {done.stderr.strip()[-500:]}"
                           " Fix: install them by hand, or check apt's sources")
