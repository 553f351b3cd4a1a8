"""Two tiny PEP 503 indexes on loopback for a real pip run (test helper).

"paddle": paddlepaddle-gpu 3.3.0 and fastdeploy-gpu 2.4.0 (which requires `fakedep`, found
only on the general index). "general": fakedep 1.0 plus DECOY fastdeploy-gpu 99.0.0 and
2.4.0 and paddlepaddle-gpu 99.0.0, whose import fails, so a build that took one cannot pass.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import zipfile
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def _wheel(dest: Path, project: str, version: str, files: dict[str, str],
           requires: tuple[str, ...] = ()) -> None:
    dist = project.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    meta = (f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n"
            + "".join(f"Requires-Dist: {r}\n" for r in requires))
    content = {**files, f"{info}/METADATA": meta,
               f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                "Tag: py3-none-any\n"}
    record = []
    for name, text in content.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{name},sha256={digest.decode()},{len(text.encode())}")
    content[f"{info}/RECORD"] = "\n".join(record + [f"{info}/RECORD,,"]) + "\n"
    path = dest / project / f"{dist}-{version}-py3-none-any.whl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as whl:
        for name, text in content.items():
            whl.writestr(name, text)
    (dest / project / "index.html").write_text("".join(
        f'<a href="{p.name}">{p.name}</a>\n' for p in sorted((dest / project).glob("*.whl"))))


def build(root: Path) -> None:
    paddle, general = root / "paddle", root / "general"
    _wheel(paddle, "paddlepaddle-gpu", "3.3.0", {"paddle/__init__.py": "__version__ = '3.3.0'\n"})
    ops = "fastdeploy/model_executor/ops/gpu/__init__.py"
    _wheel(paddle, "fastdeploy-gpu", "2.4.0",
           {"fastdeploy/__init__.py": "", "fastdeploy/model_executor/__init__.py": "",
            "fastdeploy/model_executor/ops/__init__.py": "", ops: ""}, ("fakedep",))
    _wheel(general, "fakedep", "1.0", {"fakedep.py": ""})
    decoy = "raise ImportError('DECOY from the general index')\n"
    for version in ("99.0.0", "2.4.0"):  # higher, and the very version pinned
        _wheel(general, "fastdeploy-gpu", version, {"fastdeploy/__init__.py": decoy})
    _wheel(general, "paddlepaddle-gpu", "99.0.0", {"paddle/__init__.py": decoy})


@contextmanager
def serve_indexes(tmp: Path):
    """(paddle index URL, general index URL), served until the block ends."""
    build(tmp / "www")
    handler = partial(SimpleHTTPRequestHandler, directory=str(tmp / "www"))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        yield f"http://127.0.0.1:{port}/paddle/", f"http://127.0.0.1:{port}/general/"
    finally:
        server.shutdown()
        server.server_close()
