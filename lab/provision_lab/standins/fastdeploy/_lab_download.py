"""Weights from the lab's model hub, the way upstream's download behaves at service start.

Upstream (fastdeploy-facts.md §5.3) downloads a model that is not a local path inside the
api_server process, before any port opens, into ${FD_MODEL_CACHE:-$HOME}/<org>/<name>,
resumably. Here: the hub's manifest lists the files with size and sha256; each is fetched
into <file>.part (continued with a Range request when a .part is there), checked against
both, and only then renamed into place. config.json comes last, so its presence is what
"downloaded" means: a partial download is never mistaken for a complete one, and a host
seeded with the weights (config.json present) downloads nothing. Standard library only (the
release venv has nothing else to lean on). Every network wait is bounded (TIMEOUT_S).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.error
import urllib.request

TIMEOUT_S = 30.0
CHUNK = 1 << 20


class NotOnHub(Exception):
    """The hub has no such model (upstream: "The <rev> of <model> is not exist...")."""


def _open(url: str, offset: int = 0):
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                  timeout=TIMEOUT_S)


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _fetch(url: str, entry: dict, target: str, log) -> int:
    """One file into target via target.part; returns the bytes fetched this time."""
    part = target + ".part"
    offset = os.path.getsize(part) if os.path.exists(part) else 0
    if offset > entry["size"]:
        offset = 0
    if offset:
        log(f"Resuming {entry['name']} at {offset} of {entry['size']} bytes")
    fetched = 0
    with _open(url, offset) as response:
        if offset and response.status != 206:
            offset = 0  # the server sent the whole file: start over
        with open(part, "ab" if offset else "wb") as out:
            for block in iter(lambda: response.read(CHUNK), b""):
                out.write(block)
                fetched += len(block)
    if os.path.getsize(part) != entry["size"] or _sha256(part) != entry["sha256"]:
        os.remove(part)
        raise OSError(f"{entry['name']} from {url}: size or sha256 differs from the hub's "
                      "manifest; removed, the next start downloads it again")
    os.replace(part, target)
    return fetched


def download(hub: str, model: str, local: str, log) -> int:
    """Every file of `model` ("<org>/<name>") from the hub into `local`; returns bytes fetched.
    Raises NotOnHub for a model the hub lacks, OSError for any other failure."""
    try:
        with _open(f"{hub}{model}/manifest.json") as response:
            files = json.load(response)["files"]
    except urllib.error.HTTPError as e:
        if e.code == 404:
            raise NotOnHub(model) from None
        raise OSError(f"model hub {hub}: HTTP {e.code} for {model}") from None
    files.sort(key=lambda f: f["name"] == "config.json")  # config.json last: "complete"
    os.makedirs(local, exist_ok=True)
    started, total = time.monotonic(), 0
    for entry in files:
        name = os.path.basename(entry["name"])
        target = os.path.join(local, name)
        if name != "config.json" and os.path.exists(target) \
                and os.path.getsize(target) == entry["size"]:
            continue  # fetched and verified by an earlier start
        total += _fetch(f"{hub}{model}/{name}", entry, target, log)
    log(f"Downloaded {model}: {total} bytes in {time.monotonic() - started:.1f}s to {local}")
    return total
