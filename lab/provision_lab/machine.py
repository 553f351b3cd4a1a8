"""One lab host: an overlay over the cached root filesystem, booted by systemd-nspawn in
its own network namespace. Started and stopped by recorded PID, never by name."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from provision_lab import network, paths, rootfs
from provision_lab.system import LabError, run

BOOT_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0
EXEC_MARK = "req exec"  # sshd DEBUG1: "session_input_channel_req: session 0 req exec"
SSHD_LOG = "/var/log/sshd-exec.log"


@dataclass
class LabHost:
    name: str
    number: int
    address: str
    profile: str
    bare: bool = False
    pid: int | None = None
    pip_mirror: bool = True  # /etc/pip.conf points pip at the lab's general index
    seed_weights: bool = True  # SEEDED_MODELS in the download cache; else fetched at first start

    @property
    def dir(self) -> Path:
        return paths.HOSTS_DIR / self.name

    @property
    def root(self) -> Path:
        """The host's file system as seen from this machine (the overlay's merged dir)."""
        return self.dir / "merged"

    def as_dict(self) -> dict:
        return asdict(self)

    # ------------------------------------------------------------------ test helpers

    def ssh(self, command: str, check: bool = False,
            timeout: float = 120) -> subprocess.CompletedProcess:
        """OpenSSH with strict host key checking against the lab's known_hosts."""
        done = subprocess.run(ssh_argv(self.address) + [command], capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if check and done.returncode != 0:
            raise LabError(f"{self.name}: `{command}` failed ({done.returncode}): {done.stderr}")
        return done

    def read_file(self, path: str) -> str:
        """A file on the host, read from this side (no SSH, so no exec request counted)."""
        return (self.root / path.lstrip("/")).read_text()

    def exec_request_count(self) -> int:
        try:
            log = (self.root / SSHD_LOG.lstrip("/")).read_text(errors="replace")
        except FileNotFoundError:
            return 0
        return sum(1 for line in log.splitlines() if EXEC_MARK in line)

    def regenerate_host_key(self) -> None:
        """New host keys, known_hosts left as it was: what a reinstalled or spoofed host
        looks like. sshd re-reads its keys for every connection, so no restart is needed."""
        for key in (self.root / "etc/ssh").glob("ssh_host_*"):
            key.unlink()
        run("ssh-keygen", "-A", "-f", str(self.root))


def ssh_argv(address: str) -> list[str]:
    return ["ssh", "-i", str(paths.KEY_FILE), "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={paths.KNOWN_HOSTS}", "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR",
            f"root@{address}"]


def prepare(host: LabHost, lower: Path, customize) -> None:
    """Overlay mounted, identity written (hostname, keys), `customize(root)` for the rest."""
    shutil_rmtree(host.dir)
    for sub in ("upper", "work", "merged"):
        (host.dir / sub).mkdir(parents=True)
    run("mount", "-t", "overlay", "overlay", "-o",
        f"lowerdir={lower},upperdir={host.dir / 'upper'},workdir={host.dir / 'work'}",
        str(host.root))
    (host.root / "etc/hostname").write_text(host.name + "\n")
    ssh_dir = host.root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    keys = ssh_dir / "authorized_keys"
    keys.write_text(Path(f"{paths.KEY_FILE}.pub").read_text())
    keys.chmod(0o600)
    run("ssh-keygen", "-A", "-f", str(host.root))
    (host.root / "etc/apt/sources.list").write_text(rootfs.APT_SOURCES)
    customize(host.root)


def start(host: LabHost) -> None:
    ns = network.add_host_network(host.name, host.address)
    console = open(host.dir / "console.log", "wb")  # noqa: SIM115 (handed to the child)
    proc = subprocess.Popen(
        ["systemd-nspawn", "-b", "-D", str(host.root), "--register=no", "--keep-unit",
         f"--network-namespace-path=/run/netns/{ns}", "-M", host.name],
        stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
        start_new_session=True)
    console.close()
    host.pid = proc.pid


def wait_ready(host: LabHost, timeout: float = BOOT_TIMEOUT) -> None:
    """Until SSH answers and systemd says the boot finished (running, or degraded when a
    unit irrelevant to the lab failed in the container)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if host.pid is None or not _is_ours(host.pid, host):
            tail = (host.dir / "console.log").read_text(errors="replace")[-1500:]
            raise LabError(f"{host.name}: the container stopped while booting. Console:\n{tail}\n"
                           "Fix: check that systemd-nspawn can boot containers here "
                           "(root, cgroups, /proc/sys writable)")
        done = host.ssh("systemctl is-system-running", timeout=15)
        last = (done.stdout or done.stderr).strip()
        if done.stdout.strip() in ("running", "degraded"):
            return
        time.sleep(0.5)
    raise LabError(f"{host.name}: not ready within {timeout:.0f}s (last answer: {last!r})")


def _is_ours(pid: int, host: LabHost) -> bool:
    """The PID still is this host's systemd-nspawn (PIDs get reused)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmdline) and cmdline[0].endswith(b"systemd-nspawn") and \
        str(host.root).encode() in cmdline


def stop(host: LabHost) -> None:
    if host.pid and _is_ours(host.pid, host):
        os.kill(host.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while _is_ours(host.pid, host) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _is_ours(host.pid, host):
            os.kill(host.pid, signal.SIGKILL)
    kill_rooted_under(host.dir)
    unmount_under(host.dir)
    network.remove_host_network(host.name)
    shutil_rmtree(host.dir)


def kill_nspawn_under(top: Path) -> None:
    """systemd-nspawn processes booting a tree inside `top`: a lab whose state file was
    lost still owns them, recognisably by its own path on their command line."""
    mine = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"systemd-nspawn") and \
                any(arg.startswith(str(top).encode() + b"/") for arg in argv):
            mine.append(int(entry.name))
    for pid in mine:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in mine):
        time.sleep(0.2)
    for pid in mine:
        _signal(pid, signal.SIGKILL)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def kill_rooted_under(top: Path) -> None:
    """Processes whose root is inside `top`: a container whose nspawn died before it."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            root = os.readlink(entry / "root")
        except OSError:
            continue
        if root.startswith(str(top) + "/"):
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except ProcessLookupError:
                pass


def unmount_under(top: Path) -> None:
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    for point in sorted((m for m in mounts if m == str(top) or m.startswith(str(top) + "/")),
                        key=len, reverse=True):
        if run("umount", point, check=False).returncode != 0:
            run("umount", "-l", point, check=False)


def shutil_rmtree(path: Path) -> None:
    """rm -rf, refusing to follow into a still-mounted overlay."""
    if not path.exists():
        return
    mounts = Path("/proc/self/mounts").read_text()
    if f" {path}/" in mounts or f" {path} " in mounts:
        unmount_under(path)
    shutil.rmtree(path, ignore_errors=True)


def load_hosts(data: dict) -> dict[str, LabHost]:
    return {name: LabHost(**entry) for name, entry in data.get("hosts", {}).items()}


def dump_state(hosts: dict[str, LabHost], index_pid: int | None) -> None:
    paths.STATE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = paths.STATE_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps({"hosts": {n: h.as_dict() for n, h in hosts.items()},
                               "index_pid": index_pid}, indent=2))
    tmp.replace(paths.STATE_FILE)
