"""The lab's two package indexes, built from the lab's recorded upstream facts only.

Paddle index (port 8700), laid out as upstream's https://www.paddlepaddle.org.cn/packages/stable/:
    <root>/packages/stable/<index>/<project>/   for every index path, project, version and wheel
                                               tag in upstream/paddle_indexes.yaml, plus Paddle's
                                               own dependencies (C1)
General index (port 8701), a PyPI stand-in ("site mirror") at /simple/ (PEP 503):
    fastdeploy-gpu's ordinary dependencies (they exist only there), Paddle's dependencies, DECOY
    fastdeploy-gpu and paddlepaddle-gpu 99.0.0, and any wheel dropped into the extra directory
    (paths.GENERAL_WHEELS), listed on every request.
    The same index is served over HTTPS as the public one (--tls-port, for hosts without a
    site mirror): pages at https://pypi.org/simple/, files linked on
    https://files.pythonhosted.org/files/, with the lab CA's certificate for both names (tls.py).
Stand-in wheels carry their build facts (_lab_build.json): versions, CUDA build, SMs and, for
fastdeploy-gpu, the release's behaviour (upstream/releases.yaml). With pad_mb > 0 the wheels a
lab host can install (PADDED_TAGS) carry incompressible padding, as the real ones are large:
paddlepaddle-gpu pad_mb, fastdeploy-gpu pad_mb / 4. A stamp over every input (the padding
included) makes a rebuild a no-op when nothing changed.
The same process serves the model hub (hub.py, --hub-port); every server's responses go
through one rate limit and one access log (accounting.py).

CLI (the lab runs the server as a daemon):
    python -m provision_lab.index build PADDLE_ROOT GENERAL_ROOT [--pad-mb P]
    python -m provision_lab.index serve --root DIR --bind ADDR --port PORT
        [--general-root DIR --general-extra DIR --general-port PORT]
        [--tls-port PORT --tls-cert FILE --tls-key FILE --tls-files-url URL]
        [--hub-port PORT --hub-weights-mb W] [--rate-mbps R] [--access-log FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import os
import posixpath
import random
import re
import shutil
import signal
import socket
import ssl
import sys
import threading
import urllib.parse
from functools import lru_cache, partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from provision_lab import upstream
from provision_lab.accounting import MB, AccessLog, MeteredHandlerMixin, TokenBucket, meter
from provision_lab.hub import HubHandler
from provision_lab.wheels import Wheel, write_wheel

STANDINS = Path(__file__).resolve().parent / "standins"
STAMP = ".provision-lab-index.stamp"
MANIFEST = ".provision-lab-index.json"  # the top-level entries the last build made
PADDLE_PATH = ("packages", "stable")
DECOY_VERSION = "99.0.0"
DECOY_TEXT = ("{project} {version} is a DECOY from the general index: {project} must come "
              "from the Paddle index only (pip install ... -i <Paddle index>)")
_BUILD_INPUTS = ("index.py", "wheels.py", "upstream.py")
# Only wheels a lab host (Python 3.11) can install are padded: padding the other Python tags
# would cost disk (tens of wheels) and change no download a host makes.
PADDED_TAGS = ("cp311-cp311-linux_x86_64", "py3-none-any")
PAD_FILE = "_lab_pad.bin"


# --------------------------------------------------------------------------- what to build


def commit_of(project: str, version: str) -> str:
    """A stable stand-in for the git commit a release was built from."""
    return hashlib.sha1(f"{project} {version}".encode()).hexdigest()


def _standin_files(package: str, build_info: dict) -> dict[str, bytes]:
    source = STANDINS / package
    files = {path.relative_to(STANDINS).as_posix(): path.read_bytes()
             for path in sorted(source.rglob("*.py"))}
    files[f"{package}/_lab_build.json"] = json.dumps(build_info, sort_keys=True).encode() + b"\n"
    return files


def _version_txt(info: dict) -> bytes:
    """fastdeploy/version.txt in upstream's shape (commit ids, Paddle and CUDA versions)."""
    return (f"fastdeploy GIT COMMIT ID: {info['commit']}\n"
            f"Paddle version: {info['paddle_version']}\n"
            f"Paddle GIT COMMIT ID: {info['paddle_commit']}\n"
            f"CUDA version: {info['cuda']}\n"
            "CXX compiler version: provision lab stand-in (pure Python)\n").encode()


