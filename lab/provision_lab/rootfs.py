"""The cached Debian 12 root filesystems every lab host boots from, and the apt repository
that lets a bare host install python3-venv without the internet.

Ubuntu's archive is not reachable here, so the stand-in for an Ubuntu 22.04 cloud image is
Debian 12: same apt, systemd and OpenSSH family. Two variants share one build: `bare` (as a
fresh cloud image ships: no python3-venv, no pip) and `full`. They are cached where every
lab on the machine shares them (paths.SHARED_CACHE), keyed by everything that goes into
them, so only a change to the package list (or to what the lab bakes in) pays the ~60 s
debootstrap again.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from provision_lab import paths
from provision_lab.system import LabError, build_lock, run

SUITE = "bookworm"
BASE_PACKAGES = ("systemd", "systemd-sysv", "openssh-server", "python3", "dbus", "iproute2",
                 "sudo", "ca-certificates", "curl")
VENV_PACKAGES = ("python3-venv", "python3-pip")
DEFAULT_MIRROR = "http://deb.debian.org/debian"

# sshd logs every exec request ("session_input_channel_req: session 0 req exec" at DEBUG1)
# into a file the lab reads from this side, so tests count a run's round trips exactly.
SSHD_CONF = """\
LogLevel DEBUG1
PermitRootLogin prohibit-password
UseDNS no
MaxStartups 100:30:200
"""
SSH_SERVICE_DROPIN = """\
[Service]
ExecStart=
ExecStart=/usr/sbin/sshd -D $SSHD_OPTS -E /var/log/sshd-exec.log
"""
# Written into each host at creation, not baked: the address is the lab's own (its /24),
# and the baked trees are shared by every lab on the machine.
APT_SOURCES = f"deb [trusted=yes] {paths.INDEX_URL}/apt ./\n"


@dataclass(frozen=True)
class Rootfs:
    bare: Path
    full: Path
    apt: Path  # .debs + Packages + Release, copied under the index root at `lab up`

    def variant(self, bare: bool) -> Path:
        return self.bare if bare else self.full


def mirror() -> str:
    """The Debian mirror this machine's own apt uses (never hard-code: it differs per site)."""
    sources = Path("/etc/apt/sources.list.d")
    texts = [p.read_text() for p in sorted(sources.glob("*.sources"))] if sources.is_dir() else []
    for text in texts:
        for stanza in text.split("\n\n"):
            ours = re.search(rf"^Suites:.*\b{SUITE}\b", stanza, re.M)
            if ours and "debian-security" not in stanza:
                found = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
                if found:
                    return found.group(1)
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        found = re.search(rf"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+{SUITE}\s", legacy.read_text(), re.M)
        if found:
            return found.group(1)
    return DEFAULT_MIRROR


def cache_key() -> str:
    recipe = json.dumps([SUITE, BASE_PACKAGES, VENV_PACKAGES, SSHD_CONF, SSH_SERVICE_DROPIN, 3])
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def ensure_rootfs() -> Rootfs:
    """The cached variants, built once per recipe; a half-built cache is never used."""
    base = paths.SHARED_CACHE / f"rootfs-{cache_key()}"
    result = Rootfs(base / "bare", base / "full", base / "apt")
    if (base / "ready").exists():
        return result
    with build_lock(paths.SHARED_CACHE / "rootfs.lock"):
        if not (base / "ready").exists():  # another lab may have built it while we waited
            _build(base)
    return result


def _build(base: Path) -> None:
    tmp = base.with_name(base.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    print(f"lab: building the Debian 12 root filesystem in {base} (once, about a minute)",
          flush=True)
    _debootstrap(tmp / "bare")
    _collect_venv_debs(tmp / "bare", tmp / "apt")
    run("cp", "-a", str(tmp / "bare"), str(tmp / "full"), timeout=300)
    _install_debs(tmp / "full", tmp / "apt")
    for variant in ("bare", "full"):
        _bake(tmp / variant)
    mounted = Path("/proc/mounts").read_text()
    for old in paths.SHARED_CACHE.glob("rootfs-*"):
        if old != tmp and old.is_dir() and str(old) not in mounted:  # not under a live host
            shutil.rmtree(old, ignore_errors=True)
    tmp.rename(base)
    (base / "ready").write_text(cache_key())


def _debootstrap(target: Path) -> None:
    run("debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", SUITE,
        str(target), mirror(), timeout=1200)


def _collect_venv_debs(root: Path, apt_dir: Path) -> None:
    """The exact .debs a bare host needs for python3-venv and pip, resolved against it."""
    archives = root / "var/cache/apt/archives"
    for deb in archives.glob("*.deb"):
        deb.unlink()
    run("chroot", str(root), "apt-get", "install", "-y", "-q", "--download-only",
        "--no-install-recommends", *VENV_PACKAGES, timeout=600)
    apt_dir.mkdir(parents=True, exist_ok=True)
    for deb in archives.glob("*.deb"):
        shutil.move(str(deb), apt_dir / deb.name)
    if not any(apt_dir.glob("*.deb")):
        raise LabError(f"no .deb for {' '.join(VENV_PACKAGES)} was downloaded into {apt_dir}")
    _write_repo_index(apt_dir)


def _write_repo_index(apt_dir: Path) -> None:
    """A flat apt repository: Packages(.gz) and a Release with their hashes."""
    packages = run("dpkg-scanpackages", "--multiversion", ".", "/dev/null",
                   timeout=120, cwd=str(apt_dir))
    (apt_dir / "Packages").write_text(packages.stdout)
    (apt_dir / "Packages.gz").write_bytes(gzip.compress(packages.stdout.encode(), mtime=0))
    lines = ["Origin: provision-lab", "Label: provision-lab", "Suite: ./", "SHA256:"]
    for name in ("Packages", "Packages.gz"):
        data = (apt_dir / name).read_bytes()
        lines.append(f" {hashlib.sha256(data).hexdigest()} {len(data)} {name}")
    (apt_dir / "Release").write_text("\n".join(lines) + "\n")


def _install_debs(root: Path, apt_dir: Path) -> None:
    staging = root / "tmp/provision-debs"
    staging.mkdir(parents=True, exist_ok=True)
    for deb in apt_dir.glob("*.deb"):
        shutil.copy2(deb, staging / deb.name)
    debs = [f"/tmp/provision-debs/{d.name}" for d in staging.glob("*.deb")]
    run("chroot", str(root), "dpkg", "-i", *debs, timeout=600)
    shutil.rmtree(staging)


def _bake(root: Path) -> None:
    """What makes the tree a lab host: lab-only apt source, logging sshd, no shared secrets."""
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()  # every host gets its own keys at creation
    (root / "etc/machine-id").write_text("")  # each boot gets its own id
    (root / "etc/hosts").unlink(missing_ok=True)  # a cloud edge case the tool must handle
    (root / "etc/hostname").unlink(missing_ok=True)
    for archive in (root / "var/cache/apt/archives").glob("*.deb"):
        archive.unlink()
    (root / "etc/apt/sources.list").write_text("")  # the lab's own: machine.prepare
    for extra in (root / "etc/apt/sources.list.d").glob("*"):
        extra.unlink()
    shutil.rmtree(root / "var/lib/apt/lists", ignore_errors=True)
    (root / "var/lib/apt/lists/partial").mkdir(parents=True)
    (root / "etc/ssh/sshd_config.d/provision-lab.conf").write_text(SSHD_CONF)
    dropin = root / "etc/systemd/system/ssh.service.d"
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "provision-lab.conf").write_text(SSH_SERVICE_DROPIN)
