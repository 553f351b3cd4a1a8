"""The tasks' state, gathered ON the host inside the facts trip (stdlib only, Python 3.8+).

This file's text is put in front of facts_script.py's text in the one `python3 -c`
exec (provision/play/state.py), and facts_script's main() calls `tasks_state(spec)`,
so a playbook of any length costs the same single exec request as the deployment's
facts. Each probe reads, never changes; every answer is plain data the control node
parses (a hostile host can only lie about its own state, never run code here).
"""

import grp as _grp
import hashlib as _hashlib
import os as _os
import pwd as _pwd
import stat as _stat
import subprocess as _subprocess

_CONTENT_LIMIT = 1024 * 1024  # lineinfile/blockinfile/--diff need the text; larger is refused


def _name(lookup, ident):
    try:
        return lookup(ident)[0]
    except KeyError:
        return str(ident)


def _probe_file(path, want_content):
    try:
        st = _os.lstat(path)
    except FileNotFoundError:
        return {"state": "absent"}
    except OSError as exc:
        return {"state": "error", "error": str(exc)}
    kinds = ((_stat.S_ISLNK, "link"), (_stat.S_ISDIR, "directory"), (_stat.S_ISREG, "file"))
    kind = next((label for test, label in kinds if test(st.st_mode)), "other")
    out = {"state": kind, "mode": f"{_stat.S_IMODE(st.st_mode):04o}",
           "owner": _name(_pwd.getpwuid, st.st_uid), "group": _name(_grp.getgrgid, st.st_gid),
           "size": st.st_size}
    if kind == "link":
        out["target"] = _os.readlink(path)
    if kind == "file":
        digest = _hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        out["sha256"] = digest.hexdigest()
        if want_content and st.st_size <= _CONTENT_LIMIT:
            with open(path, "rb") as handle:
                out["content"] = handle.read().decode("utf-8", "surrogateescape")
    return out


def _probe_package(name, _):
    got = _subprocess.run(["dpkg-query", "-W", "-f", "${Status}\t${Version}", name],
                          capture_output=True, text=True, errors="replace")
    status, _sep, version = got.stdout.partition("\t")
    installed = got.returncode == 0 and status.endswith(" installed")
    return {"installed": installed, "version": version if installed else None}


def _probe_unit(name, _):
    got = _subprocess.run(["systemctl", "show", "-p", "LoadState,ActiveState,UnitFileState",
                           name], capture_output=True, text=True, errors="replace")
    fields = dict(line.split("=", 1) for line in got.stdout.splitlines() if "=" in line)
    return {"load": fields.get("LoadState"), "active": fields.get("ActiveState"),
            "enabled": fields.get("UnitFileState")}


def _probe_sysctl(name, _):
    try:
        with open("/proc/sys/" + name.replace(".", "/")) as handle:
            return {"value": handle.read().strip()}
    except OSError as exc:
        return {"value": None, "error": str(exc)}


def _probe_mount(path, _):
    mounted = None
    try:
        with open("/proc/self/mounts") as handle:
            for line in handle:
                cols = line.split()
                if len(cols) >= 4 and cols[1] == path:
                    mounted = {"src": cols[0], "fstype": cols[2], "opts": cols[3]}
    except OSError:
        pass
    return {"mounted": mounted}


def _probe_user(name, _):
    try:
        entry = _pwd.getpwnam(name)
    except KeyError:
        return {"exists": False}
    groups = sorted(g.gr_name for g in _grp.getgrall() if name in g.gr_mem)
    return {"exists": True, "uid": entry.pw_uid, "home": entry.pw_dir, "shell": entry.pw_shell,
            "group": _name(_grp.getgrgid, entry.pw_gid), "groups": groups}


def _probe_pip(python, _):
    """Installed distributions of an interpreter: names normalised as PEP 503 says."""
    if not _os.path.exists(python):
        return {"exists": False, "dists": {}}
    code = ("import importlib.metadata as m, json, re; print(json.dumps({re.sub(r'[-_.]+', '-', "
            "d.metadata['Name']).lower(): d.version for d in m.distributions()}))")
    got = _subprocess.run([python, "-c", code], capture_output=True, text=True, errors="replace")
    import json as _json
    try:
        return {"exists": True, "dists": _json.loads(got.stdout)}
    except ValueError:
        return {"exists": True, "dists": {}, "error": got.stderr[-500:]}


def _probe_path(path, _):
    return {"exists": _os.path.lexists(path)}


_PROBES = {"file": _probe_file, "package": _probe_package, "unit": _probe_unit,
           "sysctl": _probe_sysctl, "mount": _probe_mount, "user": _probe_user,
           "pip": _probe_pip, "path": _probe_path}


def tasks_state(spec):
    """spec: [[kind, key, want_content], ...] -> {"kind:key": data}; a failing probe is data."""
    out = {}
    for kind, key, want_content in spec:
        try:
            out[kind + ":" + key] = _PROBES[kind](key, want_content)
        except Exception as exc:  # noqa: BLE001 - one odd path must not hide the other answers
            out[kind + ":" + key] = {"error": f"{type(exc).__name__}: {exc}"}
    return out
