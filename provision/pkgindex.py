"""What a PEP 503 package index offers: versions and wheel tags, read from project pages.

The pages are fetched on the host (in the facts trip, since the host is what must reach
the index) and parsed here, purely: a page is untrusted text, so only anchor targets that
look like wheel file names are kept, and nothing in it is ever executed or spliced
anywhere. `resolve` turns `fastdeploy_version` (exact `2.3.4`, or a line `2.3` meaning its
newest patch) into a version the index has with a wheel for the host's Python.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import unquote, urlsplit

_WHEEL = re.compile(
    r"^(?P<name>[A-Za-z0-9_.]+)-(?P<version>[A-Za-z0-9_.!+]+)(?:-\d[^-]*)?"
    r"-(?P<py>[^-]+)-(?P<abi>[^-]+)-(?P<plat>[^-]+)\.whl$")
_RELEASE = re.compile(r"^\d+(\.\d+)*$")  # no rc/dev/post: a line means its stable patches


@dataclass(frozen=True)
class Wheel:
    """One wheel file on a project page."""

    filename: str
    project: str  # normalized: "fastdeploy-gpu"
    version: str
    python: str  # "py3", "cp310", "cp310.cp311"
    abi: str
    platform: str

    @property
    def tag(self) -> str:
        return f"{self.python}-{self.abi}-{self.platform}"


@dataclass(frozen=True)
class Resolved:
    """The outcome of resolving a requested version against one project page."""

    version: str | None  # None: nothing fits; `error` says why
    error: str = ""
    tags: tuple[str, ...] = ()  # the chosen version's wheel tags


def normalize(name: str) -> str:
    """PEP 503 project name: 'FastDeploy_GPU' -> 'fastdeploy-gpu'."""
    return re.sub(r"[-_.]+", "-", name).lower()


def page_url(base: str, index: str, project: str) -> str:
    """<package_index_url>/<index>/<project>/, as PEP 503 names project pages."""
    return f"{base.rstrip('/')}/{index}/{project}/"


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.hrefs.append(href)


def parse_page(text: str) -> tuple[Wheel, ...]:
    """The wheels a PEP 503 project page links (sdists and anything else are ignored)."""
    parser = _Anchors()
    parser.feed(text)
    parser.close()
    wheels = []
    for href in parser.hrefs:
        name = posixpath.basename(unquote(urlsplit(href).path))
        match = _WHEEL.match(name)
        if match:
            wheels.append(Wheel(name, normalize(match["name"]), match["version"], match["py"],
                                match["abi"], match["plat"]))
    return tuple(wheels)


def fits(wheel: Wheel, python_version: str, arch: str = "x86_64") -> bool:
    """Whether pip on this CPython (Linux) would take the wheel, by its tags.

    >>> fits(parse_page('<a href="x-2.5.0-cp310-cp310-manylinux_2_28_x86_64.whl">')[0], "3.11.2")
    False
    """
    major, minor = (python_version.split(".") + ["0"])[:2]
    cp = f"cp{major}{minor}"
    pys = wheel.python.split(".")
    abis = wheel.abi.split(".")
    plats = wheel.platform.split(".")
    py_ok = any(p in (f"py{major}", f"py{major}{minor}", cp) for p in pys) or (
        "abi3" in abis and any(p.startswith(f"cp{major}") and p[2:].isdigit()
                               and int(p[3:] or 0) <= int(minor) for p in pys))
    abi_ok = any(a in ("none", "abi3", cp) for a in abis)
    plat_ok = any(p == "any" or (p.startswith(("linux", "manylinux")) and p.endswith(arch))
                  for p in plats)
    return py_ok and abi_ok and plat_ok


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def versions(wheels: tuple[Wheel, ...], project: str) -> dict[str, list[Wheel]]:
    """Stable versions of `project` on the page, oldest first, with their wheels."""
    found: dict[str, list[Wheel]] = {}
    for wheel in wheels:
        if wheel.project == normalize(project) and _RELEASE.match(wheel.version):
            found.setdefault(wheel.version, []).append(wheel)
    return dict(sorted(found.items(), key=lambda kv: _key(kv[0])))


def resolve(requested: str, wheels: tuple[Wheel, ...], project: str, python_version: str,
            where: str) -> Resolved:
    """An exact version the page has (a line: its newest patch) with a wheel for this Python.

    Errors list what exists, so the fix can be read off the message.
    """
    offered = versions(wheels, project)
    exact = requested.count(".") >= 2
    if exact:
        chosen = requested if requested in offered else None
    else:
        line = [v for v in offered if v.startswith(requested + ".")]
        chosen = line[-1] if line else None
    if chosen is None:
        listed = ", ".join(offered) or "nothing"
        return Resolved(None, f"{project} {requested} is not on {where} (it has: {listed})")
    tags = tuple(sorted({w.tag for w in offered[chosen]}))
    if not any(fits(w, python_version) for w in offered[chosen]):
        return Resolved(None, f"{project} {chosen} on {where} has wheels only for "
                              f"{', '.join(tags)}, none for Python {python_version} (x86_64 "
                              "Linux)", tags)
    return Resolved(chosen, "", tags)
