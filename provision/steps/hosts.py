"""Step: the hostname resolves, via a marked block in /etc/hosts (reference §6 problem #1).

FastDeploy calls gethostbyname(gethostname()) at start and dies when it fails.
Decision: the block maps the hostname to 127.0.0.1 as the issue asks. It is appended
after every existing line, so where Debian/Ubuntu already map it to 127.0.1.1 that line
is found first and keeps its meaning; we only guarantee resolution. Every line outside
the block is kept byte for byte, whatever its encoding: the facts carry the file with
undecodable bytes as surrogates, and the new file goes back as the same bytes on stdin,
written through a symlink to its target. A file whose markers do not pair up is refused
before any change (guessing where a block ends could delete the user's lines), and so is
a hostname that is not a plain DNS name (a newline in it would write lines of its own).
On cloud images whose cloud-init rewrites /etc/hosts at boot (manage_etc_hosts), the same
block goes into cloud-init's template too.
"""

from __future__ import annotations

import difflib
import re

from provision import shell
from provision.model import Facts, Problem, Step
from provision.upload import Upload

BEGIN = "# BEGIN provision managed"
END = "# END provision managed"
ADDRESS = "127.0.0.1"
HOSTS = "/etc/hosts"
# For a host that has no /etc/hosts at all (debootstrap rootfs): localhost must resolve too.
DEFAULT_HEAD = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})"
                       r"(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*$")


def to_bytes(text: str) -> bytes:
    """The file's original bytes (facts keep undecodable bytes as surrogates)."""
    return text.encode("utf-8", "surrogateescape")


def printable(text: str) -> str:
    """Text safe to print: undecodable bytes shown as U+FFFD."""
    return to_bytes(text).decode("utf-8", "replace")


def block(hostname: str) -> str:
    names = [hostname]
    if "." in hostname:
        names.append(hostname.split(".", 1)[0])
    return f"{BEGIN}\n{ADDRESS}\t{' '.join(names)}\n{END}\n"


def marker_error(current: str | None) -> str | None:
    """Why the markers in `current` cannot be trusted, or None when every BEGIN has its END."""
    open_at = None
    for number, line in enumerate((current or "").splitlines(), 1):
        if line.strip() == BEGIN:
            if open_at is not None:
                return f"line {open_at} opens a block ({BEGIN!r}) that line {number} opens again"
            open_at = number
        elif line.strip() == END:
            if open_at is None:
                return f"line {number} has {END!r} without a {BEGIN!r} before it"
            open_at = None
    if open_at is not None:
        return f"line {open_at} has {BEGIN!r} but no {END!r} after it"
    return None


def render_hosts(current: str | None, hostname: str) -> str:
    """The file with our block in place (replaced where it was, else appended).

    Callers check marker_error first: with unpaired markers the result would guess.

    >>> render_hosts("10.0.0.5 db\\n", "gpu1")
    '10.0.0.5 db\\n# BEGIN provision managed\\n127.0.0.1\\tgpu1\\n# END provision managed\\n'
    """
    if current is None:
        return DEFAULT_HEAD + block(hostname)
    out: list[str] = []
    inside, placed = False, False
    for line in current.splitlines(keepends=True):
        if line.strip() == BEGIN:
            inside = True
            if not placed:
                out.append(block(hostname))
                placed = True
        elif line.strip() == END and inside:
            inside = False
        elif not inside:
            out.append(line)
    if placed:
        return "".join(out)
    if current and not current.endswith("\n"):
        current += "\n"
    return current + block(hostname)


def hosts_problems(host: str, facts: Facts) -> list[Problem]:
    """Pre-flight: a hostname we can write, and markers we can trust, in every file we edit."""
    problems = []
    if facts.hostname and not _HOSTNAME.match(facts.hostname):
        problems.append(Problem(host, "hostname", repr(facts.hostname),
                                "the host's name is not a plain DNS name, so it cannot go "
                                "into /etc/hosts", "set a hostname of letters, digits, - and "
                                "dots (hostnamectl set-hostname NAME) and rerun"))
    files = [(HOSTS, facts.etc_hosts)]
    if facts.cloud_hosts_template_path:
        files.append((facts.cloud_hosts_template_path, facts.cloud_hosts_template))
    for path, text in files:
        why = marker_error(text)
        if why:
            problems.append(Problem(host, path, why, f"{path}: {why}; nothing was changed",
                                    f"edit {path} so each {BEGIN!r} line has its {END!r} "
                                    "line after it (or delete the leftover marker), then rerun"))
    return problems


def text_diff(path: str, old: str | None, new: str) -> str:
    """A unified diff for --diff (a missing file diffs against /dev/null); always printable."""
    return printable("".join(difflib.unified_diff(
        (old or "").splitlines(keepends=True), new.splitlines(keepends=True),
        fromfile=path if old is not None else "/dev/null", tofile=path)))


def _write_step(name: str, path: str, old: str | None, new: str, why: str) -> Step:
    upload = Upload(path, to_bytes(new), mode=None, follow_symlink=True)
    return Step(name=name, reason=why, script=shell.script(upload.script_lines()),
                diff=text_diff(path, old, new), timeout_s=60, upload=upload)


def hosts_steps(facts: Facts) -> list[Step]:
    """/etc/hosts, and cloud-init's template when it manages the file; [] when both right.

    Pre-flight (hosts_problems) refuses the host before this runs when a file is unsafe.
    """
    steps = []
    new = render_hosts(facts.etc_hosts, facts.hostname)
    if new != facts.etc_hosts:
        why = ("/etc/hosts is missing" if facts.etc_hosts is None
               else f"{facts.hostname} is not in the managed block of /etc/hosts")
        steps.append(_write_step("hosts", HOSTS, facts.etc_hosts, new, why))
    path, tmpl = facts.cloud_hosts_template_path, facts.cloud_hosts_template
    if path and tmpl is not None:
        new_tmpl = render_hosts(tmpl, facts.hostname)
        if new_tmpl != tmpl:
            steps.append(_write_step("hosts-cloud-init", path, tmpl, new_tmpl,
                                     "cloud-init rewrites /etc/hosts at boot from this template"))
    return steps
