"""The facts script: runs ON the host (stdlib only, Python 3.8+), prints one framed JSON.

It is shipped as the text of this file (`python3 -c <text> <json args>`), so it must not
import anything from provision. One process answers every question the plan asks, so a
converged host costs one exec request (pyinfra's fact = command + pure parser; testinfra's
markers keep a noisy login shell out of the JSON).
"""

import glob
import hashlib
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys

BEGIN = "===PROVISION-FACTS-BEGIN==="
END = "===PROVISION-FACTS-END==="


def read(path):
    try:
        with open(path, encoding="utf-8", errors="surrogateescape", newline="") as handle:
            return handle.read()
    except OSError:
        return None


def run(argv, timeout=30):
    """Raw outcome of a command: never raises, so one missing tool cannot hide the others."""
    try:
        got = subprocess.run(argv, capture_output=True, timeout=timeout, text=True,
                             errors="replace")
        return {"rc": got.returncode, "out": got.stdout, "err": got.stderr}
    except FileNotFoundError:
        return {"rc": 127, "out": "", "err": "command not found: " + argv[0]}
    except subprocess.TimeoutExpired:
        return {"rc": 124, "out": "", "err": f"timed out after {timeout}s: {argv[0]}"}
    except OSError as exc:
        return {"rc": 126, "out": "", "err": str(exc)}


def os_release():
    fields = {}
    for line in (read("/etc/os-release") or read("/usr/lib/os-release") or "").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            try:
                parts = shlex.split(value)
            except ValueError:
                parts = [value]
            fields[key.strip()] = parts[0] if parts else ""
    return fields


def cloud_init(osr):
    """cloud-init's hosts template, when cloud-init rewrites /etc/hosts at boot."""
    paths = ["/etc/cloud/cloud.cfg"] + sorted(glob.glob("/etc/cloud/cloud.cfg.d/*.cfg"))
    managed = False
    for path in paths:
        for line in (read(path) or "").splitlines():
            match = re.match(r"\s*manage_etc_hosts\s*:\s*(\S+)", line)
            if match:
                managed = match.group(1).strip("'\"").lower() in ("true", "template", "yes")
    if not managed:
        return None
    family = osr.get("ID", "")
    if "debian" in (family + " " + osr.get("ID_LIKE", "")).split() or family == "ubuntu":
        family = "debian"
    path = f"/etc/cloud/templates/hosts.{family}.tmpl"
    return {"path": path, "text": read(path)}


def nvidia(fields, fields_no_cap):
    if shutil.which("nvidia-smi") is None:
        return None
    query = run(["nvidia-smi", "--query-gpu=" + fields, "--format=csv,noheader,nounits"])
    fallback = None
    if query["rc"] != 0 and "compute_cap" in query["out"] + query["err"]:
        fallback = run(["nvidia-smi", "--query-gpu=" + fields_no_cap,
                        "--format=csv,noheader,nounits"])
    return {"query": query, "query_no_cap": fallback, "table": run(["nvidia-smi"])}


