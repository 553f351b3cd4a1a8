"""Many hosts at once: a bounded pool, a deadline per host, and the exit code.

Unlike fabric's ThreadingGroup (one thread per host, joined without a timeout)
the pool has `forks` workers, and a host that overruns its deadline is reported
as failed instead of hanging the run. The workers are daemon threads so that an
abandoned host cannot keep the process alive. One host's failure does not stop
the others unless `any_errors_fatal` is set; then hosts stop at their next step.
"""

from __future__ import annotations

import dataclasses
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from provision.apply import Options, converge_host
from provision.model import HostResult, HostSpec, Settings
from provision.report import Reporter
from provision.share import FleetShare

# Exit codes of `provision up`, documented in its --help. When several apply, the
# first in this order wins: a usage error, then a failure, then a refusal, then
# an unreachable host.
EXIT_OK = 0
EXIT_FAILED = 1  # a step, the restart or the verification failed (or a host ran out of time)
EXIT_USAGE = 2  # bad command line, inventory or variable: no host was contacted
EXIT_UNREACHABLE = 3  # a host could not be reached, or the link died midway (the message says
#                       whether the host was changed; a change is rolled back by the next run)
EXIT_REFUSED = 4  # pre-flight found problems on a host: nothing was changed on it

GRACE_S = 120.0  # beyond a host's own deadline, before the runner gives up on it
STOP_GRACE_S = 600.0  # after Ctrl-C/SIGTERM: time for hosts to roll back (a 2nd Ctrl-C: none)
STOPPED = threading.Event()  # set once the user interrupted: no new batch may start

Converge = Callable[[HostSpec, Settings, Options, Reporter, threading.Event], HostResult]


def exit_code(results: list[HostResult]) -> int:
    stages = {r.failed_at for r in results if r.status in ("failed", "unreachable")}
    if any(r.status == "failed" and r.failed_at != "preflight" for r in results):
        return EXIT_FAILED
    if "preflight" in stages:
        return EXIT_REFUSED
    if any(r.status == "unreachable" for r in results):
        return EXIT_UNREACHABLE
    return EXIT_OK


def run_hosts(
    targets: list[tuple[HostSpec, Settings]],
    options: Options,
    reporter: Reporter,
    *,
    forks: int = 10,
    any_errors_fatal: bool = False,
    converge: Converge = converge_host,
    grace_s: float = GRACE_S,
) -> list[HostResult]:
    """Converge every target; results come back in the targets' order.

    Several hosts share one FleetShare (unless the caller brought one, as a rollout does
    for all its batches): what one of them fetches from upstream, the others copy from it.
    """
    if (options.share is None and options.copy_between_hosts and len(targets) > 1
            and not options.check):
        options = dataclasses.replace(options, share=FleetShare())
    todo: queue.Queue[int] = queue.Queue()
    for index in range(len(targets)):
        todo.put(index)
    results: dict[int, HostResult] = {}
    started: dict[int, float] = {}
    lock, finished, abort = threading.Lock(), threading.Event(), threading.Event()

    def settle(index: int, result: HostResult) -> None:
        with lock:
            if index in results:  # the runner already gave up on this host
                return
            results[index] = result
            if any_errors_fatal and result.status in ("failed", "unreachable"):
                abort.set()
        finished.set()

    def worker() -> None:
        while True:
            try:
                index = todo.get_nowait()
            except queue.Empty:
                return
            spec, settings = targets[index]
            with lock:
                started[index] = time.monotonic()
            try:
                result = converge(spec, settings, options, reporter, abort)
            except Exception as exc:  # a bug must not take the other hosts down with it
                result = HostResult(spec.name, "failed", error=f"{spec.name}: internal error: "
                                    f"{type(exc).__name__}: {exc}", failed_at="apply")
            settle(index, result)

    for _ in range(max(1, min(forks, len(targets)))):
        threading.Thread(target=worker, daemon=True).start()

    limit = options.host_timeout + grace_s
    with _sigterm_as_interrupt():
        try:
            while len(results) < len(targets):
                finished.wait(timeout=1.0)
                finished.clear()
                now = time.monotonic()
                with lock:
                    overdue = [i for i, t in started.items()
                               if i not in results and now - t > limit]
                for index in overdue:
                    name = targets[index][0].name
                    reporter.line(name, "deadline", "failed", now - started[index])
                    settle(index, HostResult(name, "failed", error=f"{name}: did not finish "
                                             f"within {options.host_timeout:.0f}s (the per-host "
                                             "time limit)", failed_at="apply"))
                    threading.Thread(target=worker, daemon=True).start()  # replaces the stuck one
        except KeyboardInterrupt:
            _stop(targets, results, started, lock, finished, abort, reporter, settle)
    return [results[i] for i in range(len(targets))]


def _stop(targets, results, started, lock, finished, abort, reporter, settle) -> None:
    """Interrupted: every host stops at once and rolls back what it changed (bounded)."""
    STOPPED.set()
    abort.reason = "interrupted (Ctrl-C or SIGTERM)"  # type: ignore[attr-defined]
    abort.set()
    reporter.line("*", "interrupt", "failed", None, "stopping; hosts that changed roll back "
                  f"(up to {STOP_GRACE_S:.0f}s; Ctrl-C again to stop waiting)")
    end = time.monotonic() + STOP_GRACE_S
    try:
        while len(results) < len(targets) and time.monotonic() < end:
            finished.wait(timeout=1.0)
            finished.clear()
    except KeyboardInterrupt:
        pass
    with lock:
        left = [i for i in range(len(targets)) if i not in results]
    for index in left:
        name = targets[index][0].name
        settle(index, HostResult(
            name, "failed", failed_at="apply", touched=index in started,
            error=f"{name}: interrupted before it finished; an unverified switch, if any, is "
                  "recorded on the host and the next run rolls it back first"))


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops a run the way Ctrl-C does (rollback included), in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
