"""command and shell: run something, unless `creates:` exists or `removes:` is missing.

`command` quotes each word (nothing a variable holds becomes shell syntax); `shell`
runs the playbook's own text under /bin/sh, as Ansible's does: templating a value
into it is the author's decision, and `| quote` is there for that.
"""

from __future__ import annotations

import shlex

from provision import shell
from provision.play.model import Action, Probe
from provision.play.modules.base import Arg, ArgError, Context, ModuleSpec, State

ARGS = {"cmd": Arg(aliases=("_raw_params",)), "argv": Arg("list"), "creates": Arg(),
        "removes": Arg(), "chdir": Arg()}


def probes(args: dict) -> list[Probe]:
    return [Probe("path", args[k]) for k in ("creates", "removes") if args.get(k)]


def _gate(args: dict, state: State) -> str | None:
    """Why it runs: None when creates/removes say it must not."""
    if args.get("creates"):
        if state[f"path:{args['creates']}"].get("exists"):
            return None
        return f"{args['creates']} does not exist"
    if args.get("removes"):
        if not state[f"path:{args['removes']}"].get("exists"):
            return None
        return f"{args['removes']} exists"
    return "no creates/removes: always runs"


def _plan(args: dict, state: State, script: str) -> Action | None:
    why = _gate(args, state)
    if why is None:
        return None
    if args.get("chdir"):
        script = shell.cmd("cd", args["chdir"]) + " && " + script
    touched = tuple(f"path:{args[k]}" for k in ("creates", "removes") if args.get(k))
    return Action(why, script, touches=touched)


def plan_command(args: dict, state: State, ctx: Context) -> Action | None:
    argv = args.get("argv") or shlex.split(args.get("cmd") or "")
    if not argv:
        raise ArgError("command needs cmd or argv")
    return _plan(args, state, shell.cmd(*argv))


def plan_shell(args: dict, state: State, ctx: Context) -> Action | None:
    if not args.get("cmd"):
        raise ArgError("shell needs a command")
    return _plan(args, state, args["cmd"])


COMMAND = ModuleSpec("command", ARGS, probes, plan_command, free_form="cmd")
SHELL = ModuleSpec("shell", {k: v for k, v in ARGS.items() if k != "argv"}, probes, plan_shell,
                   free_form="cmd")
