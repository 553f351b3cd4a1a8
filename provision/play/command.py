"""`provision play PLAYBOOK`: every play's hosts checked, then batches run, one recap.

All plays' hosts and settings are validated before the first connection (exit 2
with every error). Plays run in order; a host that fails a play is dropped from the
later ones (as in Ansible). `serial` cuts a play into batches; once a batch's failures
pass `max_fail_percentage` (or every host of a batch fails), no new batch starts.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import click

from provision.apply import Options
from provision.commands.targets import ConfigErrors, InventoryArgs
from provision.extra_vars import apply_extra_vars
from provision.inventory import load_inventory
from provision.model import ConfigError, HostResult, HostSpec, Settings
from provision.play.host import PlayOptions, converge_play
from provision.play.model import Play
from provision.play.parser import parse_playbook
from provision.report import Reporter, to_json
from provision.runner import EXIT_USAGE, exit_code, run_hosts
from provision.variables import BY_NAME, check_all, parse_extra_vars, settings_for

Targets = list[tuple[HostSpec, Settings]]


@dataclass(frozen=True)
class PlayArgs:
    playbook: str
    inventory: InventoryArgs
    limit: str | None = None
    extra: tuple[str, ...] = ()
    check: bool = False
    diff: bool = False
    tags: tuple[str, ...] = ()
    skip_tags: tuple[str, ...] = ()
    as_json: bool = False
    verbose: bool = False
    forks: int = 10
    accept_new_host_key: bool = False
    host_timeout: float = 4 * 3600.0


class _PlayVars(dict):
    """A play's vars that configure the deployment, as a source naming the playbook in errors.

    Only a play of built-in roles configures the deployment. When it has tasks too, its
    other variables are the tasks' own: only settings' names go to the deployment (an
    `app_port` there is not a typo of `api_port`); without tasks, every name is checked.
    """

    def __init__(self, play: Play) -> None:
        mixed = bool(play.all_tasks() or play.handlers)
        chosen = {k: v for k, v in play.vars.items() if play.builtin and (
            not mixed or k in BY_NAME or k.startswith("ansible_"))}
        super().__init__(chosen)
        self.sources = {key: f"{play.where} (play vars)" for key in chosen}


def _become_errors(play: Play, specs: list[HostSpec]) -> list[ConfigError]:
    """provision runs every remote command as root; a task that says otherwise is refused."""
    tasks = [t for t in (*play.all_tasks(), *play.handlers) if t.become is False
             or (t.become is None and not play.become)]
    return [ConfigError(str(play.where), "become", "false",
                        f"{spec.name} logs in as {spec.user}; provision runs tasks as root "
                        f"through sudo, so set `become: true` on the play (e.g. for "
                        f"{tasks[0].where})")
            for spec in specs if spec.user != "root" and tasks]


def plan_targets(args: PlayArgs, plays: tuple[Play, ...]) -> list[Targets]:
    """Each play's (spec, settings) pairs: play vars over the inventory, -e over both."""
    extra = parse_extra_vars(list(args.extra))
    inv = load_inventory(list(args.inventory.paths) or None, args.inventory.vault, extra)
    limited = {s.name for s in inv.select(args.limit)} if args.limit else None
    out, errors = [], []
    for play in plays:
        own = _PlayVars(play)
        specs = [apply_extra_vars(apply_extra_vars(s, own), extra)
                 for s in inv.select(play.hosts) if limited is None or s.name in limited]
        errors += check_all(specs) + _become_errors(play, specs)
        out.append(specs)
    if errors:
        raise ConfigErrors(list(errors))
    return [[(spec, settings_for(spec)) for spec in specs] for specs in out]


def batches(targets: Targets, serial: tuple[str, ...]) -> list[Targets]:
    """Ansible's serial: counts or percentages, the last size repeating; none is one batch."""
    if not serial:
        return [targets] if targets else []
    out, at, index = [], 0, 0
    while at < len(targets):
        size = serial[min(index, len(serial) - 1)]
        count = (max(1, math.floor(len(targets) * int(size[:-1]) / 100)) if size.endswith("%")
                 else int(size))
        out.append(targets[at:at + count])
        at, index = at + count, index + 1
    return out


def _too_many(play: Play, batch: list[HostResult]) -> bool:
    failed = sum(r.status in ("failed", "unreachable") for r in batch)
    if play.max_fail_percentage is None:
        return failed == len(batch)
    return 100.0 * failed / len(batch) > play.max_fail_percentage


def _merge(old: HostResult | None, new: HostResult) -> HostResult:
    if old is None:
        return new
    old.steps += new.steps
    old.problems += new.problems
    old.exec_requests += new.exec_requests
    old.new_release = new.new_release or old.new_release
    if new.status in ("failed", "unreachable"):
        old.status, old.error, old.failed_at = new.status, new.error, new.failed_at
    elif new.status == "changed" and old.status == "ok":
        old.status = "changed"
    return old


