"""The lab's stand-in package index: small pure-Python wheels, laid out like upstream's.

Layout (fastdeploy-facts.md §2.1), under one root:
    <root>/cu118/ cu123/ cu126/ cu129/         paddlepaddle-gpu, every paired version, built
                                               for that CUDA (minimum driver embedded)
    <root>/fastdeploy-gpu-80_90/, -86_89/      fastdeploy-gpu of every `sm_split` release
    <root>/cu126/, cu129/ (per_cuda releases)  fastdeploy-gpu beside paddle, SM 80/86/89/90
Each index has a PEP 503 root page; each project page links its wheels with #sha256=.
Versions, pairings and minimum drivers come from provision/data/releases.yaml and cuda.yaml.

The wheels are zip files written here (no setuptools, no network), reproducible byte for
byte, so a rebuild from the same sources gives the same hashes. A stamp over the sources and
the data makes build_index a no-op when nothing changed.

CLI (helper processes run it as a daemon):
    python -m provision_lab.index build DEST
    python -m provision_lab.index serve --root DIR --bind ADDR --port PORT
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import json
import os
import posixpath
import re
import shutil
import signal
import sys
import threading
import urllib.parse
import zipfile
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
STANDINS = Path(__file__).resolve().parent / "standins"
STAMP = ".provision-lab-index.stamp"
MANIFEST = ".provision-lab-index.json"  # the index directories the last build made
REQUIRES_PYTHON = ">=3.9"
# 1980-01-01: the earliest time a zip can hold; fixed so every build is byte-identical.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class WheelSpec:
    """One wheel to build: which project and version, into which index, with what build facts."""

    index: str  # directory under the root: "cu126", "fastdeploy-gpu-80_90"
    project: str  # "paddlepaddle-gpu" or "fastdeploy-gpu"
    version: str
    package: str  # the top-level module inside: "paddle" or "fastdeploy"
    build_info: str  # JSON written as <package>/_lab_build.json


# --------------------------------------------------------------------------- what to build


def _load_data() -> tuple[dict, dict]:
    return (yaml.safe_load((DATA_DIR / "releases.yaml").read_text()),
            yaml.safe_load((DATA_DIR / "cuda.yaml").read_text()))


def paddle_commit(version: str) -> str:
    """A stable stand-in for the git commit a paddle release was built from."""
    return hashlib.sha1(f"paddlepaddle-gpu {version}".encode()).hexdigest()


def wheel_specs() -> list[WheelSpec]:
    """Every wheel the index holds, derived from the compatibility data."""
    releases, cuda = _load_data()
    cudas = {c["index"]: c for c in cuda["cuda"]}
    specs: list[WheelSpec] = []
    for paddle in sorted({r["paddle"] for r in releases["releases"].values()}):
        for c in cudas.values():
            info = {"version": paddle, "cuda": c["cuda"], "cuda_index": c["index"],
                    "min_driver": c["min_driver"], "commit": paddle_commit(paddle)}
            specs.append(WheelSpec(c["index"], "paddlepaddle-gpu", paddle, "paddle",
                                   json.dumps(info, sort_keys=True)))
    for version, release in releases["releases"].items():
        if release["layout"] == "sm_split":
            targets = [(index, sms, release["cuda"][0])
                       for index, sms in releases["sm_split_indexes"].items()]
        else:
            targets = [(index, releases["per_cuda_sms"], index) for index in release["cuda"]]
        for index, sms, cuda_index in targets:
            info = {"version": version, "paddle_version": release["paddle"],
                    "paddle_commit": paddle_commit(release["paddle"]),
                    "cuda": cudas[cuda_index]["cuda"], "index": index, "sms": list(sms),
                    "enable_mm": release.get("enable_mm", "dropped"),
                    "commit": hashlib.sha1(f"fastdeploy-gpu {version}".encode()).hexdigest()}
            specs.append(WheelSpec(index, "fastdeploy-gpu", version, "fastdeploy",
                                   json.dumps(info, sort_keys=True)))
    return specs


# --------------------------------------------------------------------------- wheels


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def _version_txt(info: dict) -> str:
    """fastdeploy/version.txt in upstream's shape (commit ids, Paddle and CUDA versions)."""
    return (f"fastdeploy GIT COMMIT ID: {info['commit']}\n"
            f"Paddle version: {info['paddle_version']}\n"
            f"Paddle GIT COMMIT ID: {info['paddle_commit']}\n"
            f"CUDA version: {info['cuda']}\n"
            "CXX compiler version: provision lab stand-in (pure Python)\n")


def _package_files(spec: WheelSpec) -> dict[str, bytes]:
    source = STANDINS / spec.package
    files = {
        path.relative_to(STANDINS).as_posix(): path.read_bytes()
        for path in sorted(source.rglob("*.py"))
    }
    files[f"{spec.package}/_lab_build.json"] = spec.build_info.encode() + b"\n"
    if spec.package == "fastdeploy":
        files["fastdeploy/version.txt"] = _version_txt(json.loads(spec.build_info)).encode()
    return files


def wheel_name(spec: WheelSpec) -> str:
    return f"{spec.project.replace('-', '_')}-{spec.version}-py3-none-any.whl"


def build_wheel(spec: WheelSpec, dest_dir: Path) -> Path:
    """Write the wheel for `spec` into dest_dir (PEP 427: METADATA, WHEEL, RECORD)."""
    dist_info = f"{spec.project.replace('-', '_')}-{spec.version}.dist-info"
    files = _package_files(spec)
    files[f"{dist_info}/METADATA"] = (
        "Metadata-Version: 2.1\n"
        f"Name: {spec.project}\n"
        f"Version: {spec.version}\n"
        f"Summary: provision lab stand-in for {spec.project} ({spec.index})\n"
        f"Requires-Python: {REQUIRES_PYTHON}\n"
    ).encode()
    files[f"{dist_info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: provision_lab.index\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n"
    )
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in files.items())
    files[f"{dist_info}/RECORD"] = (record + f"{dist_info}/RECORD,,\n").encode()
    path = dest_dir / wheel_name(spec)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            entry = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(entry, data)
    return path


