#!/usr/bin/env python3
"""Where a no-op `provision up` spends its wall time, phase by phase, in one fresh process.

    python bench/noop_phases.py INVENTORY HOST

Prints one JSON object of seconds: imports (everything `up` loads), inventory
(load, select, validate), ssh_connect (TCP, key exchange, host key, auth),
facts (the one exec: the host lock, the facts inside it once held, their parsing),
plan, http_checks (route probe + every verify check), report (recap). It calls the
same functions `up` calls, in the same order, so the sum tracks the real run;
interpreter start-up is measured by the caller (a bare `python -c pass`), as it
happens before this code runs.
"""

from __future__ import annotations

import io
import json
import sys
import time

T0 = time.monotonic()
# ruff: noqa: E402  (the imports are the first phase measured)
from provision import (
    cli,  # noqa: F401  (what `provision` itself loads)
    hostlock,
)
from provision.apply import FACTS_TIMEOUT, Route
from provision.commands.targets import resolve_targets
from provision.connection import Remote
from provision.facts import gather_command, parse_facts
from provision.guard import recover_prefix
from provision.model import HostResult
from provision.plan import make_plan
from provision.report import Reporter
from provision.verify import verify


def main() -> None:
    inventory, host = sys.argv[1], sys.argv[2]
    marks = {"imports": time.monotonic() - T0}

    def phase(name: str, start: float) -> float:
        now = time.monotonic()
        marks[name] = now - start
        return now

    now = time.monotonic()
    (spec, settings), = resolve_targets(inventory, host, None, ())
    now = phase("inventory", now)
    remote = Remote(spec, settings)
    remote.open()
    now = phase("ssh_connect", now)
    got = hostlock.take(remote, settings, hostlock.LOCK_WAIT_S, 3600,  # as `up`: one exec
                        then=recover_prefix(settings, False) + gather_command(settings),
                        then_s=FACTS_TIMEOUT)
    facts = parse_facts(spec.name, got.stdout)
    now = phase("facts", now)
    plan = make_plan(spec.name, facts, settings)
    if plan.steps or plan.restart:
        sys.exit(f"{host} is not converged: run `provision up` on it first")
    now = phase("plan", now)
    with Route(remote, settings, plan.checks.metrics_local_only) as route:
        checks = verify(route.endpoint(plan, settings), settings.health_timeout)
    if not all(c.ok for c in checks):
        sys.exit(f"verify failed: {checks}")
    now = phase("http_checks", now)
    Reporter(io.StringIO()).recap([HostResult(spec.name)])
    remote.close()
    phase("report", now)
    marks["exec_requests"] = remote.exec_requests
    print(json.dumps(marks))


if __name__ == "__main__":
    main()
