"""Path variables checked together: none may overlap another or land on a system file.

Each path passes its own pattern check in variables.py; this module refuses what the
combination makes dangerous before any connection. The release switch moves a
non-link `venv_dir` aside and prunes under `releases_dir` with `rm -rf`, so
`venv_dir=/opt/fastdeploy` (the releases' parent) would move every release away, and
`env_file=/etc/shadow` would replace the password file with the env file.
"""

from __future__ import annotations

import posixpath

PATH_VARS = ("venv_dir", "releases_dir", "data_dir", "model_cache_dir", "log_dir",
             "env_file", "model_dir")
# Replaced, moved aside or pruned by the tool: must share no part of the tree with another.
DESTRUCTIVE = ("venv_dir", "releases_dir")
# Directories the system owns as a whole: never one of ours, nor an ancestor of the system.
SYSTEM_DIRS = frozenset({
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32",
    "/media", "/mnt", "/opt", "/proc", "/root", "/run", "/sbin", "/snap", "/srv", "/sys",
    "/tmp", "/usr", "/usr/local", "/var", "/var/cache", "/var/lib", "/var/log", "/var/tmp",
})
# Trees where nothing of ours belongs (binaries, boot, kernel views, logins, units, sudo).
SYSTEM_TREES = ("/bin", "/boot", "/dev", "/lib", "/lib32", "/lib64", "/libx32", "/proc",
                "/run", "/sbin", "/sys", "/usr", "/etc/ssh", "/etc/pam.d", "/etc/sudoers.d",
                "/etc/security", "/etc/systemd", "/etc/cron.d", "/etc/apt", "/root/.ssh")


def _inside(path: str, tree: str) -> bool:
    """`path` is `tree` or below it: _inside("/opt/a/b", "/opt/a") -> True."""
    return path == tree or path.startswith(tree.rstrip("/") + "/")


def own_problem(name: str, path: str) -> str | None:
    """Why one path variable is unsafe on its own, or None."""
    if posixpath.normpath(path) != path.rstrip("/") or "//" in path:
        return "give a normalized absolute path (no '.', '..' or '//' parts)"
    path = path.rstrip("/") or "/"
    if path in SYSTEM_DIRS:
        return f"{path} is a system directory; give a directory of the service's own"
    tree = next((t for t in SYSTEM_TREES if _inside(path, t)), None)
    if tree:
        return f"{path} is inside {tree}, which the system owns; give a path of the service's own"
    if name == "env_file" and posixpath.dirname(path) in ("/", "/etc", "/root", "/home"):
        return (f"{path} would replace a system file; give a file in a directory of its own "
                "(e.g. /etc/fastdeploy/env)")
    return None


def overlap_problems(values: dict[str, str]) -> list[tuple[str, str]]:
    """(variable, fix) for each path that overlaps another in a way the tool would destroy."""
    found = []
    names = [n for n in PATH_VARS if values.get(n)]
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            a, b = values[first].rstrip("/"), values[second].rstrip("/")
            if a == b:
                found.append((second, f"it is the same path as {first}; give each its own"))
            elif first in DESTRUCTIVE or second in DESTRUCTIVE:
                if _inside(a, b) or _inside(b, a):
                    outer, inner = (second, first) if _inside(a, b) else (first, second)
                    risky = " and ".join(n for n in (first, second) if n in DESTRUCTIVE)
                    found.append((outer, f"{values[outer]} contains {inner}={values[inner]}; "
                                         f"{risky} must share no directory with another path "
                                         "setting"))
            elif "env_file" in (first, second):
                other = second if first == "env_file" else first
                if _inside(values[other], values["env_file"]):
                    found.append(("env_file", f"it would be a file where {other} is a directory"))
    return found