# --------------------------------------------------------------------------- PEP 503 pages


def normalize(name: str) -> str:
    """PEP 503 project name normalization."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _page(title: str, links: list[str]) -> str:
    body = "\n".join(f"    {link}<br/>" for link in links)
    return (
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        '    <meta name="pypi:repository-version" content="1.0">\n'
        f"    <title>{html.escape(title)}</title>\n  </head>\n  <body>\n"
        f"    <h1>{html.escape(title)}</h1>\n{body}\n  </body>\n</html>\n"
    )


def _write_project_page(project_dir: Path, project: str) -> None:
    links = []
    for wheel in sorted(project_dir.glob("*.whl")):
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        href = f"{urllib.parse.quote(wheel.name)}#sha256={digest}"
        links.append(f'<a href="{href}" data-requires-python="{html.escape(REQUIRES_PYTHON)}">'
                     f"{html.escape(wheel.name)}</a>")
    (project_dir / "index.html").write_text(_page(f"Links for {project}", links))


# --------------------------------------------------------------------------- build_index


def _sources_digest() -> str:
    """Hash of everything a build depends on: stand-in sources, the data, this builder."""
    h = hashlib.sha256()
    inputs = [DATA_DIR / "releases.yaml", DATA_DIR / "cuda.yaml", Path(__file__).resolve()]
    inputs += sorted(p for p in STANDINS.rglob("*.py") if "__pycache__" not in p.parts)
    for path in inputs:
        h.update(path.relative_to(path.anchor).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def build_index(dest: Path) -> None:
    """Build every stand-in wheel into a PEP 503 tree under `dest`; a no-op when up to date.

    Only the index directories, the root page and the stamp are replaced: other entries
    under `dest` (the lab's apt repository under apt/) are left alone. The new tree is built
    beside the old one and moved in per directory, so a server reading `dest` meanwhile sees
    either the old or the new page of an index.
    """
    dest = Path(dest)
    digest = _sources_digest()
    stamp = dest / STAMP
    if stamp.exists() and stamp.read_text().strip() == digest:
        return
    dest.mkdir(parents=True, exist_ok=True)
    staging = dest / f".build-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    indexes: dict[str, set[str]] = {}
    for spec in wheel_specs():
        project_dir = staging / spec.index / normalize(spec.project)
        project_dir.mkdir(parents=True, exist_ok=True)
        build_wheel(spec, project_dir)
        indexes.setdefault(spec.index, set()).add(normalize(spec.project))
    for index, projects in indexes.items():
        for project in projects:
            _write_project_page(staging / index / project, project)
        links = [f'<a href="{p}/">{p}</a>' for p in sorted(projects)]
        (staging / index / "index.html").write_text(_page(f"Simple index: {index}", links))
    root_links = [f'<a href="{i}/">{i}</a>' for i in sorted(indexes)]
    (staging / "index.html").write_text(_page("provision lab package indexes", root_links))
    manifest = dest / MANIFEST
    old = json.loads(manifest.read_text()) if manifest.exists() else []
    for name in sorted(set(old) | set(indexes)) + ["index.html"]:
        target = dest / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        if (staging / name).exists():
            os.replace(staging / name, target)
    manifest.write_text(json.dumps(sorted(indexes)) + "\n")
    shutil.rmtree(staging, ignore_errors=True)
    stamp.write_text(digest + "\n")


# --------------------------------------------------------------------------- serving


class _StaticHandler(SimpleHTTPRequestHandler):
    """Files under the root only: no listings, no paths or links leading outside it, no logs."""

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass

    def translate_path(self, path: str) -> str:
        path = urllib.parse.unquote(path.split("?", 1)[0].split("#", 1)[0])
        parts = [p for p in posixpath.normpath(path).split("/") if p not in ("", ".", "..")]
        root = Path(self.directory).resolve()
        candidate = root.joinpath(*parts)
        resolved = candidate.resolve()
        if resolved != root and root not in resolved.parents:
            return str(root / ".provision-lab-forbidden")  # does not exist: 404
        if path.endswith("/") and candidate.is_dir():
            return str(candidate) + "/"
        return str(candidate)

    def list_directory(self, path):
        self.send_error(404, "No index page here")
        return None


def make_index_server(root: Path, bind: str, port: int) -> ThreadingHTTPServer:
    """A bound, not yet serving, static server for `root` (port 0: pick a free one)."""
    handler = partial(_StaticHandler, directory=str(Path(root).resolve()))
    server = ThreadingHTTPServer((bind, port), handler)
    server.daemon_threads = True
    return server


def serve_index(root: Path, bind: str, port: int) -> None:
    """Serve `root` on bind:port until SIGTERM or SIGINT (then return)."""
    server = make_index_server(root, bind, port)

    def stop(*_: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m provision_lab.index",
                                     description="The lab's stand-in package index.")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build every stand-in wheel and the PEP 503 pages")
    build.add_argument("dest", type=Path)
    serve = sub.add_parser("serve", help="serve a built index (static files) over HTTP")
    serve.add_argument("--root", type=Path, required=True)
    serve.add_argument("--bind", required=True, help="address to listen on, e.g. 10.77.0.1")
    serve.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    if args.command == "build":
        build_index(args.dest)
        print(args.dest)
    else:
        if not args.root.is_dir():
            parser.error(f"--root {args.root}: no such directory; run `build` first")
        serve_index(args.root, args.bind, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