@lru_cache(maxsize=2)
def pad_bytes(size: int) -> bytes:
    """`size` incompressible bytes, the same on every build (the index rebuilds reproducibly)."""
    return random.Random(f"provision-lab-pad/{size}").randbytes(size)


def _padded(wheel: Wheel, package: str, pad_mb: float) -> Wheel:
    """The wheel with pad_mb MB of padding inside its package (stored, not deflated), when
    a lab host could install it; else as it is."""
    size = int(pad_mb * MB)
    if size <= 0 or wheel.tag not in PADDED_TAGS:
        return wheel
    name = f"{package}/{PAD_FILE}"
    return Wheel(wheel.project, wheel.version, wheel.tag, {**wheel.files, name: pad_bytes(size)},
                 wheel.requires, wheel.summary, (name,))


def paddle_wheel(listed: upstream.IndexFile, pad_mb: float = 0) -> Wheel:
    cuda = upstream.paddle_indexes()[listed.index]["cuda"]
    info = {"version": listed.version, "cuda": cuda, "cuda_index": listed.index,
            "min_driver": upstream.min_driver(cuda),
            "commit": commit_of("paddlepaddle-gpu", listed.version)}
    wheel = Wheel(listed.project, listed.version, listed.tag, _standin_files("paddle", info),
                  tuple(upstream.paddle_requires()), "provision lab stand-in for paddlepaddle-gpu")
    return _padded(wheel, "paddle", pad_mb)


def fastdeploy_wheel(listed: upstream.IndexFile, pad_mb: float = 0) -> Wheel:
    entry = upstream.paddle_indexes()[listed.index]
    paddle = upstream.paddle_for(listed.version)
    info = {"version": listed.version, "paddle_version": paddle,
            "paddle_commit": commit_of("paddlepaddle-gpu", paddle), "cuda": entry["cuda"],
            "index": listed.index, "sms": list(entry["sms"]),
            "behaviour": upstream.release_behaviour(listed.version),
            "imports_at_start": sorted(upstream.imported_at_start().values()),
            "commit": commit_of("fastdeploy-gpu", listed.version)}
    files = _standin_files("fastdeploy", info)
    files["fastdeploy/version.txt"] = _version_txt(info)
    wheel = Wheel(listed.project, listed.version, listed.tag, files,
                  tuple(upstream.fastdeploy_requires()),
                  "provision lab stand-in for fastdeploy-gpu")
    return _padded(wheel, "fastdeploy", pad_mb / 4)


def dependency_wheel(spec: str) -> Wheel:
    """A stand-in for an ordinary dependency: its real name, a version that satisfies `spec`,
    and one module (the one upstream imports, else the name with - and . as _)."""
    name, version = upstream.requirement(spec)
    module = upstream.imported_at_start().get(name) or re.sub(r"[-.]", "_", name).lower()
    text = (f'"""provision lab stand-in for {name} {version} (no code)."""\n'
            f'__version__ = "{version}"\n')
    return Wheel(name, version, "py3-none-any", {f"{module}/__init__.py": text.encode()},
                 summary=f"provision lab stand-in for {name}")


def decoy_wheel(project: str, package: str) -> Wheel:
    """Under a GPU package's real name, on the general index: importing it fails, loudly."""
    message = DECOY_TEXT.format(project=project, version=DECOY_VERSION)
    text = f'"""{message}"""\nraise ImportError({message!r})\n'
    return Wheel(project, DECOY_VERSION, "py3-none-any", {f"{package}/__init__.py": text.encode()},
                 summary=f"DECOY {project} on the provision lab's general index")


def paddle_index_wheels(pad_mb: float = 0) -> list[tuple[str, Wheel]]:
    """(index path, wheel) for everything the Paddle index serves."""
    made = {"paddlepaddle-gpu": paddle_wheel, "fastdeploy-gpu": fastdeploy_wheel}
    result = [(f.index, made[f.project](f, pad_mb)) for f in upstream.listed_files()]
    deps = [dependency_wheel(spec) for spec in upstream.paddle_requires()]
    result += [(index, dep) for index in upstream.paddle_indexes() for dep in deps]
    return result


