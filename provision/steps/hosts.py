"""Step: the hostname resolves, via a marked block in /etc/hosts (reference §6 problem #1).

FastDeploy calls gethostbyname(gethostname()) at start and dies when it fails.
Decision: the block maps the hostname to 127.0.0.1 as the issue asks. It is appended
after every existing line, so where Debian/Ubuntu already map it to 127.0.1.1 that line
is found first and keeps its meaning; we only guarantee resolution. Every line outside
the block is kept byte for byte. On cloud images whose cloud-init rewrites /etc/hosts
at boot (manage_etc_hosts), the same block goes into cloud-init's template too.
"""

from __future__ import annotations

import difflib

from provision import shell
from provision.model import Facts, Step

BEGIN = "# BEGIN provision managed"
END = "# END provision managed"
ADDRESS = "127.0.0.1"
# For a host that has no /etc/hosts at all (debootstrap rootfs): localhost must resolve too.
DEFAULT_HEAD = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"


def block(hostname: str) -> str:
    names = [hostname]
    if "." in hostname:
        names.append(hostname.split(".", 1)[0])
    return f"{BEGIN}\n{ADDRESS}\t{' '.join(names)}\n{END}\n"


def render_hosts(current: str | None, hostname: str) -> str:
    """The file with our block in place (replaced where it was, else appended).

    >>> render_hosts("10.0.0.5 db\\n", "gpu1")
    '10.0.0.5 db\\n# BEGIN provision managed\\n127.0.0.1\\tgpu1\\n# END provision managed\\n'
    """
    if current is None:
        return DEFAULT_HEAD + block(hostname)
    lines = current.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.strip() == BEGIN]
    ends = [i for i, line in enumerate(lines) if line.strip() == END]
    if starts and ends and ends[-1] > starts[0]:
        return "".join(lines[:starts[0]]) + block(hostname) + "".join(lines[ends[-1] + 1:])
    if current and not current.endswith("\n"):
        current += "\n"
    return current + block(hostname)


def text_diff(path: str, old: str | None, new: str) -> str:
    """A unified diff for --diff (a missing file diffs against /dev/null)."""
    return "".join(difflib.unified_diff(
        (old or "").splitlines(keepends=True), new.splitlines(keepends=True),
        fromfile=path if old is not None else "/dev/null", tofile=path))


def _write_step(name: str, path: str, old: str | None, new: str, why: str) -> Step:
    return Step(name=name, reason=why, script=shell.script([shell.write_file(path, new, "0644")]),
                diff=text_diff(path, old, new), timeout_s=60)


def hosts_steps(facts: Facts) -> list[Step]:
    """/etc/hosts, and cloud-init's template when it manages the file; [] when both right."""
    steps = []
    new = render_hosts(facts.etc_hosts, facts.hostname)
    if new != facts.etc_hosts:
        why = ("/etc/hosts is missing" if facts.etc_hosts is None
               else f"{facts.hostname} is not in the managed block of /etc/hosts")
        steps.append(_write_step("hosts", "/etc/hosts", facts.etc_hosts, new, why))
    path, tmpl = facts.cloud_hosts_template_path, facts.cloud_hosts_template
    if path and tmpl is not None:
        new_tmpl = render_hosts(tmpl, facts.hostname)
        if new_tmpl != tmpl:
            steps.append(_write_step("hosts-cloud-init", path, tmpl, new_tmpl,
                                     "cloud-init rewrites /etc/hosts at boot from this template"))
    return steps
