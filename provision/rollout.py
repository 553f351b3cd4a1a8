"""Rolling reinstalls: batches of hosts, a health gate per host, rollback, a failure budget.

The service must stay up while a fleet is reinstalled, so never more than `serial` hosts
restart at once (batches run one after another), and a version that breaks hosts must
stop breaking them: once failures pass `max_fail`, no new batch starts. A host that fails
its gate is switched back to its previous release by apply (and verified serving again).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass

from provision.apply import Options, converge_host
from provision.model import HostResult, HostSpec, ProvisionError, Settings
from provision.report import Reporter, redact, table
from provision.runner import STOPPED, Converge, run_hosts
from provision.share import FleetShare


def parse_amount(text: str, total: int, what: str) -> int:
    """`N` or `N%` of `total` hosts: "25%" of 4 -> 1. A percentage rounds down (at least 1
    for --serial, so a rollout always moves)."""
    raw = text.strip()
    try:
        if raw.endswith("%"):
            value = math.floor(total * float(raw[:-1]) / 100)
        else:
            value = int(raw)
    except ValueError:
        raise ProvisionError(f"{what}={text!r} is not a number or a percentage; "
                             f"use e.g. {what}=1 or {what}=25%") from None
    if value < 0:
        raise ProvisionError(f"{what}={text!r} is negative; use 0 or more")
    return value


def batches(items: list, serial: int) -> list[list]:
    """Consecutive groups of at most `serial`, in inventory order."""
    size = max(1, serial)
    return [items[i:i + size] for i in range(0, len(items), size)]


@dataclass
class RolloutRow:
    host: str
    old: str | None
    new: str | None
    result: str  # ok, unchanged, rolled back, failed, unreachable, skipped
    out_of_service_s: float | None
    error: str | None = None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _row(result: HostResult) -> RolloutRow:
    if result.status == "unreachable":
        outcome = "unreachable"
    elif result.rolled_back:
        outcome = "rolled back"
    elif result.status == "failed":
        outcome = "failed"
    else:
        outcome = "ok" if result.status == "changed" else "unchanged"
    return RolloutRow(result.host, result.old_release, result.new_release, outcome,
                      result.out_of_service_s, result.error)


def rollout(targets: list[tuple[HostSpec, Settings]], options: Options, reporter: Reporter,
            serial: int, max_fail: int, converge: Converge = converge_host) -> list[RolloutRow]:
    """Batch after batch; stop starting batches once failures exceed `max_fail`.

    A batch runs all its hosts at once and the next starts only when every one of them is
    back (or failed), so at most `serial` hosts are ever out of service together.
    """
    rows: list[RolloutRow] = []
    failures = 0
    if options.share is None and options.copy_between_hosts and not options.check:
        # one fetch from upstream for all the batches
        options = dataclasses.replace(options, share=FleetShare())
    for number, batch in enumerate(batches(targets, serial), 1):
        if failures > max_fail or STOPPED.is_set():
            why = ("interrupted" if STOPPED.is_set() else
                   f"{failures} host(s) failed, --max-fail is {max_fail}")
            rows += [RolloutRow(spec.name, None, None, "skipped", None, f"not started: {why}")
                     for spec, _ in batch]
            continue
        results = run_hosts(batch, options, reporter, forks=len(batch), converge=converge)
        for result in results:
            row = _row(result)
            rows.append(row)
            failures += row.result in ("failed", "rolled back", "unreachable")
        reporter.say(fleet_line(rows, len(targets), number))
    return rows


def fleet_line(rows: list[RolloutRow], total: int, batch: int) -> str:
    """After each batch: how far the rollout is and how the fleet stands ("in service":
    serving what this rollout deploys; a rolled-back host serves its old release).

    >>> fleet_line([RolloutRow("a", None, "r2", "ok", 3.0),
    ...             RolloutRow("b", "r1", "r2", "rolled back", 9.0)], 4, 1)
    'fleet | batch 1: 2/4 hosts done, 1 in service, 1 failed (1 rolled back), 2 to go'
    """
    done = [r for r in rows if r.result != "skipped"]
    serving = sum(r.result in ("ok", "unchanged") for r in done)
    failed = [r for r in done if r.result in ("failed", "rolled back", "unreachable")]
    back = sum(r.result == "rolled back" for r in failed)
    skipped = len(rows) - len(done)
    return (f"fleet | batch {batch}: {len(done)}/{total} hosts done, {serving} in service, "
            f"{len(failed)} failed" + (f" ({back} rolled back)" if back else "")
            + (f", {skipped} skipped" if skipped else "")
            + f", {total - len(rows)} to go")


def render_table(rows: list[RolloutRow]) -> list[str]:
    head = ("host", "old release", "new release", "result", "out of service")
    return table([head] + [(r.host, r.old or "-", r.new or "-", r.result,
                            "-" if r.out_of_service_s is None else f"{r.out_of_service_s:.1f}s")
                           for r in rows])


def exit_status(rows: list[RolloutRow]) -> int:
    return 0 if all(r.result in ("ok", "unchanged") for r in rows) else 1


def print_report(rows: list[RolloutRow], secrets: tuple[str, ...] = (), out=sys.stdout) -> None:
    print("\nROLLOUT", file=out)
    for line in render_table(rows):
        print(line, file=out)
    for row in rows:  # the full error (journal, workerlog) was printed live above
        if row.error and row.result != "skipped":
            error = redact(row.error, secrets)
            last = error.strip().splitlines()[-1]
            first = error.strip().splitlines()[0]
            summary = first if first == last else f"{first} ... {last}"
            print(summary if summary.startswith(row.host) else f"{row.host}: {summary}",
                  file=out)
