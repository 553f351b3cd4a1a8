"""Which exact FastDeploy (and Paddle) version a host gets, as the package index has them.

`fastdeploy_version` is a line (`2.3`: its newest patch) or an exact version (`2.3.4`).
The answer comes from the project pages the host fetched in the facts trip (pkgindex
parses them), never from the data alone: the data knows lines and their capabilities, the
index knows which patches and wheel tags exist. Pure: facts + settings + data in; the
problems name the page, what exists, and the fix, before any change.
"""

from __future__ import annotations

from dataclasses import dataclass

from provision import matrix, pkgindex
from provision.model import Facts, Problem, Settings


@dataclass(frozen=True)
class Choice:
    """The exact versions to install (None when a problem stops the host)."""

    fastdeploy: str | None
    paddle: str
    problems: tuple[Problem, ...] = ()


def _problem(host: str, key: str, value: str, message: str, fix: str,
             severity: str = "error") -> Problem:
    return Problem(host, key, value, message, fix, severity)  # type: ignore[arg-type]


def lines_for_python(python_version: str) -> list[str]:
    """Release lines whose recorded wheel tags install on this Python (for a fix text)."""
    out = []
    for rel in matrix.releases().values():
        wheels = pkgindex.parse_page("".join(
            f'<a href="fastdeploy_gpu-{rel.version}.0-{tag}.whl">' for tag in rel.wheel_tags))
        if any(pkgindex.fits(w, python_version) for w in wheels):
            out.append(rel.version)
    return out


def _unknown_lines(wheels: tuple, host: str) -> list[Problem]:
    """A line on the index that the data lacks (a 2.6?): the doubt it touches, as a warning."""
    known = matrix.releases()
    newest = max(known, key=matrix.version_key)
    seen = sorted({matrix.line_of(v) for v in pkgindex.versions(wheels, "fastdeploy-gpu")
                   if matrix.line_of(v) not in known
                   and matrix.version_key(matrix.line_of(v)) > matrix.version_key(newest)},
                  key=matrix.version_key)
    out = []
    for line in seen:
        doubt = next((d for d in matrix.doubts() if line in d.lines), None)
        note = f" (doubt {doubt.key}: {doubt.reading})" if doubt else ""
        out.append(_problem(host, "fastdeploy_version", line,
                            f"the index lists FastDeploy {line}.x, a line the data does not "
                            f"describe{note}",
                            f"add a \"{line}\" entry to provision/data/releases.yaml with its "
                            "source to use it", "warning"))
    return out


def choose(host: str, facts: Facts, settings: Settings, rel: matrix.Release,
           cuda_index: str, fd_index: str) -> Choice:
    """Resolve fastdeploy_version on the fastdeploy-gpu page; check Paddle's page too."""
    requested = settings.fastdeploy_version
    python = facts.python_version or "?"
    if facts.index_skipped:  # the exact pin is what the current release holds
        return Choice(requested, rel.paddle)
    base = settings.package_index_url
    fd_url = pkgindex.page_url(base, fd_index, "fastdeploy-gpu")
    pd_url = pkgindex.page_url(base, cuda_index, "paddlepaddle-gpu")
    problems: list[Problem] = []
    fd_page = facts.index_pages.get(fd_url)
    if fd_page is None or not fd_page.ok:
        why = fd_page.error if fd_page else "not fetched"
        installed = facts.installed.fastdeploy_version
        if installed and matrix.line_of(installed) == rel.version and (
                not matrix.is_exact(requested) or installed == requested):
            return Choice(installed, rel.paddle, (_problem(
                host, "package_index_url", fd_url,
                f"the host could not read the index ({why}); keeping the installed "
                f"fastdeploy-gpu {installed}", "check that the host reaches the index",
                "warning"),))
        return Choice(None, rel.paddle, (_problem(
            host, "package_index_url", fd_url,
            f"the host could not read the package index page ({why})",
            "make the index reachable from the host (DNS, proxy, firewall) or point "
            "package_index_url at a mirror of it"),))
    problems += _unknown_lines(fd_page.wheels, host)
    got = pkgindex.resolve(requested, fd_page.wheels, "fastdeploy-gpu", python, fd_url)
    if got.version is None:
        fitting = lines_for_python(python)
        fix = ("set fastdeploy_version to a version the index lists" if not got.tags else
               f"use Python {_python_of(got.tags)} (Ubuntu 22.04's python3, or the `python` "
               "setting)" + (f", or a line whose wheels fit Python {python}: "
                             f"{', '.join(fitting)}" if fitting else ""))
        problems.append(_problem(host, "fastdeploy_version", requested, got.error, fix))
        return Choice(None, rel.paddle, tuple(problems))
    if got.version not in rel.patches:
        problems.append(_problem(
            host, "fastdeploy_version", got.version,
            f"{got.version} is newer than the patches the data recorded for {rel.version} "
            f"({', '.join(rel.patches)}); assuming the line's capabilities",
            "add the patch to provision/data/releases.yaml once checked", "warning"))
    pd_page = facts.index_pages.get(pd_url)
    paddle = pkgindex.Resolved(None, f"the host could not read {pd_url} ("
                                     f"{pd_page.error if pd_page else 'not fetched'})")
    if pd_page is not None and pd_page.ok:
        paddle = pkgindex.resolve(rel.paddle, pd_page.wheels, "paddlepaddle-gpu", python, pd_url)
    if paddle.version is None:
        problems.append(_problem(host, "paddle_version", rel.paddle, paddle.error,
                                 f"FastDeploy {rel.version} pairs with paddlepaddle-gpu "
                                 f"{rel.paddle} (provision/data/releases.yaml); use a host "
                                 "Python it has wheels for, or another fastdeploy_version"))
        return Choice(None, rel.paddle, tuple(problems))
    return Choice(got.version, rel.paddle, tuple(problems))


def _python_of(tags: tuple[str, ...]) -> str:
    """'cp310-cp310-manylinux_2_28_x86_64' -> '3.10' (the Python those wheels are for)."""
    pys = sorted({t.split("-")[0] for t in tags if t.startswith("cp")})
    return ", ".join(f"{p[2]}.{p[3:]}" for p in pys) or "another version"
