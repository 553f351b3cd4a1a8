"""`provision up`: validate every host's settings, converge them in a pool, report."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

from provision.apply import Options
from provision.commands.targets import ConfigErrors, resolve_targets
from provision.play.builtin import deployment_roles
from provision.report import Reporter, to_json
from provision.runner import EXIT_USAGE, exit_code, run_hosts


@dataclass(frozen=True)
class UpArgs:
    inventory: str | None
    host: str | None
    limit: str | None
    extra: tuple[str, ...] = ()
    check: bool = False
    diff: bool = False
    as_json: bool = False
    verbose: bool = False
    forks: int = 10
    any_errors_fatal: bool = False
    accept_new_host_key: bool = False
    host_timeout: float = 4 * 3600.0
    lock_wait: float = 300.0
    copy_between_hosts: bool = True


def run_up(args: UpArgs) -> int:
    live = Reporter(sys.stderr if args.as_json else sys.stdout, verbose=args.verbose)
    try:
        targets = resolve_targets(args.inventory, args.host, args.limit, args.extra)
    except ConfigErrors as exc:
        for error in exc.errors:
            print(f"ERROR: {error}", file=sys.stderr)
        print(f"{len(exc.errors)} configuration error(s); no host was contacted.", file=sys.stderr)
        if args.as_json:
            print(json.dumps({"exit_code": EXIT_USAGE, "ok": False,
                              "errors": [str(e) for e in exc.errors], "hosts": []}, indent=2))
        return EXIT_USAGE
    options = Options(check=args.check, diff=args.diff, roles=deployment_roles(),
                      accept_new_host_key=args.accept_new_host_key,
                      host_timeout=args.host_timeout, lock_wait=args.lock_wait,
                      copy_between_hosts=args.copy_between_hosts)
    for _, settings in targets:
        live.add_secret(settings.api_key)
        live.add_secret(settings.web_password)
    results = run_hosts(targets, options, live, forks=args.forks,
                        any_errors_fatal=args.any_errors_fatal)
    code = exit_code(results)
    live.recap(results)
    if args.as_json:
        print(to_json(results, code, check=args.check, secrets=live.secrets))
    return code