def general_index_wheels() -> list[Wheel]:
    """Everything the general index serves besides the extra directory."""
    specs = {upstream.requirement(s)[0]: s
             for s in upstream.paddle_requires() + upstream.fastdeploy_requires()}
    return [dependency_wheel(spec) for spec in specs.values()] + [
        decoy_wheel("fastdeploy-gpu", "fastdeploy"), decoy_wheel("paddlepaddle-gpu", "paddle")]


# --------------------------------------------------------------------------- PEP 503 pages


def normalize(name: str) -> str:
    """PEP 503 project name normalization."""
    return re.sub(r"[-_.]+", "-", name).lower()


def project_of(filename: str) -> str | None:
    """The normalized project of a wheel or sdist file name; None for anything else."""
    if filename.endswith(".whl"):
        return normalize(filename.split("-", 1)[0])
    if filename.endswith((".tar.gz", ".zip")):
        return normalize(filename.rsplit("-", 1)[0]) if "-" in filename else None
    return None


def _page(title: str, links: list[str]) -> str:
    body = "\n".join(f"    {link}<br/>" for link in links)
    return (
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        '    <meta name="pypi:repository-version" content="1.0">\n'
        f"    <title>{html.escape(title)}</title>\n  </head>\n  <body>\n"
        f"    <h1>{html.escape(title)}</h1>\n{body}\n  </body>\n</html>\n"
    )


