"""The lab: local test hosts that behave like bare GPU cloud hosts.

Used three ways: `provision lab ...` (the README's demo, people's own CI), and the pytest
session fixture in tests/conftest.py that every end-to-end test gets its hosts from.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

import provision_lab
from provision_lab import (
    accounting,
    far_upstream,
    general_wheels,
    machine,
    network,
    paths,
    rootfs,
    tls,
)
from provision_lab.answers import lab_answers
from provision_lab.machine import LabHost
from provision_lab.profiles import get_profile, install_profile
from provision_lab.system import LabError, ensure_packages, require_root, run

# Lab hosts carry a small stand-in for the default model's weights in FastDeploy's download
# cache (the real ones are ~60 GB): the server finds them as it would after a first
# download, and pre-flight's disk check (tested without the lab) does not need 60 GB here.
# Hosts booted with seed_weights=False have none: their server downloads the weights from
# the lab's model hub at first start (hub.py, the stand-in's _lab_download.py).
# The models the lab's tests deploy (the default, and the thinking models of C6/C7), so a
# host's free disk on this machine does not decide pre-flight (VL-28B needs about 60 GB).
SEEDED_MODELS = tuple(f"var/lib/fastdeploy/models/PaddlePaddle/ERNIE-4.5-{name}" for name in (
    "VL-28B-A3B-Paddle", "VL-28B-A3B-Thinking", "21B-A3B-Thinking"))


# A site mirror, as closed GPU clusters configure pip: the lab's general index.
PIP_CONF = (f"[global]\nindex-url = {paths.GENERAL_INDEX_URL}\n"
            f"trusted-host = {paths.GATEWAY}\n")

# A host without a site mirror: the public index's names resolve to the lab's HTTPS stand-in
# (Debian's own /etc/hosts head, then theirs), and the lab CA is in the system trust store,
# which Debian's pip (also the one ensurepip puts into a venv) reads through its patched
# certifi: /etc/ssl/certs/ca-certificates.crt.
PUBLIC_INDEX_HOSTS = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                      f"{paths.GATEWAY}\t{' '.join(tls.PYPI_NAMES)}\n")

# Every booted systemd holds several inotify instances; the kernel's default of 128 per user
# stops containers from booting after about a dozen ("Too many open files" inside).
INOTIFY_INSTANCES = 1024
INOTIFY_SYSCTL = Path("/proc/sys/fs/inotify/max_user_instances")


def raise_inotify_limit() -> None:
    """Raise the machine's inotify instance limit when it is too low for a lab fleet; says so,
    since it is a machine-wide setting (it resets at reboot)."""
    try:
        current = int(INOTIFY_SYSCTL.read_text())
    except (OSError, ValueError):
        return
    if current < INOTIFY_INSTANCES:
        print(f"lab: raising fs.inotify.max_user_instances from {current} to "
              f"{INOTIFY_INSTANCES} so that many hosts can boot", file=sys.stderr)
        INOTIFY_SYSCTL.write_text(str(INOTIFY_INSTANCES))


_LOCK: dict[str, int] = {}  # the lab lock's file descriptor, held for this process's life


def hold_lab_lock() -> None:
    """One process at a time changes the lab: a second `lab up` or test run would stop the
    hosts the first is using. The lock is released when the holding process exits."""
    if "fd" in _LOCK:
        return
    paths.STATE_DIR.mkdir(parents=True, exist_ok=True)
    lock = paths.STATE_DIR / "lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise LabError(f"the lab is in use by another process (pid {holder}, {lock}); wait "
                       "for it to finish, or stop it, then try again") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _LOCK["fd"] = fd


class Lab:
    def __init__(self) -> None:
        data = json.loads(paths.STATE_FILE.read_text()) if paths.STATE_FILE.exists() else {}
        self.hosts: dict[str, LabHost] = machine.load_hosts(data)
        self.index_pid: int | None = data.get("index_pid")
        self.upstream: far_upstream.UpstreamSetting = far_upstream.load()
        self._rootfs: rootfs.Rootfs | None = None

    # ------------------------------------------------------------------ lifecycle

    def up(self, count: int = 1, profiles: list[str] | None = None,
           bare: bool = False, pip_mirror: bool = True,
           seed_weights: bool = True) -> list[LabHost]:
        """A fresh lab of `count` hosts gpu1..gpuN, profiles assigned in turn."""
        profiles = profiles or ["a100"]
        self.down()
        return self.add_hosts([(profiles[i % len(profiles)], bare) for i in range(count)],
                              pip_mirror=pip_mirror, seed_weights=seed_weights)

    def add_host(self, profile: str, bare: bool = False, pip_mirror: bool = True,
                 seed_weights: bool = True) -> LabHost:
        return self.add_hosts([(profile, bare)], pip_mirror=pip_mirror,
                              seed_weights=seed_weights)[0]

    def add_hosts(self, specs: list, pip_mirror: bool = True,
                  seed_weights: bool = True) -> list[LabHost]:
        """Boot several hosts at once; a spec is a profile name or (profile, bare).

        pip_mirror=False boots them without /etc/pip.conf, so pip uses its default index,
        https://pypi.org/simple/: the lab's general index over HTTPS (PUBLIC_INDEX_HOSTS and
        the lab CA in the host's trust store), as a host with the internet reaches PyPI.
        seed_weights=False boots them without the stand-in weights (SEEDED_MODELS): their
        server's first start downloads them from the lab's model hub.
        """
        pairs = [(s, False) if isinstance(s, str) else (s[0], bool(s[1])) for s in specs]
        for profile, _ in pairs:
            get_profile(profile)  # unknown names fail before anything starts
        self._prepare_machine()
        new = []
        for profile, bare in pairs:
            number = self._next_number()
            host = LabHost(f"gpu{number}", number, paths.host_address(number), profile, bare,
                           pip_mirror=pip_mirror, seed_weights=seed_weights)
            self.hosts[host.name] = host
            self._boot(host)
            new.append(host)
        with ThreadPoolExecutor(max_workers=max(1, len(new))) as pool:
            stopped = [h for h, ok in zip(new, pool.map(self._ready, new), strict=True) if not ok]
        for host in stopped:  # seen on loaded machines: nspawn gone at once, nothing said
            print(f"lab: {host.name} stopped at once while booting; booting it again",
                  file=sys.stderr)
            machine.stop(host)
            self._boot(host)
            machine.wait_ready(host)
        return new

    def _boot(self, host: LabHost) -> None:
        machine.prepare(host, self._rootfs.variant(host.bare), self._customizer(host))
        self._write_known_hosts()
        machine.start(host)
        self._save()

    @staticmethod
    def _ready(host: LabHost) -> bool:
        """Booted; False when the container stopped within its first seconds (a second
        boot is tried once); any other failure raises."""
        started = time.monotonic()
        try:
            machine.wait_ready(host)
        except LabError as exc:
            if "stopped while booting" in str(exc) and time.monotonic() - started < 20:
                return False
            raise
        return True

    def remove_host(self, name: str) -> None:
        host = self.hosts.pop(name)
        machine.stop(host)
        self._write_known_hosts()
        self._save()

    def down(self) -> None:
        """Stop everything this lab (or a lab killed midway) started, by recorded PID, then
        sweep leftovers by the lab's own names and paths only."""
        hold_lab_lock()
        for host in list(self.hosts.values()):
            machine.stop(host)
        self.hosts.clear()
        self._stop_index()
        if paths.HOSTS_DIR.exists():
            machine.kill_nspawn_under(paths.HOSTS_DIR)
            machine.kill_rooted_under(paths.HOSTS_DIR)
            machine.unmount_under(paths.HOSTS_DIR)
            machine.shutil_rmtree(paths.HOSTS_DIR)
        network.remove_all()
        for leftover in (paths.STATE_FILE, paths.INVENTORY, paths.KNOWN_HOSTS, paths.INDEX_PID):
            leftover.unlink(missing_ok=True)

    def status(self) -> list[LabHost]:
        return [h for h in self.hosts.values() if h.pid and machine._is_ours(h.pid, h)]

    # ------------------------------------------------------------------ a far upstream

    def set_upstream(self, pad_mb: float = 0, weights_mb: float = 1,
                     rate_mbps: float = 0.0) -> far_upstream.UpstreamSetting:
        """Make the lab's upstream large and far: paddlepaddle-gpu wheels padded to pad_mb MB
        (fastdeploy-gpu to a quarter), weights_mb MB of weights per hub model, everything the
        index server sends limited to rate_mbps MB/s in total (0: unlimited). The defaults
        are today's lab. Rebuilds the Paddle index only when the padding changed (cached by
        its value), restarts a running index server with the new setting, writes the hub file
        on the running hosts, and keeps the setting for later `Lab()`s."""
        setting = far_upstream.checked(pad_mb, weights_mb, rate_mbps)
        hold_lab_lock()
        from provision_lab.index import build_index

        build_index(paths.INDEX_ROOT, setting.pad_mb)
        far_upstream.save(setting)
        self.upstream = setting
        if self._index_alive():
            self._stop_index()
            self._start_index()
        for host in self.status():
            _write_hub_file(host.root)
        return setting

    def index_mark(self) -> int:
        """A position in the index server's access log: pass it to index_bytes as `since`."""
        return accounting.mark(paths.ACCESS_LOG)

    def index_bytes(self, since: int | None = None) -> dict:
        """Response body bytes the index server sent since the mark (None: ever):
        {"paddle": n, "general": n, "pypi": n, "hub": n, "total": n, "by_client": {addr: n}}.
        A request is logged when its response ends (a test reading right after its own
        client finished may poll briefly)."""
        return accounting.totals(paths.ACCESS_LOG, since)

    # ------------------------------------------------------------------ tests' knobs

    def break_version(self, version: str, hosts: list[str] | None = None) -> None:
        """That FastDeploy version's stand-in server still installs but never gets healthy."""
        for host in self._select(hosts):
            path = host.root / "etc/provision-lab/broken-versions"
            lines = set(path.read_text().split()) if path.exists() else set()
            path.write_text("".join(f"{v}\n" for v in sorted(lines | {version})))

    def mend(self, hosts: list[str] | None = None) -> None:
        for host in self._select(hosts):
            (host.root / "etc/provision-lab/broken-versions").unlink(missing_ok=True)

    def write_answers(self, answers: dict, hosts: list[str] | None = None) -> None:
        for host in self._select(hosts):
            (host.root / "etc/provision-lab/answers.json").write_text(json.dumps(answers))

    def trust_ca(self, ca_pem: str | None, hosts: list[str] | None = None) -> None:
        """Replace the lab CA in those hosts' trust store by `ca_pem` (None: the lab's again),
        through the host's own update-ca-certificates (tests: a wrong CA must be refused)."""
        pem = paths.TLS_DIR.joinpath("ca.crt").read_text() if ca_pem is None else ca_pem
        for host in self._select(hosts):
            (host.root / paths.HOST_CA_FILE).write_text(pem)
            host.ssh("update-ca-certificates --fresh", check=True)

    def inventory(self, path: Path | None = None) -> Path:
        """An Ansible YAML inventory of the running hosts, one group per profile."""
        path = Path(path or paths.INVENTORY)
        children: dict = {}
        for host in self.hosts.values():
            group = children.setdefault(host.profile, {"hosts": {}})
            group["hosts"][host.name] = None
            if host.bare:
                children.setdefault("bare", {"hosts": {}})["hosts"][host.name] = None
        data = {"all": {
            # The lab's hosts run Python 3.11 (Debian 12), which 2.5.0's cp310-only wheels
            # refuse; 2.4 is the newest line that installs there. Dependencies come from the
            # hosts' own pip configuration (the site mirror), so no extra index is set.
            "vars": {"known_hosts_file": str(paths.KNOWN_HOSTS),
                     "package_index_url": paths.PADDLE_INDEX_URL, "fastdeploy_version": "2.4"},
            "hosts": {h.name: {"ansible_host": h.address, "ansible_user": "root",
                               "ansible_ssh_private_key_file": str(paths.KEY_FILE)}
                      for h in self.hosts.values()},
            "children": children,
        }}
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("# Written by `provision lab inventory`: the lab's running hosts.\n"
                       + yaml.safe_dump(data, sort_keys=False))
        tmp.replace(path)
        return path

    # ------------------------------------------------------------------ internals

    def _select(self, names: list[str] | None) -> list[LabHost]:
        unknown = sorted(set(names or ()) - set(self.hosts))
        if unknown:
            raise LabError(f"no lab host named {', '.join(unknown)}; running: "
                           f"{', '.join(self.hosts) or 'none'}")
        return [self.hosts[n] for n in names] if names else list(self.hosts.values())

    def _next_number(self) -> int:
        used = {h.number for h in self.hosts.values()}
        number = next(n for n in range(1, paths.MAX_HOSTS + 1) if n not in used)
        return number

    def _prepare_machine(self) -> None:
        """Packages, key and root filesystems once per process; the bridge and the index
        every time, since another Lab (or a `lab down`) may have removed them."""
        hold_lab_lock()
        if self._rootfs is None:
            self._prepare_once()
        network.ensure_bridge()
        self._start_index()

    def _prepare_once(self) -> None:
        require_root()
        ensure_packages()
        raise_inotify_limit()
        paths.STATE_DIR.mkdir(parents=True, exist_ok=True)
        if not paths.KEY_FILE.exists():
            run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "provision-lab",
                "-f", str(paths.KEY_FILE))
        if not self.hosts:  # a lab killed midway leaves namespaces, mounts, processes
            self.down()
        self._rootfs = rootfs.ensure_rootfs()
        tls.ensure(paths.TLS_DIR, paths.CA_NAME)
        self._publish_index()

    def _publish_index(self) -> None:
        from provision_lab.index import build_general, build_index

        build_index(paths.INDEX_ROOT, self.upstream.pad_mb)
        build_general(paths.GENERAL_ROOT)
        paths.GENERAL_WHEELS.mkdir(parents=True, exist_ok=True)
        try:  # real wheels (Gradio) for the general index; hosts cannot reach PyPI
            general_wheels.mirror()
        except LabError as exc:
            print(f"WARNING: the lab's general index lacks Gradio: {exc}", file=sys.stderr)
        apt = paths.INDEX_ROOT / "apt"
        apt.mkdir(parents=True, exist_ok=True)
        for item in self._rootfs.apt.iterdir():
            target = apt / item.name
            if not target.exists() or target.stat().st_size != item.stat().st_size \
                    or item.name in ("Packages", "Packages.gz", "Release"):
                target.write_bytes(item.read_bytes())

    def _customizer(self, host: LabHost):
        def customize(root: Path) -> None:
            install_profile(root, get_profile(host.profile))
            etc = root / "etc/provision-lab"
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "answers.json").write_text(json.dumps(lab_answers()))
            _write_hub_file(root)
            if host.pip_mirror:
                (root / "etc/pip.conf").write_text(PIP_CONF)
            else:
                _reach_public_index(root)
            for model in SEEDED_MODELS if host.seed_weights else ():
                seeded = root / model
                seeded.mkdir(parents=True, exist_ok=True)
                (seeded / "config.json").write_text('{"architectures": ["stand-in"]}\n')
        return customize

    def _write_known_hosts(self) -> None:
        lines = []
        for host in self.hosts.values():
            for pub in sorted((host.root / "etc/ssh").glob("ssh_host_*_key.pub")):
                kind, key = pub.read_text().split()[:2]
                lines.append(f"{host.address} {kind} {key}\n")
        paths.STATE_DIR.mkdir(parents=True, exist_ok=True)
        tmp = paths.KNOWN_HOSTS.with_suffix(".tmp")
        tmp.write_text("".join(lines))
        tmp.replace(paths.KNOWN_HOSTS)

    def _index_alive(self) -> bool:
        if not self.index_pid:
            return False
        try:
            cmdline = Path(f"/proc/{self.index_pid}/cmdline").read_bytes()
        except OSError:
            return False
        return b"provision_lab.index" in cmdline

    def _start_index(self) -> None:
        if self._index_alive():
            return
        tls_files = tls.files_in(paths.TLS_DIR)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(Path(provision_lab.__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
        log = open(paths.STATE_DIR / "index-server.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "provision_lab.index", "serve", "--root", str(paths.INDEX_ROOT),
             "--bind", paths.GATEWAY, "--port", str(paths.INDEX_PORT),
             "--general-root", str(paths.GENERAL_ROOT), "--general-extra",
             str(paths.GENERAL_WHEELS), "--general-port", str(paths.GENERAL_INDEX_PORT),
             "--tls-port", str(paths.PYPI_PORT), "--tls-cert", str(tls_files.cert),
             "--tls-key", str(tls_files.key), "--tls-files-url", paths.PYPI_FILES_URL,
             "--hub-port", str(paths.HUB_PORT), "--hub-weights-mb", str(self.upstream.weights_mb),
             "--rate-mbps", str(self.upstream.rate_mbps), "--access-log", str(paths.ACCESS_LOG)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True)
        log.close()
        self.index_pid = proc.pid
        paths.INDEX_PID.write_text(str(proc.pid))
        self._save()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                for port in (paths.INDEX_PORT, paths.GENERAL_INDEX_PORT, paths.PYPI_PORT,
                             paths.HUB_PORT):
                    socket.create_connection((paths.GATEWAY, port), timeout=1).close()
                return
            except OSError:
                if proc.poll() is not None:
                    break
                time.sleep(0.1)
        raise LabError(f"the stand-in indexes did not start on {paths.INDEX_URL}, "
                       f"{paths.GENERAL_INDEX_URL} and https://{paths.GATEWAY}:"
                       f"{paths.PYPI_PORT}/simple/ and the hub {paths.HUB_URL}; see "
                       f"{paths.STATE_DIR / 'index-server.log'}")

    def _stop_index(self) -> None:
        pid = self.index_pid
        if pid is None and paths.INDEX_PID.exists():
            pid = int(paths.INDEX_PID.read_text().strip() or 0) or None
        self.index_pid = pid
        if self._index_alive():
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while self._index_alive() and time.monotonic() < deadline:
                time.sleep(0.1)
            if self._index_alive():
                os.kill(pid, signal.SIGKILL)
        self.index_pid = None

    def _save(self) -> None:
        machine.dump_state(self.hosts, self.index_pid)


def _write_hub_file(root: Path) -> None:
    """Where the host's stand-in server finds the model hub (the lab's file, not the tool's)."""
    hub = root / paths.HOST_HUB_FILE
    hub.parent.mkdir(parents=True, exist_ok=True)
    hub.write_text(paths.HUB_URL + "\n")


def _reach_public_index(root: Path) -> None:
    """A host tree (not yet booted) that reaches "pypi.org": the names in /etc/hosts, the lab
    CA in its trust store through the host's own update-ca-certificates."""
    (root / "etc/hosts").write_text(PUBLIC_INDEX_HOSTS)
    ca = root / paths.HOST_CA_FILE
    ca.parent.mkdir(parents=True, exist_ok=True)
    ca.write_text(tls.files_in(paths.TLS_DIR).ca_cert.read_text())
    run("chroot", str(root), "update-ca-certificates", timeout=120)
