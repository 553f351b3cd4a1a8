"""`provision rollout`, `status` and `smoke`: the fleet commands, on top of `up`'s pieces."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from provision import rollout as rolling
from provision.apply import Options
from provision.commands.targets import ConfigErrors, resolve_targets
from provision.model import ProvisionError
from provision.report import Reporter, redact_data, to_json
from provision.runner import EXIT_USAGE, exit_code, run_hosts
from provision.smoke import write_smoke_junit
from provision.status import fleet_status, healthy, render_rows


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
        data = {"ok": rolling.exit_status(rows) == 0, "hosts": [r.as_dict() for r in rows]}
        print(json.dumps(redact_data(data, live.secrets), indent=2))
    else:
        rolling.print_report(rows, live.secrets)
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
        write_smoke_junit(Path(junit), results, live.secrets)
    live.recap(results)
    if as_json:
        print(to_json(results, code, secrets=live.secrets))
    return code
