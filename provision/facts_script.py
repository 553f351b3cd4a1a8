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
import threading
import time

BEGIN = "===PROVISION-FACTS-BEGIN==="
END = "===PROVISION-FACTS-END==="


def read(path):
    try:
        with open(path, encoding="utf-8", errors="surrogateescape", newline="") as handle:
            return handle.read()
    except OSError:
        return None


_STARTED = {}


def run(argv, timeout=30):
    """Raw outcome of a command: never raises, so one missing tool cannot hide the others.

    A command `start_all` set going is not run again: its outcome is waited for here.
    """
    thread = _STARTED.pop(tuple(argv), None)
    if thread is not None:
        thread.join()
        return thread.outcome
    return _run_now(argv, timeout)


def start_all(argvs, timeout=30):
    """Start commands the trip will need at once, each in a thread, so that the trip costs
    the slowest of them instead of their sum (nvidia-smi alone can take a second)."""
    for argv in argvs:
        if tuple(argv) in _STARTED:
            continue
        thread = threading.Thread(target=_keep, args=(argv, timeout), daemon=True)
        thread.outcome = None
        _STARTED[tuple(argv)] = thread
        thread.start()


def _keep(argv, timeout):
    threading.current_thread().outcome = _run_now(argv, timeout)


def _run_now(argv, timeout):
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


def nvidia_commands(fields):
    """The query and the plain table, both always asked for (see `nvidia`)."""
    return [["nvidia-smi", "--query-gpu=" + fields, "--format=csv,noheader,nounits"],
            ["nvidia-smi"]]


def nvidia(fields, fields_no_cap):
    if shutil.which("nvidia-smi") is None:
        return None
    query = run(nvidia_commands(fields)[0])
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
    active, enabled, restarts = unit_commands(args["service"])
    out["service_active"] = run(active)["out"].strip() or None
    out["service_enabled"] = run(enabled)["out"].strip() or None
    restarts = run(restarts)["out"].strip()
    out["service_restarts"] = int(restarts) if restarts.isdigit() else None
    return out


def unit_commands(service):
    """What systemd says about a unit: is-active, is-enabled, NRestarts."""
    return [["systemctl", "is-active", service], ["systemctl", "is-enabled", service],
            ["systemctl", "show", "-p", "NRestarts", "--value", service]]


def fetch_pages(urls, limit_s=20.0, max_bytes=4 << 20):
    """The package index's project pages, fetched from here (the host must reach the index).

    All at once in threads, each with a timeout and the whole bounded by limit_s; a page
    that fails or is late is reported, never raised.
    """
    import urllib.error  # here: a converged host skips the index, and these cost an import
    import urllib.request

    results = {}

    def one(url):
        try:
            request = urllib.request.Request(url, headers={"Accept": "text/html"})
            with urllib.request.urlopen(request, timeout=limit_s / 2) as response:
                body = response.read(max_bytes).decode("utf-8", "replace")
            results[url] = {"ok": True, "text": body}
        except urllib.error.HTTPError as exc:
            results[url] = {"ok": False, "error": f"HTTP {exc.code} {exc.reason}"}
        except Exception as exc:  # noqa: BLE001 - every failure is a fact to report
            results[url] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}

    threads = [threading.Thread(target=one, args=(url,), daemon=True) for url in urls]
    deadline = time.monotonic() + limit_s
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0.0))
    for url in urls:
        results.setdefault(url, {"ok": False, "error": f"no answer within {limit_s:.0f}s"})
    return results


_EARLY = {}


def start_index_fetch(args):
    """Without an exact pin the pages are always needed: fetch them while the rest runs."""
    if args.get("skip_index_if_installed"):
        return
    thread = threading.Thread(target=lambda: _EARLY.setdefault(
        "pages", fetch_pages(args.get("index_pages") or [])), daemon=True)
    _EARLY["thread"] = thread
    thread.start()


def package_index(args, inst):
    """Skipped when the exact pinned version is what the current release already holds."""
    pin = args.get("skip_index_if_installed")
    if pin and inst.get("fastdeploy_version") == pin:
        return {"skipped": True, "pages": {}}
    early = _EARLY.pop("thread", None)
    if early is not None:
        early.join()  # fetch_pages bounds itself (limit_s)
        return {"skipped": False, "pages": _EARLY.pop("pages")}
    return {"skipped": False, "pages": fetch_pages(args.get("index_pages") or [])}


def web(args):
    """The chat page's files, venv and unit (provision/webui/), in the same trip."""
    out = {}
    for key in ("unit", "app", "config", "env"):
        try:
            with open(args[key], "rb") as handle:
                out[key + "_sha256"] = hashlib.sha256(handle.read()).hexdigest()
        except OSError:
            out[key + "_sha256"] = None
    out["unit_text"] = read(args["unit"])
    try:
        out["env_mode"] = os.stat(args["env"]).st_mode & 0o7777
    except OSError:
        out["env_mode"] = None
    sites = [os.path.join(args["venv"], "lib", "python*", "site-packages")]
    out["gradio_version"] = (dist_version(sites, "gradio")
                             if os.access(os.path.join(args["venv"], "bin", "python"), os.X_OK)
                             else None)
    out["active"] = out["enabled"] = None
    if out["unit_text"] is not None:
        active, enabled, _ = unit_commands(args["service"])
        out["active"] = run(active)["out"].strip() or None
        out["enabled"] = run(enabled)["out"].strip() or None
    return out


def start_commands(args):
    """Every command this trip will surely run, set going together before anything else."""
    argvs = [["systemctl", "is-system-running"], *unit_commands(args["service"])]
    if shutil.which("nvidia-smi") is not None:
        argvs += nvidia_commands(args["query"])
    web_args = args.get("web")
    if web_args and os.path.exists(web_args["unit"]):
        argvs += unit_commands(web_args["service"])[:2]
    start_all(argvs)


def main():
    args = json.loads(sys.argv[1])
    start_commands(args)
    start_index_fetch(args)
    osr = os_release()
    uname = os.uname()
    try:
        import importlib.util as iu
        has_venv = iu.find_spec("ensurepip") is not None and iu.find_spec("venv") is not None
        has_pip = iu.find_spec("pip") is not None
    except Exception:  # noqa: BLE001 - a broken interpreter is a fact, not a crash
        has_venv = has_pip = False
    inst = installed(args)
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
        "installed": inst,
        "package_index": package_index(args, inst),
        "model_present": any(os.path.isdir(p) for p in args["model_paths"]),
        "web": web(args["web"]) if args.get("web") else None,
    }
    if args.get("tasks"):  # playbook tasks' state: provision/play/state_script.py is prepended
        facts["tasks_state"] = tasks_state(args["tasks"])  # noqa: F821
    sys.stdout.write(f"\n{BEGIN}\n{json.dumps(facts)}\n{END}\n")


if __name__ == "__main__":
    main()
