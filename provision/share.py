"""Upstream bytes once per fleet: the first host of a run that needs a release (or the
weights) fetches it from upstream; every other host that needs the same thing copies it from
that host, checked by a digest on both ends.

Why: a real release venv is gigabytes of wheels and the default model's weights about 60 GB.
N hosts each fetching them from a far upstream pay N times the bytes and, behind one
upstream link, N times the wall time. The copy goes host to host over the hosts' own network
where they reach each other (provision/direct_copy.py: a one-shot sender, a one-time token
given to both ends over SSH), else through this machine's SSH connections
(provision/relay.py), which need nothing the run does not already have.

Only what is identical is shared: a release between hosts with the same release name
(versions, CUDA build, SM variant), Python and paths, so the copied venv is byte for byte what
the host would have built (and it still passes the host's own build checks: Paddle sees this
host's GPU, the compiled ops import); the weights for the same model and cache path. A copy
that fails for any reason (the source gone, a digest that differs, a full disk) falls back to
fetching from upstream: sharing never makes a host fail that would have converged alone.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from provision import shell
from provision.model import HostSpec, Settings

DIGEST_MARK = "provision-digest:"
PATH_MARK = "provision-share-path:"

# A digest of a directory tree: every file's mode, path and SHA-256 and every symlink's
# target, in a fixed order, so two copies agree exactly when their contents do.
_DIGEST_FN = (
    "provision_digest() { ( cd \"$1\" && { "
    "find . \\( -type f -printf '%m %p\\n' \\) -o \\( -type l -printf 'l %p -> %l\\n' \\) "
    "| LC_ALL=C sort; find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum; } "
    "| sha256sum | cut -d' ' -f1 ); }"
)


def digest_of(output: str) -> str | None:
    """The digest a script printed (untrusted text: only 64 hex digits are taken)."""
    found = re.search(rf"^{DIGEST_MARK} ([0-9a-f]{{64}})$", output, re.M)
    return found.group(1) if found else None


@dataclass(frozen=True)
class Source:
    """A host that holds a complete copy, and how to reach it."""

    spec: HostSpec
    settings: Settings

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class Claim:
    """What a host does about one shared thing: fetch it (and say `done`), or copy it."""

    fetch: bool  # this host fetches from upstream
    owner: bool = False  # ...and the others wait for it: it must call FleetShare.done
    source: Source | None = None  # copy from here (fetch is False)
    waited_s: float = 0.0


@dataclass
class _Entry:
    owner: str
    state: str = "fetching"  # fetching | ready | failed
    source: Source | None = None


@dataclass
class FleetShare:
    """Who fetches what, for one run of the tool over many hosts (thread-safe)."""

    _cond: threading.Condition = field(default_factory=threading.Condition)
    _entries: dict = field(default_factory=dict)

    def claim(self, key: tuple, host: str, wait_s: float, abort: threading.Event,
              say: Callable[[str], None] = lambda _: None) -> Claim:
        """The first host to ask owns `key`; later ones wait (bounded by `wait_s`, cut short
        by `abort`) until it is ready to copy. When the owner failed, the next asker owns it;
        when the wait runs out, the asker fetches alone."""
        start = time.monotonic()
        with self._cond:
            said = False
            while True:
                entry = self._entries.get(key)
                if entry is None or entry.state == "failed":
                    self._entries[key] = _Entry(host)
                    return Claim(fetch=True, owner=True, waited_s=time.monotonic() - start)
                if entry.state == "ready":
                    return Claim(fetch=False, source=entry.source,
                                 waited_s=time.monotonic() - start)
                left = wait_s - (time.monotonic() - start)
                if left <= 0 or abort.is_set():
                    return Claim(fetch=True, waited_s=time.monotonic() - start)
                if not said:
                    say(f"waiting for {entry.owner}, which fetches it from upstream, to copy "
                        "it from there")
                    said = True
                self._cond.wait(min(left, 1.0))

    def done(self, key: tuple, source: Source | None) -> None:
        """The owner's outcome: a Source to copy from, or None (it failed: the next host
        that asks fetches it)."""
        with self._cond:
            entry = self._entries.get(key)
            if entry is not None:
                entry.state, entry.source = ("ready", source) if source else ("failed", None)
            self._cond.notify_all()


# --------------------------------------------------------------------------- scripts


def source_script(parent: str, name: str, via: str = "") -> str:
    """On the host that holds it: `<parent>/<name>` as a tar stream on stdout (or through
    `via`, provision/direct_ends.py's sender), then its digest on stderr (stdout carries
    only the stream)."""
    return shell.script([
        _DIGEST_FN,
        shell.fmt("cd %s", parent),
        via + shell.fmt("tar -cf - %s", name),
        shell.fmt("printf '%%s %%s\\n' %s \"$(provision_digest %s)\" >&2", DIGEST_MARK, name),
    ])


def weights_source_script(candidates: tuple[str, ...], via: str = "") -> str:
    """The model's directory, whichever of its layouts the host has (a complete download:
    config.json present), announced on stderr before the stream (sent as source_script
    sends it)."""
    lines = [_DIGEST_FN]
    for path in candidates:
        parent, name = path.rstrip("/").rsplit("/", 1)
        lines.append(
            shell.fmt("if [ -f %s ]; then printf '%%s %%s\\n' %s %s >&2; cd %s && ",
                      f"{path}/config.json", PATH_MARK, path, parent or "/")
            + via + shell.fmt("tar -cf - %s && printf '%%s %%s\\n' %s \"$(provision_digest %s)\" "
                              ">&2; exit $?; fi", name, DIGEST_MARK, name))
    lines.append("echo 'provision: no complete copy of the weights here' >&2; exit 3")
    return shell.script(lines)


def receive_script(staging: str, via: str = "") -> str:
    """On the receiving host: the stream (stdin, or what `via`, provision/direct_ends.py's
    receiver, reads from the source) unpacked as `staging` (emptied first), then its digest
    on stdout."""
    return shell.script([
        _DIGEST_FN,
        shell.cmd("rm", "-rf", staging),
        shell.cmd("mkdir", "-p", staging),
        via + shell.fmt("tar -C %s --strip-components=1 -xf -", staging),
        shell.fmt("printf '%%s %%s\\n' %s \"$(provision_digest %s)\"", DIGEST_MARK, staging),
    ])


def announced_path(stderr: str, candidates: tuple[str, ...]) -> str | None:
    """Which of the model's directories the source streamed (only an expected one counts)."""
    found = re.search(rf"^{PATH_MARK} (.+)$", stderr, re.M)
    return found.group(1) if found and found.group(1) in candidates else None


def weights_staging(settings: Settings) -> str:
    """Where copied weights land until verified: beside the cache's model directories, on
    the same file system (the final move is one rename), never mistaken for a model."""
    name = settings.model.rstrip("/").rsplit("/", 1)[-1]
    return f"{settings.model_cache_dir.rstrip('/')}/.provision-incoming-{name}"


def place_script(staging: str, path: str) -> str:
    """The verified copy moved where the server looks for it, in one rename."""
    parent = path.rstrip("/").rsplit("/", 1)[0] or "/"
    return shell.script([shell.cmd("mkdir", "-p", parent), shell.cmd("mv", "-T", staging, path)])


def discard_script(staging: str) -> str:
    return shell.cmd("rm", "-rf", staging)


def secret_inside(settings: Settings, trees: tuple[str, ...]) -> str | None:
    """A secret file of the tool's (the env files with the API key and the page's password)
    that lies inside a tree to be copied, or None: such a tree never goes over an open port.
    (Path checks keep env_file out of releases_dir; a model directory is not covered.)"""
    from provision.webui import web_paths

    for secret in (settings.env_file, web_paths(settings).env_file):
        if any(secret == t.rstrip("/") or secret.startswith(t.rstrip("/") + "/") for t in trees):
            return secret
    return None