def _file_link(base: str, path: Path) -> str:
    """A link to `path` as base + its quoted name (base: relative, or an absolute URL)."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    href = html.escape(base + urllib.parse.quote(path.name))
    return f'<a href="{href}#sha256={digest}">{html.escape(path.name)}</a>'


def _write_project_page(project_dir: Path, project: str) -> None:
    links = [_file_link("", w) for w in sorted(project_dir.glob("*.whl"))]
    (project_dir / "index.html").write_text(_page(f"Links for {project}", links))


# --------------------------------------------------------------------------- building


def _sources_digest(pad_mb: float = 0) -> str:
    """Hash of everything a build depends on: stand-ins, recorded data, the builders, the
    padding."""
    here = Path(__file__).resolve().parent
    h = hashlib.sha256(f"pad_mb={float(pad_mb)}".encode() if pad_mb else b"")
    inputs = [here / name for name in _BUILD_INPUTS]
    inputs += sorted(upstream.UPSTREAM_DIR.glob("*.yaml"))
    inputs += sorted(p for p in STANDINS.rglob("*.py") if "__pycache__" not in p.parts)
    for path in inputs:
        h.update(path.relative_to(here).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def _up_to_date(dest: Path, pad_mb: float = 0) -> bool:
    stamp = dest / STAMP
    return stamp.exists() and stamp.read_text().strip() == _sources_digest(pad_mb)


def _swap_in(dest: Path, staging: Path, entries: list[str], pad_mb: float = 0) -> None:
    """Replace `entries` under dest by staging's, dropping what the last build made besides.
    Other entries under dest (the lab's apt repository under apt/) are left alone."""
    manifest = dest / MANIFEST
    old = json.loads(manifest.read_text()) if manifest.exists() else []
    for name in sorted(set(old) | set(entries)):
        target = dest / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        if (staging / name).exists():
            os.replace(staging / name, target)
    manifest.write_text(json.dumps(sorted(entries)) + "\n")
    shutil.rmtree(staging, ignore_errors=True)
    (dest / STAMP).write_text(_sources_digest(pad_mb) + "\n")


def build_index(dest: Path, pad_mb: float = 0) -> None:
    """The Paddle index tree under dest/packages/stable/ (wheels padded by pad_mb MB); a
    no-op when up to date."""
    dest = Path(dest)
    if _up_to_date(dest, pad_mb):
        return
    dest.mkdir(parents=True, exist_ok=True)
    staging = dest / f".build-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    base = staging.joinpath(*PADDLE_PATH)
    indexes: dict[str, set[str]] = {}
    for index, wheel in paddle_index_wheels(pad_mb):
        write_wheel(wheel, base / index / normalize(wheel.project))
        indexes.setdefault(index, set()).add(normalize(wheel.project))
    for index, projects in indexes.items():
        for project in projects:
            _write_project_page(base / index / project, project)
        links = [f'<a href="{p}/">{p}</a>' for p in sorted(projects)]
        (base / index / "index.html").write_text(_page(f"Simple index: {index}", links))
    links = [f'<a href="{i}/">{i}</a>' for i in sorted(indexes)]
    (base / "index.html").write_text(_page("provision lab: Paddle package indexes", links))
    _swap_in(dest, staging, [PADDLE_PATH[0]], pad_mb)


def build_general(dest: Path) -> None:
    """The general index's own wheels, flat under dest/files/; a no-op when up to date."""
    dest = Path(dest)
    if _up_to_date(dest):
        return
    dest.mkdir(parents=True, exist_ok=True)
    staging = dest / f".build-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    for wheel in general_index_wheels():
        write_wheel(wheel, staging / "files")
    _swap_in(dest, staging, ["files"])


# --------------------------------------------------------------------------- serving


class _StaticHandler(MeteredHandlerMixin, SimpleHTTPRequestHandler):
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


class _GeneralHandler(MeteredHandlerMixin, BaseHTTPRequestHandler):
    """A PEP 503 index over flat directories of files, listed afresh on every request:
    /simple/, /simple/<project>/ and /files/<name>. Project pages link files as
    files_url + name: relative by default, an absolute URL where the files have their own
    host name (as PyPI's are on files.pythonhosted.org)."""

    directories: tuple[Path, ...] = ()
    files_url = "../../files/"

    def log_message(self, format, *args):  # noqa: A002
        pass

    def _files(self) -> dict[str, Path]:
        found: dict[str, Path] = {}
        for directory in self.directories:
            if directory.is_dir():
                for path in sorted(directory.iterdir()):
                    if path.is_file() and project_of(path.name):
                        found.setdefault(path.name, path)
        return found

    def _send(self, status: int, body: bytes, kind: str = "text/html") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):  # noqa: N802 - http.server's naming
        path = urllib.parse.unquote(self.path.split("?", 1)[0])
        files = self._files()
        parts = [p for p in path.split("/") if p]
        if parts == ["simple"]:
            projects = sorted({project_of(name) for name in files})
            links = [f'<a href="{p}/">{p}</a>' for p in projects]
            self._send(200, _page("provision lab: general index", links).encode())
        elif len(parts) == 2 and parts[0] == "simple":
            project = normalize(parts[1])
            mine = [p for name, p in sorted(files.items()) if project_of(name) == project]
            if not mine:
                self._send(404, b"Not Found", "text/plain")
                return
            links = [_file_link(self.files_url, p) for p in mine]
            self._send(200, _page(f"Links for {project}", links).encode())
        elif len(parts) == 2 and parts[0] == "files" and parts[1] in files:
            self._send(200, files[parts[1]].read_bytes(), "application/octet-stream")
        else:
            self._send(404, b"Not Found", "text/plain")

    do_HEAD = do_GET


def _server(handler, bind: str, port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((bind, port), handler)
    server.daemon_threads = True
    return server


def make_index_server(root: Path, bind: str, port: int) -> ThreadingHTTPServer:
    """A bound, not yet serving, static server for `root` (port 0: pick a free one)."""
    return _server(partial(_StaticHandler, directory=str(Path(root).resolve())), bind, port)


class _TLSServer(ThreadingHTTPServer):
    """HTTPS: each connection's TLS handshake runs in its own thread, bounded in time, so a
    client that stalls or refuses the certificate (a host with another CA) holds up no one."""

    daemon_threads = True
    HANDSHAKE_TIMEOUT_S = 30.0

    def __init__(self, address: tuple[str, int], handler, context: ssl.SSLContext) -> None:
        self.context = context
        super().__init__(address, handler)

    def finish_request(self, request: socket.socket, client_address) -> None:
        request.settimeout(self.HANDSHAKE_TIMEOUT_S)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            print(f"tls: {client_address[0]}: handshake failed: {exc}", file=sys.stderr)
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            tls.close()


def make_general_server(directories: list[Path], bind: str, port: int,
                        tls: tuple[Path, Path] | None = None,
                        files_url: str | None = None) -> ThreadingHTTPServer:
    """A bound, not yet serving, general index over `directories` (earlier ones win a name);
    over HTTPS with tls=(certificate, key), its file links under files_url when given."""
    attributes: dict = {"directories": tuple(Path(d) for d in directories)}
    if files_url:
        attributes["files_url"] = files_url
    handler = type("GeneralHandler", (_GeneralHandler,), attributes)
    if tls is None:
        return _server(handler, bind, port)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(tls[0]), str(tls[1]))
    return _TLSServer((bind, port), handler, context)


