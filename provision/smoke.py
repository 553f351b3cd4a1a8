"""CI smoke deploys: the results of one `up` (with acceptance prompts) as JUnit test cases.

CI shows a test case per line of a JUnit file, so every step of the run, every verify check
and every acceptance prompt becomes one, with its time. A failure carries the host's error
(the journal and workerlog tails included) so a red build says why without a second look.
Nothing leaves here unredacted: a journal may echo the API key.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from provision.junit import write_junit
from provision.model import HostResult
from provision.report import redact
from provision.verify import Check

SUITE = "provision.smoke"


def junit_checks(result: HostResult, secrets: Iterable[str] = ()) -> list[Check]:
    """Every finished step as a check; the host's error goes onto the last failing one, or
    onto a check of its own when the run failed outside any step (connect, pre-flight)."""
    hidden = tuple(secrets)
    checks = [Check(step.name, step.status != "failed", step.seconds,
                    redact(step.reason if step.status != "failed" else
                           "\n".join(x for x in (step.reason, step.output) if x), hidden))
              for step in result.steps if step.status != "running"]
    if result.status in ("failed", "unreachable"):
        error = redact(result.error or "", hidden)
        failed = [c for c in checks if not c.ok]
        if failed:
            failed[-1].detail = f"{failed[-1].detail}\n{error}".strip()
        else:
            checks.append(Check(result.failed_at or "run", False, 0.0,
                                error or f"{result.status} without a message"))
    return checks


def write_smoke_junit(path: Path, results: list[HostResult], secrets: Iterable[str] = ()) -> None:
    hidden = tuple(secrets)
    write_junit(path, SUITE, {r.host: junit_checks(r, hidden) for r in results})
