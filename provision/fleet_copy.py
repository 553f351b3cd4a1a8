"""One host's side of the fleet share (provision/share.py): when its release or the weights
are being fetched by another host of the run, wait for that host and copy from it.

Kept out of apply.py so the single-host path reads as before: HostRun calls `release` for
its release step, `weights_before_restart` before a restart, `weights_verified` once the
server answered, and `close` at the end (an owner that never finished lets the next host
fetch instead of leaving it waiting).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from provision import matrix, shell
from provision.connection import Remote, RemoteCancelled, RemoteTimeout, Result
from provision.direct_copy import NoPath, direct
from provision.direct_ends import receive_prefix, send_prefix
from provision.facts import model_paths
from provision.model import Facts, Plan, ProvisionError
from provision.relay import relay
from provision.share import (
    Source,
    announced_path,
    digest_of,
    discard_script,
    place_script,
    receive_script,
    secret_inside,
    source_script,
    weights_source_script,
    weights_staging,
)
from provision.steps.release import finish_lines, partial_dir

if TYPE_CHECKING:
    from provision.apply import HostRun

COPY_TIMEOUT = 4 * 3600.0  # a copy of ~60 GB of weights at a slow link, still bounded
FINISH_TIMEOUT = 600.0  # the copied release's checks on this host


class FleetCopy:
    def __init__(self, run: HostRun) -> None:
        self.run = run
        self.share = run.options.share
        self.owned: list[tuple] = []  # keys this host fetches for the others, not yet done
        self.announced = ""  # the weights' directory the source said it streamed
        self.how = ""  # how the last copy went: host to host, or relayed through here

    # ------------------------------------------------------------ the release

    def release(self, plan: Plan, facts: Facts, build: Callable[[], None]) -> None:
        """The release step: copied from the host that built it for this run, else built."""
        run, install = self.run, plan.install
        assert install is not None
        key = ("release", install.release, facts.python_version, run.settings.python,
               run.settings.releases_dir)
        claim = self._claim(key, "release")
        if claim.source is not None and self._copy_release(claim.source, plan):
            return
        build()
        if claim.owner:
            self._done(key, Source(run.spec, run.settings))

    def _copy_release(self, source: Source, plan: Plan) -> bool:
        run, install = self.run, plan.install
        assert install is not None
        partial = partial_dir(run.settings, install)
        what = f"copy {install.release} from {source.name} (fetched once for the fleet)"
        tree = f"{run.settings.releases_dir}/{install.release}"
        got = self._relay(source, "release", what,
                          lambda via: source_script(run.settings.releases_dir, install.release,
                                                    via),
                          lambda via: receive_script(partial, via), (tree,))
        if got is None:
            return False
        start = time.monotonic()
        done = run.remote.run(shell.script(finish_lines(run.settings, install)),
                              run.deadline.cap(FINISH_TIMEOUT))
        if not done.ok:  # the copy does not work here: build it from the index instead
            run.reporter.output(run.spec.name, done.tail(20), always=True)
            run.reporter.line(run.spec.name, "release", "running", None,
                              f"the copy from {source.name} failed its checks here; building "
                              "from the index instead")
            return False
        run._record("release", "changed", got + time.monotonic() - start,
                    f"copied {install.release} from {source.name} {self.how} (digests match) "
                    "and checked here; the index was not asked")
        run.result.status = "changed"
        return True

    # ------------------------------------------------------------ the weights

    def weights_before_restart(self, plan: Plan, facts: Facts) -> None:
        """A host about to start a server that must download the weights first copies them
        from the host that downloads them for this run, once that host's server answered."""
        settings = self.run.settings
        if settings.model_dir or facts.model_present:
            return
        if matrix.release(settings.fastdeploy_version).model_cache == "flat":
            return  # 2.0.x downloads into the cache dir itself (C8): no directory to copy
        key = ("weights", settings.model, settings.model_cache_dir)
        claim = self._claim(key, "weights")
        if claim.source is None:
            return  # this host's server downloads them (owner: the others wait for it)
        candidates = model_paths(settings)
        staging = weights_staging(settings)
        got = self._relay(claim.source, "weights",
                          f"copy {settings.model}'s weights from {claim.source.name}",
                          lambda via: weights_source_script(candidates, via),
                          lambda via: receive_script(staging, via), candidates,
                          announce=candidates, staging=staging)
        if got is None:
            return
        path = self.announced
        placed = self.run.remote.run(place_script(staging, path), self.run.deadline.cap(60))
        if not placed.ok:
            self.run.remote.run(discard_script(staging), 60)
            self.run.reporter.line(self.run.spec.name, "weights", "failed", None,
                                   f"placing the copy failed ({placed.tail(3)}); the server "
                                   "downloads them itself")
            return
        self.run._record("weights", "changed", got,
                         f"copied {settings.model} from {claim.source.name} {self.how} into "
                         f"{path} (digests match); not downloaded again")
        self.run.result.status = "changed"

    def weights_verified(self) -> None:
        """This host's server answered: its weights are complete, the others may copy them."""
        for key in [k for k in self.owned if k[0] == "weights"]:
            self._done(key, Source(self.run.spec, self.run.settings))

    def close(self) -> None:
        for key in list(self.owned):
            self._done(key, None)

    # ------------------------------------------------------------ shared parts

    def _claim(self, key: tuple, what: str):
        run = self.run
        claim = self.share.claim(
            key, run.spec.name, max(run.deadline.left() - 60, 0), run.abort,
            say=lambda text: run.reporter.line(run.spec.name, what, "waiting", None, text))
        run._check_abort()
        if claim.owner:
            self.owned.append(key)
        return claim

    def _done(self, key: tuple, source: Source | None) -> None:
        if key in self.owned:
            self.owned.remove(key)
            self.share.done(key, source)

    def _relay(self, source: Source, what: str, why: str, send: Callable[[str], str],
               receive: Callable[[str], str], trees: tuple[str, ...],
               announce: tuple[str, ...] = (), staging: str | None = None) -> float | None:
        """Stream `send` on the source into `receive` here, host to host where they reach
        each other, else through this machine (`trees`: what may be sent); the seconds it
        took when both digests match, else None (said; `staging`, when given, removed: a
        release's partial build directory is the build's to clear)."""
        run = self.run
        run.reporter.line(run.spec.name, what, "running", None, why)
        run.result.touched = True
        start = time.monotonic()

        def progress(sent: int, seconds: float) -> None:
            rate = sent / seconds / 1e6 if seconds else 0.0
            run.reporter.line(run.spec.name, what, "copying", None,
                              f"{sent / 1e9:.2f} GB from {source.name}, {rate:.0f} MB/s")

        try:
            with Remote(source.spec, source.settings,
                        accept_new_host_key=run.options.accept_new_host_key,
                        connect_timeout=run.options.connect_timeout,
                        ssh_config_path=run.options.ssh_config_path) as remote:
                sent, got = self._stream(remote, source, what, send, receive, trees, progress)
        except RemoteCancelled:
            run._check_abort()
            raise
        except (ProvisionError, RemoteTimeout) as exc:
            return self._fallback(what, source, str(exc), staging)
        expected, arrived = digest_of(sent.stderr), digest_of(got.stdout)
        if announce:
            self.announced = announced_path(sent.stderr, announce) or ""
        if not sent.ok or not got.ok or expected is None or expected != arrived or (
                announce and not self.announced):
            detail = (f"source exit {sent.rc}, here exit {got.rc}, digests "
                      f"{expected or 'none'} / {arrived or 'none'}: "
                      f"{(sent.stderr + got.stderr).strip()[-300:]}")
            return self._fallback(what, source, detail, staging)
        return time.monotonic() - start

    def _stream(self, remote: Remote, source: Source, what: str, send: Callable[[str], str],
                receive: Callable[[str], str], trees: tuple[str, ...],
                progress: Callable[[int, float], None]) -> tuple[Result, Result]:
        """Both ends' Results: the direct path first, the relay when it cannot be had."""
        run = self.run
        secret = secret_inside(run.settings, trees)
        why = (f"{secret} (a secret) lies inside what would be sent" if secret else
               "a host ends at this machine" if not _both_ssh(remote, run.remote) else "")
        if not why:
            outcome = direct(remote, send(send_prefix(source.settings.python)), run.remote,
                             receive(receive_prefix(run.settings.python)),
                             run.deadline.cap(COPY_TIMEOUT), cancel=run.abort,
                             progress=progress)
            if not isinstance(outcome, NoPath):
                self.how = "host to host"
                return outcome
            why = outcome.why
        self.how = "relayed through this machine"
        run.reporter.line(run.spec.name, what, "running", None,
                          f"no direct path from {source.name} ({why}); relaying the copy "
                          "through this machine")
        return relay(remote, send(""), run.remote, receive(""),
                     run.deadline.cap(COPY_TIMEOUT), cancel=run.abort, progress=progress)

    def _fallback(self, what: str, source: Source, detail: str, staging: str | None) -> None:
        run = self.run
        if staging:
            run.remote.run(discard_script(staging), run.deadline.cap(120))
        run.reporter.line(run.spec.name, what, "running", None,
                          f"the copy from {source.name} failed ({detail}); fetching from "
                          "upstream instead")
        return None


def _both_ssh(*remotes: object) -> bool:
    """Both ends are SSH hosts (a `local` host runs here: the relay is this machine anyway)."""
    return all(isinstance(r, Remote) for r in remotes)