def make_hub_server(bind: str, port: int, weights_mb: float) -> ThreadingHTTPServer:
    """A bound, not yet serving, model hub (hub.py) whose models have weights_mb MB of
    weights."""
    server = _server(HubHandler, bind, port)
    server.hub_weights_mb = float(weights_mb)
    return server


def serve(servers: list[ThreadingHTTPServer]) -> None:
    """Serve until SIGTERM or SIGINT (then return)."""
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    for thread in threads:
        thread.start()
    stop.wait()
    for server in servers:
        server.shutdown()
        server.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m provision_lab.index",
                                     description="The lab's stand-in package indexes.")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build the Paddle index and the general index")
    build.add_argument("paddle_root", type=Path)
    build.add_argument("general_root", type=Path)
    build.add_argument("--pad-mb", type=float, default=0.0,
                       help="pad paddlepaddle-gpu by this many MB, fastdeploy-gpu by a quarter")
    run = sub.add_parser("serve", help="serve built indexes over HTTP")
    run.add_argument("--root", type=Path, required=True, help="the Paddle index's root")
    run.add_argument("--bind", required=True, help="address to listen on, e.g. 10.213.7.1")
    run.add_argument("--port", type=int, required=True)
    run.add_argument("--general-root", type=Path, help="the general index's built root")
    run.add_argument("--general-extra", type=Path, help="extra wheels for the general index")
    run.add_argument("--general-port", type=int)
    run.add_argument("--tls-port", type=int, help="also serve the general index over HTTPS")
    run.add_argument("--tls-cert", type=Path, help="the HTTPS certificate (PEM)")
    run.add_argument("--tls-key", type=Path, help="its private key (PEM)")
    run.add_argument("--tls-files-url", help="absolute URL the HTTPS pages link files under")
    run.add_argument("--hub-port", type=int, help="also serve the model hub")
    run.add_argument("--hub-weights-mb", type=float, default=1.0,
                     help="MB of weight shards per hub model")
    run.add_argument("--rate-mbps", type=float, default=0.0,
                     help="total MB/s for everything served, all ports together (0: unlimited)")
    run.add_argument("--access-log", type=Path, help="append one JSON line per request here")
    args = parser.parse_args(argv)
    if args.command == "build":
        build_index(args.paddle_root, args.pad_mb)
        build_general(args.general_root)
        print(args.paddle_root, args.general_root)
        return 0
    if not args.root.is_dir():
        parser.error(f"--root {args.root}: no such directory; run `build` first")
    servers = {"paddle": make_index_server(args.root, args.bind, args.port)}
    if args.general_root:
        directories = [args.general_root / "files"] + (
            [args.general_extra] if args.general_extra else [])
        servers["general"] = make_general_server(directories, args.bind, args.general_port)
        if args.tls_port:
            if not (args.tls_cert and args.tls_key):
                parser.error("--tls-port needs --tls-cert and --tls-key")
            servers["pypi"] = make_general_server(directories, args.bind, args.tls_port,
                                                  (args.tls_cert, args.tls_key),
                                                  args.tls_files_url)
    if args.hub_port:
        servers["hub"] = make_hub_server(args.bind, args.hub_port, args.hub_weights_mb)
    log, bucket = AccessLog(args.access_log), TokenBucket(args.rate_mbps * MB)
    for kind, server in servers.items():
        meter(server, kind, log, bucket)
    serve(list(servers.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