def disk_free(path):
    """Free MiB where `path` will live: statvfs of its nearest existing ancestor."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize // (1024 * 1024)


def partial_mib(releases_dir):
    """MiB held by failed builds (<releases>/*.partial): the next build deletes them first,
    so pre-flight counts them as free."""
    total = 0
    for top in glob.glob(os.path.join(releases_dir, "*.partial")):
        for root, _, files in os.walk(top):
            for name in files:
                try:
                    total += os.lstat(os.path.join(root, name)).st_blocks * 512
                except OSError:
                    pass
    return total // (1024 * 1024)


def mem_total_mib():
    for line in (read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 0


def listeners(ports):
    """Listening TCP ports; owners (pid, comm, unit) only for the ports we will use."""
    found = {}
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in (read(name) or "").splitlines()[1:]:
            cols = line.split()
            if len(cols) > 9 and cols[3] == "0A":
                port = int(cols[1].rsplit(":", 1)[1], 16)
                found.setdefault(port, set()).add(cols[9])
    wanted = {}
    for port in ports:
        for inode in found.get(port, ()):
            wanted[f"socket:[{inode}]"] = port
    owners = {}
    if wanted:
        for fd_dir in glob.glob("/proc/[0-9]*/fd"):
            try:
                links = [os.readlink(os.path.join(fd_dir, fd)) for fd in os.listdir(fd_dir)]
            except OSError:
                continue
            for link in links:
                if link in wanted and wanted[link] not in owners:
                    owners[wanted[link]] = int(fd_dir.split("/")[2])
    result = []
    for port in sorted(found):
        pid = owners.get(port)
        entry = {"port": port, "pid": pid, "command": None, "unit": None}
        if pid is not None:
            entry["command"] = (read(f"/proc/{pid}/comm") or "").strip() or None
            for line in (read(f"/proc/{pid}/cgroup") or "").splitlines():
                for part in line.rsplit(":", 1)[-1].split("/"):
                    if part.endswith(".service"):
                        entry["unit"] = part
        result.append(entry)
    return result


def dist_version(site_globs, project):
    for pattern in site_globs:
        for path in glob.glob(os.path.join(pattern, project + "-*.dist-info")):
            return os.path.basename(path)[len(project) + 1:-len(".dist-info")]
    return None


def installed(args):
    venv, releases_dir = args["venv_dir"], args["releases_dir"]
    out = {"venv_kind": "missing", "current_release": None, "releases": [],
           "paddle_version": None, "fastdeploy_version": None}
    if os.path.islink(venv):
        out["venv_kind"] = "link"
        target = os.readlink(venv)
        out["link_target"] = target
        if os.path.dirname(os.path.normpath(target)) == os.path.normpath(releases_dir):
            out["current_release"] = os.path.basename(os.path.normpath(target))
    elif os.path.isdir(venv):
        out["venv_kind"] = "dir"
    elif os.path.exists(venv):
        out["venv_kind"] = "file"
    marked = []
    for marker in glob.glob(os.path.join(releases_dir, "*", ".provision-complete")):
        marked.append((os.stat(marker).st_mtime, os.path.basename(os.path.dirname(marker))))
    out["releases"] = [name for _, name in sorted(marked)]
    sites = [os.path.join(venv, "lib", "python*", "site-packages")]
    out["paddle_version"] = dist_version(sites, "paddlepaddle_gpu")
    out["fastdeploy_version"] = dist_version(sites, "fastdeploy_gpu")
    unit_text = read(args["unit_path"])
    out["unit_text"] = unit_text
    out["unit_sha256"] = (hashlib.sha256(unit_text.encode("utf-8", "surrogateescape"))
                          .hexdigest() if unit_text is not None else None)
    try:
        with open(args["env_file"], "rb") as handle:
            out["env_sha256"] = hashlib.sha256(handle.read()).hexdigest()
        out["env_mode"] = os.stat(args["env_file"]).st_mode & 0o7777
    except OSError:
        out["env_sha256"], out["env_mode"] = None, None
    service = args["service"]
    out["service_active"] = run(["systemctl", "is-active", service])["out"].strip() or None
    out["service_enabled"] = run(["systemctl", "is-enabled", service])["out"].strip() or None
    restarts = run(["systemctl", "show", "-p", "NRestarts", "--value", service])["out"].strip()
    out["service_restarts"] = int(restarts) if restarts.isdigit() else None
    return out


def main():
    args = json.loads(sys.argv[1])
    osr = os_release()
    uname = os.uname()
    try:
        import importlib.util as iu
        has_venv = iu.find_spec("ensurepip") is not None and iu.find_spec("venv") is not None
        has_pip = iu.find_spec("pip") is not None
    except Exception:  # noqa: BLE001 - a broken interpreter is a fact, not a crash
        has_venv = has_pip = False
    facts = {
        "version": 1,
        "os_release": osr,
        "kernel": uname.sysname,
        "arch": uname.machine,
        "hostname": socket.gethostname(),
        "etc_hosts": read("/etc/hosts"),
        "cloud_init": cloud_init(osr),
        "python_version": ".".join(str(n) for n in sys.version_info[:3]),
        "has_venv": has_venv,
        "has_pip": has_pip,
        "nvidia_smi": nvidia(args["query"], args["query_no_cap"]),
        "disk_free_mib": {path: disk_free(path) + (partial_mib(path) if path ==
                                                   args["releases_dir"] else 0)
                          for path in args["disk_paths"]},
        "mem_total_mib": mem_total_mib(),
        "systemd_state": run(["systemctl", "is-system-running"])["out"].strip() or "unknown",
        "listeners": listeners(args["ports"]),
        "installed": installed(args),
        "model_present": any(os.path.isdir(p) for p in args["model_paths"]),
    }
    sys.stdout.write(f"\n{BEGIN}\n{json.dumps(facts)}\n{END}\n")


if __name__ == "__main__":
    main()
