"""Why a pip install failed, by cause: index unreachable, HTTP error, version missing, no wheel
for this Python.

pip says "No matching distribution found ... (from versions: none)" for all of these (an
HTTP 500 or 404 on the index, a closed or hung index, a Python the wheels were not built
for); the cause is only logged at debug level. So a failing install step runs PROBE on the
host, in the same exec: one GET of the project's index page, printed as one framed JSON
line. `classify` (pure) reads pip's output and that line and names the cause with the URL
and a fix. Shared by every step that runs pip.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from provision import shell

MARK = "provision-index-probe:"
PROBE = (
    "import json, sys, urllib.request, urllib.error\n"
    "url = sys.argv[1].rstrip('/') + '/' + sys.argv[2] + '/'\n"
    "out = {'url': url, 'status': None, 'error': None, 'files': []}\n"
    "try:\n"
    "    with urllib.request.urlopen(url, timeout=float(sys.argv[3])) as got:\n"
    "        out['status'] = got.status\n"
    "        body = got.read(4000000).decode('utf-8', 'replace')\n"
    "    import re\n"
    "    out['files'] = re.findall(r'>\\s*([^<>\\s]+\\.(?:whl|tar\\.gz|zip))\\s*<', body)\n"
    "except urllib.error.HTTPError as exc:\n"
    "    out['status'] = exc.code\n"
    "except Exception as exc:\n"
    "    out['error'] = type(exc).__name__ + ': ' + str(getattr(exc, 'reason', '') or exc)\n"
    f"print({MARK!r} + json.dumps(out))\n"
)
_UNREACHABLE = re.compile(r"NewConnectionError|Failed to establish a new connection|"
                          r"Connection refused|No route to host|Name or service not known|"
                          r"Temporary failure in name resolution|timed out|ReadTimeout", re.I)


@dataclass(frozen=True)
class Cause:
    """One failure cause: kind is unreachable, http, missing-project, version-missing,
    no-wheel-for-python or unknown."""

    kind: str
    message: str


def probe_line(python: str, index_url: str, project: str, timeout_s: int = 15) -> str:
    """Shell line that prints the probe's frame (never fails the script itself)."""
    return shell.cmd(python, "-c", PROBE, index_url, project, timeout_s) + " || true"


def read_probe(output: str) -> dict | None:
    """The last probe frame in the output, if any."""
    for line in reversed(output.splitlines()):
        if line.startswith(MARK):
            try:
                return json.loads(line[len(MARK):])
            except ValueError:
                return None
    return None


def wheel_tags(filename: str) -> tuple[str, str, str] | None:
    """(version, python tag, abi tag) of a wheel file name, None for other files.

    >>> wheel_tags("paddlepaddle_gpu-3.3.1-cp310-cp310-linux_x86_64.whl")
    ('3.3.1', 'cp310', 'cp310')
    """
    if not filename.endswith(".whl"):
        return None
    parts = filename[:-4].split("-")
    if len(parts) < 5:
        return None
    return parts[1], parts[-3], parts[-2]


def fits_python(py_tag: str, abi: str, python_version: str) -> bool:
    """Whether a wheel's tags let this Python install it (platform not judged)."""
    major, minor = (python_version.split(".") + ["0"])[:2]
    ours = {f"cp{major}{minor}", f"py{major}{minor}", f"py{major}"}
    tags = set(py_tag.split("."))
    if tags & ours:
        return True
    if abi == "abi3":
        return any(t.startswith(f"cp{major}") and int(t[2 + len(major):] or 0) <= int(minor)
                   for t in tags if t[2:].isdigit())
    return False


def classify(output: str, requirement: str, python_version: str | None) -> Cause:
    """The cause of a failed `pip install requirement` from its output (and the probe's)."""
    probe = read_probe(output)
    project, _, version = requirement.partition("==")
    url = (probe or {}).get("url") or "the index"
    if probe and probe.get("error"):
        return Cause("unreachable", f"the package index is unreachable from the host: {url}: "
                     f"{probe['error']}. Fix: check package_index_url, and that the host can "
                     "reach it (firewall, proxy, DNS)")
    if probe is None and _UNREACHABLE.search(output):
        return Cause("unreachable", "the package index is unreachable from the host (pip: "
                     "connection failed). Fix: check package_index_url and the host's network")
    status = (probe or {}).get("status")
    if status == 404:
        return Cause("missing-project", f"the index has no {project} page: GET {url} answered "
                     "HTTP 404. Fix: check package_index_url (and the CUDA build it leads to)")
    if status is not None and status != 200:
        return Cause("http", f"the package index failed: GET {url} answered HTTP {status}. "
                     "Fix: the index is having trouble; retry later or point "
                     "package_index_url at a working mirror")
    if probe is None:
        return Cause("unknown", f"pip could not install {requirement}")
    wheels = [t for t in (wheel_tags(f) for f in probe.get("files") or ()) if t]
    versions = sorted({t[0] for t in wheels})
    if version and version not in versions:
        listed = ", ".join(versions) or "none"
        return Cause("version-missing", f"{url} does not list {project} {version} (it lists: "
                     f"{listed}). Fix: choose a fastdeploy_version whose packages this index "
                     "has, or an index that has this one")
    pythons = sorted({t[1] for t in wheels if t[0] == version})
    if python_version and not any(fits_python(t[1], t[2], python_version)
                                  for t in wheels if t[0] == version):
        return Cause("no-wheel-for-python", f"{url} has {project} {version} only for "
                     f"{', '.join(pythons)}; this host has Python {python_version}. Fix: use a "
                     "host (or `python` setting) with a supported Python, or a "
                     "fastdeploy_version built for this one")
    return Cause("unknown", f"pip could not install {requirement} although {url} lists "
                 "a wheel for this Python; see the output above (a dependency may be missing: "
                 "check pip_extra_index_url)")
