"""What copy, template, file, lineinfile, blockinfile and get_url share: attributes and writes.

A file is written as one script: its bytes come on stdin into a temporary file beside
the target, which gets its mode and owner before the rename, so a reader never sees a
half-written or wrongly owned file.
"""

from __future__ import annotations

import difflib
import hashlib

from provision import shell


def attr_gaps(args: dict, st: dict) -> list[str]:
    """Which of mode/owner/group differ from what the task asks (absent args: no opinion)."""
    gaps = []
    for key in ("mode", "owner", "group"):
        want = args.get(key)
        if want is not None and str(st.get(key)) != str(want):
            gaps.append(f"{key} {st.get(key)} -> {want}")
    return gaps


def attr_lines(path: str, args: dict) -> list[str]:
    lines = []
    if args.get("owner") is not None or args.get("group") is not None:
        owner = args.get("owner") or ""
        group = args.get("group")
        lines.append(shell.cmd("chown", f"{owner}:{group}" if group else owner, path))
    if args.get("mode") is not None:
        lines.append(shell.cmd("chmod", args["mode"], path))
    return lines


def write(path: str, data: bytes, args: dict) -> tuple[str, bytes]:
    """(script, stdin) writing `data` to `path` atomically with the task's attributes.

    A new file without `mode:` gets 0644 (umask 022), as Ansible's copy gives it; an
    existing file keeps its mode, owner and group unless the task names them.
    """
    tmp = f"{path}.provision-tmp"
    keep = shell.fmt("if [ -e %s ]; then chmod --reference=%s %s; chown --reference=%s %s; "
                     "fi", path, path, tmp, path, tmp)
    lines = [shell.fmt("umask 022; cat > %s", tmp), keep, *attr_lines(tmp, args),
             shell.cmd("mv", "-f", tmp, path)]
    return shell.script(lines), data


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def text_diff(path: str, old: str | None, new: str) -> str:
    """A unified diff as --diff prints it; a new file diffs against nothing."""
    lines = difflib.unified_diff((old or "").splitlines(keepends=True),
                                 new.splitlines(keepends=True),
                                 fromfile=f"{path} (before)" if old is not None else "/dev/null",
                                 tofile=f"{path} (after)")
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def content_change(path: str, data: bytes, args: dict, st: dict, diff: bool,
                   what: str) -> tuple[list[str], str, bool]:
    """(reasons, diff text, content differs) for a file whose whole content the task states."""
    if st.get("state") not in ("file", "absent"):
        return [f"{path} is a {st.get('state')}, not a file"], "", True
    if st.get("state") == "absent":
        shown = text_diff(path, None, data.decode("utf-8", "replace")) if diff else ""
        return [f"{path} is missing ({what})"], shown, True
    if st.get("sha256") != sha256(data):
        shown = ""
        if diff:
            old = st.get("content")
            shown = (text_diff(path, old, data.decode("utf-8", "replace")) if old is not None
                     else f"--- {path}: content differs (too large to show)\n")
        return [f"{path} content differs ({what})"], shown, True
    return attr_gaps(args, st), "", False
