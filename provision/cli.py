"""Command line: click commands only; the work lives in the modules they call."""

from __future__ import annotations

import sys

import click

from provision.commands.options import inventory_options as _INVENTORY
from provision.model import ProvisionError

_EXTRA = click.option(
    "-e", "--extra-vars", "extra", multiple=True, metavar="KEY=VALUE|@FILE",
    help="Set a variable over every other source (repeatable; @file.yml reads a YAML file).")
_ACCEPT = click.option(
    "--accept-new-host-key", is_flag=True,
    help="Trust a host key seen for the first time and record it (in known_hosts_file, else "
         "~/.ssh/known_hosts). A CHANGED key is always refused.")


class _LazyGroup(click.Group):
    """`provision`'s group: commands defined elsewhere are imported only when asked for.

    `provision inventory` (which loads the SSH stack), `provision play` and the commands
    other distributions add by the entry-point group `provision.commands` (the lab's
    `provision lab`) are looked up by name when the command line names them, or listed for
    --help, so `provision up` pays for neither `importlib.metadata` nor a module it does not
    run.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), "inventory", "play", *_plugin_entries()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is not None:
            return found
        if cmd_name == "inventory":
            from provision.commands.inventory_cmd import inventory

            return inventory
        if cmd_name == "play":
            from provision.play.command import register as register_play

            register_play(self, _INVENTORY, _guarded)
            return super().get_command(ctx, cmd_name)
        entry = _plugin_entries().get(cmd_name)
        return entry.load() if entry is not None else None


def _plugin_entries() -> dict:
    """Commands other distributions add under `provision`, by name, so the tool ships none
    of their code."""
    from importlib.metadata import entry_points

    return {entry.name: entry for entry in entry_points(group="provision.commands")}


@click.group(cls=_LazyGroup)
@click.version_option(package_name="provision")
def main() -> None:
    """Take GPU hosts to a running, verified FastDeploy ERNIE-4.5 API server."""


@main.command(context_settings={"max_content_width": 100})
@click.option("--host", help="One host: an inventory name, an ssh_config alias or "
                             "user@host[:port].")
@click.option("--limit", metavar="PATTERN",
              help="Hosts from the inventory: a name, a group, a:b, !name, globs.")
@_INVENTORY
@_EXTRA
@click.option("--check", is_flag=True, help="Gather facts, run pre-flight, print the plan; "
                                            "change nothing.")
@click.option("--diff", is_flag=True, help="Show the changes to the unit file and /etc/hosts.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the results as JSON on stdout (progress goes to stderr).")
@click.option("-v", "--verbose", is_flag=True, help="Show remote output of every step.")
@click.option("--forks", type=click.IntRange(1, 500), default=10, show_default=True,
              help="Hosts worked on at once.")
@click.option("--any-errors-fatal", is_flag=True,
              help="Stop every host at its next step as soon as one host fails.")
@click.option("--host-timeout", type=click.FloatRange(min=1), default=4 * 3600.0,
              show_default=True, metavar="SECONDS", help="Time limit per host.")
@click.option("--lock-wait", type=click.FloatRange(min=0), default=300.0, show_default=True,
              metavar="SECONDS", help="How long to wait for another run's lock on a host.")
@click.option("--copy-between-hosts/--no-copy-between-hosts", default=True, show_default=True,
              help="Several hosts needing the same release or weights: one fetches them from "
                   "upstream, the others copy from it (through this machine's SSH "
                   "connections). Off: every host fetches for itself (e.g. when this "
                   "machine's link is slower than the hosts' own upstream).")
@_ACCEPT
def up(host: str | None, limit: str | None, inventory: str | None, extra: tuple[str, ...],
       check: bool, diff: bool, as_json: bool, verbose: bool, forks: int,
       any_errors_fatal: bool, host_timeout: float, lock_wait: float,
       copy_between_hosts: bool, accept_new_host_key: bool) -> None:
    """Take hosts to a running, verified FastDeploy server (idempotent).

    For each host: one facts trip over SSH, pre-flight checks (nothing is
    changed when any fails), the steps that must change something, one restart
    if the unit or the packages changed, then verification over HTTP: /health,
    /v1/models, one chat completion, /metrics.

    \b
    Exit status:
      0  every host converged and verified
      1  a step, the restart or the verification failed on some host
         (or a host ran past --host-timeout)
      2  usage or configuration error: no host was contacted
      3  some host was unreachable (network, authentication, host key, a
         connection lost midway: the message says whether the host was changed)
      4  pre-flight refused some host: nothing was changed on it
    A failure or interruption (Ctrl-C, SIGTERM) after a change to what serves
    rolls the host back to what served before; when the tool cannot (killed,
    link lost), the next run on that host rolls back first.
    When several apply, the first of 2, 1, 4, 3 wins.
    """
    if bool(host) == bool(limit):
        raise click.UsageError("give exactly one of --host NAME or --limit PATTERN")
    from provision.commands.up import UpArgs, run_up

    args = UpArgs(inventory=inventory, host=host, limit=limit, extra=extra, check=check,
                  diff=diff, as_json=as_json, verbose=verbose, forks=forks,
                  any_errors_fatal=any_errors_fatal,
                  accept_new_host_key=accept_new_host_key, host_timeout=host_timeout,
                  lock_wait=lock_wait, copy_between_hosts=copy_between_hosts)
    sys.exit(_guarded(lambda: run_up(args)))


@main.command()
@click.option("--host", required=True, help="An inventory name, an ssh_config alias or "
                                            "user@host[:port].")
@_INVENTORY
@_EXTRA
@click.option("--json", "as_json", is_flag=True, help="Print the facts as JSON.")
@_ACCEPT
def facts(host: str, inventory: str | None, extra: tuple[str, ...], as_json: bool,
          accept_new_host_key: bool) -> None:
    """Show what one SSH round trip learns about a host: OS, GPUs, driver, Python, state.

    Exit status: 0 shown, 1 facts could not be gathered, 2 usage or
    configuration error, 3 unreachable.
    """
    from provision.commands.facts_cmd import run_facts

    sys.exit(_guarded(lambda: run_facts(inventory, host, extra, as_json, accept_new_host_key)))


@main.command()
@_INVENTORY
@click.option("--limit", metavar="PATTERN", help="Only these hosts (Ansible patterns).")
@_EXTRA
@click.option("--serial", default="1", show_default=True, metavar="N|N%",
              help="Hosts out of service at once (one batch).")
@click.option("--max-fail", default="0", show_default=True, metavar="N|N%",
              help="Failed hosts tolerated before no new batch starts.")
@click.option("--to", "to", metavar="VERSION", help="FastDeploy version to move to "
              "(default: what the inventory configures).")
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
@_ACCEPT
def rollout(inventory: str | None, limit: str | None, extra: tuple[str, ...], serial: str,
            max_fail: str, to: str | None, as_json: bool, accept_new_host_key: bool) -> None:
    """Reinstall a fleet in batches, each host gated on health, models and one chat answer.

    A new release is built while the old one serves; a host that fails its gate is
    switched back to its previous release and verified serving again (it counts as
    failed). Once failures pass --max-fail, no new batch starts. Without --to, what the
    inventory configures is rolled out; a host already there is left serving ("unchanged").

    \b
    Results: ok, unchanged, rolled back, failed, unreachable, skipped.
    Out of service: seconds from the restart until the host is healthy again.
    Exit status: 0 every host ok or unchanged, 1 some host failed, rolled back,
    was unreachable or skipped, 2 usage or configuration error.
    """
    from provision.commands.fleet import run_rollout

    sys.exit(_guarded(lambda: run_rollout(inventory, limit, extra, serial, max_fail, to,
                                          as_json, accept_new_host_key)))


@main.command()
@_INVENTORY
@click.option("--limit", metavar="PATTERN", help="Only these hosts (Ansible patterns).")
@_EXTRA
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@click.option("--forks", type=click.IntRange(1, 500), default=10, show_default=True,
              help="Hosts queried at once.")
def status(inventory: str | None, limit: str | None, extra: tuple[str, ...], as_json: bool,
           forks: int) -> None:
    """One row per host: GPUs, driver, versions, release, service, health, chat latency.

    \b
    Exit status: 0 every host serves, 1 some host is unreachable or not serving,
    2 usage or configuration error.
    """
    from provision.commands.fleet import run_status

    sys.exit(_guarded(lambda: run_status(inventory, limit, extra, as_json, forks)))


@main.command()
@click.option("--host", required=True, help="The host to deploy and prove.")
@_INVENTORY
@_EXTRA
@click.option("--junit", metavar="FILE", help="Write JUnit XML: every check a test case.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@_ACCEPT
def smoke(host: str, inventory: str | None, extra: tuple[str, ...], junit: str | None,
          as_json: bool, accept_new_host_key: bool) -> None:
    """CI smoke deploy: `up`, full verification and the acceptance prompts.

    \b
    Exit status as for `up`: 0 passed, 1 a step, check or acceptance prompt
    failed, 2 configuration error, 3 unreachable, 4 refused by pre-flight.
    """
    from provision.commands.fleet import run_smoke

    sys.exit(_guarded(lambda: run_smoke(inventory, host, extra, junit, as_json,
                                        accept_new_host_key)))


@main.command(context_settings={"max_content_width": 100})
@click.option("--host", required=True, help="The host whose server to talk to.")
@_INVENTORY
@_EXTRA
@click.option("-m", "--message", metavar="TEXT",
              help="Ask one question, print the answer and exit (for scripts and CI).")
@click.option("--image", "images", multiple=True, type=click.Path(dir_okay=False),
              metavar="PATH", help="With -m: attach an image (repeatable; sent as a data URL).")
@click.option("--json", "as_json", is_flag=True,
              help="With -m: print JSON: answer, reasoning, latency to first token, tokens/s.")
@click.option("--think/--no-think", default=True, show_default=True,
              help="Let the model reason first (where its switch allows turning it off).")
@_ACCEPT
def chat(host: str, inventory: str | None, extra: tuple[str, ...], message: str | None,
         images: tuple[str, ...], as_json: bool, think: bool, accept_new_host_key: bool) -> None:
    """Chat with the model a host serves: streamed answers, reasoning dimmed, images.

    The endpoint, model and API key come from the inventory, as `up` reaches
    them (an SSH tunnel when the port is not reachable). Interactive commands:
    /think on|off, /image PATH, /reset, /save FILE, /exit. Ctrl-C stops the
    current answer, not the session.

    \b
    Exit status: 0 answered (or the session ended), 1 the server is down or
    the request failed, 2 usage or configuration error, 3 unreachable.
    """
    if (images or as_json) and message is None:
        raise click.UsageError("--image and --json go with -m/--message")
    from provision.commands.chat_cmd import ChatArgs, run_chat_command

    args = ChatArgs(inventory=inventory, host=host, extra=extra, message=message,
                    images=images, as_json=as_json, think=think,
                    accept_new_host_key=accept_new_host_key)
    sys.exit(_guarded(lambda: run_chat_command(args)))


def _guarded(command) -> int:
    """Errors the user can act on are printed as one message, never as a traceback."""
    try:
        return command()
    except ProvisionError as exc:
        click.echo(f"ERROR: {exc}", err=True)
        return 2


def run() -> None:
    """The console script: `main`, then an exit that skips the interpreter's teardown.

    Freeing the ~400 modules `up` loads costs about 0.17 s after the work is done, the
    sixth of a converged host's whole run. Nothing of the tool needs it: the threads are
    joined, the exit handlers run (files, logging) and the streams flushed here first."""
    import atexit
    import os
    import threading

    try:
        main()
        code: object = 0
    except SystemExit as done:
        code = done.code
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code or 0)


if __name__ == "__main__":
    run()