def run_playbook(args: PlayArgs, live: Reporter) -> list[HostResult]:
    plays = parse_playbook(args.playbook)
    per_play = plan_targets(args, plays)
    options = Options(check=args.check, diff=args.diff,
                      accept_new_host_key=args.accept_new_host_key,
                      host_timeout=args.host_timeout)
    play_options = PlayOptions(frozenset(args.tags), frozenset(args.skip_tags),
                               parse_extra_vars(list(args.extra)))
    results: dict[str, HostResult] = {}
    for play, targets in zip(plays, per_play, strict=True):
        for _, settings in targets:
            live.add_secret(settings.api_key)
        todo = [t for t in targets if results.get(t[0].name) is None
                or results[t[0].name].status not in ("failed", "unreachable")]
        live.block(f"\nPLAY [{play.name}] ({len(todo)} host(s))", [""])
        groups = batches(todo, play.serial)
        for number, batch in enumerate(groups):
            got = run_hosts(batch, options, live, forks=args.forks,
                            any_errors_fatal=play.any_errors_fatal,
                            converge=converge_play(play, play_options))
            for result in got:
                results[result.host] = _merge(results.get(result.host), result)
            if _too_many(play, got) and number + 1 < len(groups):
                for spec, _ in (t for later in groups[number + 1:] for t in later):
                    results[spec.name] = _merge(results.get(spec.name), HostResult(
                        spec.name, "failed", failed_at="apply",
                        error=f"{spec.name}: not started: batch {number + 1} of play "
                              f"{play.name!r} failed past max_fail_percentage "
                              f"({play.max_fail_percentage})"))
                break
    return list(results.values())


def run_play(args: PlayArgs) -> int:
    live = Reporter(sys.stderr if args.as_json else sys.stdout, verbose=args.verbose)
    try:
        results = run_playbook(args, live)
    except ConfigErrors as exc:
        for error in exc.errors:
            print(f"ERROR: {error}", file=sys.stderr)
        print(f"{len(exc.errors)} configuration error(s); no host was contacted.", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as exc:
        print(f"ERROR: {exc}\nno host was contacted.", file=sys.stderr)
        return EXIT_USAGE
    code = exit_code(results)
    live.recap(results)
    if args.as_json:
        print(to_json(results, code, check=args.check, secrets=live.secrets))
    return code


def register(main: click.Group, inventory_options, guarded) -> None:
    """Adds `provision play` to the CLI (cli.py calls this: one line there)."""

    @main.command(context_settings={"max_content_width": 100})
    @click.argument("playbook", type=click.Path(exists=True, dir_okay=False))
    @inventory_options
    @click.option("--limit", metavar="PATTERN", help="Only these hosts (Ansible patterns).")
    @click.option("-e", "--extra-vars", "extra", multiple=True, metavar="KEY=VALUE|@FILE",
                  help="Variables over every other source (repeatable).")
    @click.option("--check", is_flag=True, help="Gather facts and state, show what would "
                                                "change; change nothing.")
    @click.option("--diff", is_flag=True, help="Show file changes (unit, /etc/hosts, every "
                                               "copy/template/lineinfile/... task).")
    @click.option("-t", "--tags", multiple=True, help="Only tasks with these tags (comma list).")
    @click.option("--skip-tags", multiple=True, help="Skip tasks with these tags.")
    @click.option("--json", "as_json", is_flag=True, help="Results as JSON on stdout.")
    @click.option("-v", "--verbose", is_flag=True, help="Show remote output of every task.")
    @click.option("--forks", type=click.IntRange(1, 500), default=10, show_default=True)
    @click.option("--host-timeout", type=click.FloatRange(min=1), default=4 * 3600.0,
                  show_default=True, metavar="SECONDS")
    @click.option("--accept-new-host-key", is_flag=True,
                  help="Trust a host key seen for the first time (a CHANGED key is refused).")
    def play(playbook: str, inventory: InventoryArgs, limit: str | None, extra: tuple[str, ...],
             check: bool, diff: bool, tags: tuple[str, ...], skip_tags: tuple[str, ...],
             as_json: bool, verbose: bool, forks: int, host_timeout: float,
             accept_new_host_key: bool) -> None:
        """Run an Ansible-syntax playbook: your tasks and provision's built-in roles.

        Facts and every task's state come back in one SSH exec per host; only tasks
        that must change run, each shown with its reason. Exit status as for `up`:
        0 ok, 1 a task/step/verification failed, 2 playbook or configuration error
        (nothing contacted), 3 unreachable, 4 refused by pre-flight.
        """
        split = lambda items: tuple(x.strip() for i in items for x in i.split(",") if x.strip())  # noqa: E731
        args = PlayArgs(playbook, inventory, limit, extra, check, diff, split(tags),
                        split(skip_tags), as_json, verbose, forks, accept_new_host_key,
                        host_timeout)
        sys.exit(guarded(lambda: run_play(args)))


__all__ = ["PlayArgs", "register", "run_play"]
