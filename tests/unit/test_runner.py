"""provision.runner: the pool's bounds, failure isolation, --any-errors-fatal, deadlines, codes.

The per-host job is replaced by small functions here: what is under test is the
orchestration around it (the real job is covered end to end in tests/e2e).
"""

from __future__ import annotations

import io
import threading

from provision.apply import HostAborted, Options
from provision.model import HostResult, HostSpec, Settings
from provision.report import Reporter
from provision.runner import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    exit_code,
    run_hosts,
)


def _targets(n: int) -> list[tuple[HostSpec, Settings]]:
    return [(HostSpec(name=f"gpu{i}", address=f"10.0.0.{i}"), Settings()) for i in range(n)]


def _reporter() -> Reporter:
    return Reporter(io.StringIO())


def test_pool_never_exceeds_forks_and_keeps_order() -> None:
    lock, running, peak = threading.Lock(), [0], [0]
    gate = threading.Barrier(3, timeout=10)  # proves 3 really run at once

    def converge(spec, settings, options, reporter, abort):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        if spec.name in ("gpu0", "gpu1", "gpu2"):
            gate.wait()
        with lock:
            running[0] -= 1
        return HostResult(spec.name, "ok")

    results = run_hosts(_targets(7), Options(), _reporter(), forks=3, converge=converge)
    assert [r.host for r in results] == [f"gpu{i}" for i in range(7)]
    assert peak[0] == 3


def test_one_failure_does_not_stop_the_others() -> None:
    def converge(spec, settings, options, reporter, abort):
        if spec.name == "gpu1":
            raise RuntimeError("boom")  # even a bug stays with its host
        return HostResult(spec.name, "changed")

    results = run_hosts(_targets(4), Options(), _reporter(), forks=2, converge=converge)
    assert [r.status for r in results] == ["changed", "failed", "changed", "changed"]
    assert "internal error: RuntimeError: boom" in results[1].error


def test_any_errors_fatal_stops_hosts_at_their_next_step() -> None:
    failed = threading.Event()

    def converge(spec, settings, options, reporter, abort):
        if spec.name == "gpu0":
            failed.set()
            return HostResult(spec.name, "failed", error="gpu0: bad", failed_at="apply")
        assert failed.wait(10)
        assert abort.wait(10)  # the runner raised the flag for everyone
        try:
            raise HostAborted("stopped")
        except HostAborted as exc:
            return HostResult(spec.name, "failed", error=str(exc), failed_at="apply")

    results = run_hosts(_targets(3), Options(), _reporter(), forks=3, any_errors_fatal=True,
                        converge=converge)
    assert [r.status for r in results] == ["failed"] * 3


def test_without_any_errors_fatal_nobody_is_asked_to_stop() -> None:
    seen: list[bool] = []

    def converge(spec, settings, options, reporter, abort):
        if spec.name == "gpu0":
            return HostResult(spec.name, "failed", failed_at="apply")
        seen.append(abort.is_set())
        return HostResult(spec.name, "ok")

    run_hosts(_targets(3), Options(), _reporter(), forks=1, converge=converge)
    assert seen == [False, False]


def test_a_hung_host_is_given_up_and_the_queue_goes_on() -> None:
    release = threading.Event()

    def converge(spec, settings, options, reporter, abort):
        if spec.name == "gpu0":
            release.wait(30)  # hangs past every deadline
        return HostResult(spec.name, "ok")

    out = io.StringIO()
    results = run_hosts(_targets(3), Options(host_timeout=0.5), Reporter(out), forks=1,
                        converge=converge, grace_s=0.5)
    release.set()
    assert results[0].status == "failed" and "per-host time limit" in results[0].error
    assert [r.status for r in results[1:]] == ["ok", "ok"]
    assert "gpu0 | deadline | failed" in out.getvalue()


def test_exit_codes_follow_the_documented_order() -> None:
    ok = HostResult("a", "ok")
    failed = HostResult("b", "failed", failed_at="verify")
    refused = HostResult("c", "failed", failed_at="preflight")
    unreachable = HostResult("d", "unreachable", failed_at="connect")
    assert exit_code([ok, HostResult("e", "changed")]) == EXIT_OK
    assert exit_code([ok, unreachable]) == EXIT_UNREACHABLE
    assert exit_code([unreachable, refused]) == EXIT_REFUSED
    assert exit_code([refused, failed, unreachable]) == EXIT_FAILED


def test_sigint_and_sigterm_stop_every_host_and_still_return_results() -> None:
    """Finding C (runner side): an interruption reaches every host as `abort` (they roll
    back), the run waits for them, and results come back, so --json still prints."""
    import os
    import signal

    from provision import runner

    for sig in (signal.SIGINT, signal.SIGTERM):
        runner.STOPPED.clear()
        seen: list[str] = []

        def converge(spec, settings, options, reporter, abort, seen=seen):
            abort.wait(30)
            seen.append(getattr(abort, "reason", ""))
            return HostResult(spec.name, "failed", error=f"{spec.name}: rolled back",
                              failed_at="apply", touched=True)

        threading.Timer(0.5, os.kill, (os.getpid(), sig)).start()
        results = run_hosts(_targets(2), Options(), _reporter(), converge=converge)
        assert [r.error for r in results] == ["gpu0: rolled back", "gpu1: rolled back"]
        assert seen == ["interrupted (Ctrl-C or SIGTERM)"] * 2 and runner.STOPPED.is_set()
        assert exit_code(results) == EXIT_FAILED
    runner.STOPPED.clear()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # put back afterwards
