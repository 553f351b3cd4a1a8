"""`provision rollout`, `status` and `smoke`: the fleet commands, on top of `up`'s pieces."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from provision import rollout as rolling
from provision.apply import Options
from provision.commands.targets import ConfigErrors, resolve_targets
from provision.junit import write_junit
from provision.model import HostResult, ProvisionError
from provision.report import Reporter, to_json
from provision.runner import EXIT_USAGE, exit_code, run_hosts
from provision.status import fleet_status, healthy, render_rows
from provision.verify import Check


def _targets(inventory, host, limit, extra):
    try:
        return resolve_targets(inventory, host, limit, extra)
    except ConfigErrors as exc:
        for error in exc.errors:
            print(f"ERROR: {error}", file=sys.stderr)
        print(f"{len(exc.errors)} configuration error(s); no host was contacted.",
              file=sys.stderr)
        return None


def run_rollout(inventory: str | None, limit: str | None, extra: tuple[str, ...],
                serial: str, max_fail: str, to: str | None, as_json: bool,
                accept_new_host_key: bool) -> int:
    extra = extra + ((f"fastdeploy_version={to}",) if to else ())
    targets = _targets(inventory, None, limit, extra)
    if targets is None:
        return EXIT_USAGE
    try:
        size = max(1, rolling.parse_amount(serial, len(targets), "--serial"))
        budget = rolling.parse_amount(max_fail, len(targets), "--max-fail")
    except ProvisionError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return EXIT_USAGE
    live = Reporter(sys.stderr if as_json else sys.stdout)
    rows = rolling.rollout(targets, Options(accept_new_host_key=accept_new_host_key), live,
                           size, budget)
    if as_json:
        print(json.dumps({"ok": rolling.exit_status(rows) == 0,
                          "hosts": [r.as_dict() for r in rows]}, indent=2))
    else:
        rolling.print_report(rows)
    return rolling.exit_status(rows)


def run_status(inventory: str | None, limit: str | None, extra: tuple[str, ...],
               as_json: bool, forks: int) -> int:
    targets = _targets(inventory, None, limit, extra)
    if targets is None:
        return EXIT_USAGE
    rows = fleet_status(targets, forks=forks)
    if as_json:
        print(json.dumps({"hosts": [r.as_dict() for r in rows]}, indent=2))
    else:
        print("\n".join(render_rows(rows)))
        for row in rows:
            if row.error:
                print(f"{row.host}: {row.error}")
    return 0 if all(healthy(r) for r in rows) else 1


def junit_checks(result: HostResult) -> list[Check]:
    """Every step of the run as a test case; a failure carries the host's error (with the
    journal and workerlog tails), so CI shows why without a second look."""
    checks = [Check(step.name, step.status != "failed", step.seconds,
                    step.reason if step.status != "failed" else
                    "\n".join(x for x in (step.reason, step.output) if x))
              for step in result.steps if step.status != "running"]
    if result.status in ("failed", "unreachable"):
        failed = [c for c in checks if not c.ok]
        if failed:
            failed[-1].detail = f"{failed[-1].detail}\n{result.error or ''}".strip()
        else:
            checks.append(Check(result.failed_at or "run", False, 0.0, result.error or ""))
    return checks


def run_smoke(inventory: str | None, host: str, extra: tuple[str, ...], junit: str | None,
              as_json: bool, accept_new_host_key: bool) -> int:
    targets = _targets(inventory, host, None, extra)
    if targets is None:
        return EXIT_USAGE
    live = Reporter(sys.stderr if as_json else sys.stdout)
    options = Options(accept_new_host_key=accept_new_host_key, acceptance=True)
    results = run_hosts(targets, options, live, forks=1)
    code = exit_code(results)
    if junit:
        write_junit(Path(junit), "provision.smoke", {r.host: junit_checks(r) for r in results})
    live.recap(results)
    if as_json:
        print(to_json(results, code, secrets=live.secrets))
    return code
