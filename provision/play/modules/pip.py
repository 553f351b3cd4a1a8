"""pip: Python distributions present or absent in a virtualenv (made when missing)."""

from __future__ import annotations

import re
import shlex

from provision import shell
from provision.play.model import Action, Probe
from provision.play.modules.base import Arg, ArgError, Context, ModuleSpec, State

ARGS = {"name": Arg("list"), "version": Arg(),
        "state": Arg(choices=("present", "absent"), default="present"),
        "virtualenv": Arg(), "virtualenv_command": Arg(default="virtualenv"),
        "extra_args": Arg()}
_SPEC = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:==\s*([^,;\s]+))?$")


def python_of(args: dict) -> str:
    return f"{args['virtualenv'].rstrip('/')}/bin/python" if args.get("virtualenv") \
        else "/usr/bin/python3"


def _parse(spec: str, version: str | None) -> tuple[str, str | None]:
    match = _SPEC.match(spec.strip())
    if not match:
        raise ArgError(f"pip name {spec!r}: provision decides from `name` or `name==version` "
                       "(other specifiers cannot be checked without pip)")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower(), match.group(2) or version


def probes(args: dict) -> list[Probe]:
    return [Probe("pip", python_of(args))]


def plan(args: dict, state: State, ctx: Context) -> Action | None:
    python = python_of(args)
    st = state[f"pip:{python}"]
    dists = st.get("dists") or {}
    if len(args["name"]) > 1 and args.get("version"):
        raise ArgError("version applies to one name only")
    todo = []
    for spec in args["name"]:
        name, version = _parse(spec, args.get("version"))
        have = dists.get(name)
        if args["state"] == "absent" and have:
            todo.append(name)
        elif args["state"] == "present" and (have is None or (version and have != version)):
            todo.append(f"{name}=={version}" if version else name)
    if not todo:
        return None
    if args["state"] == "absent":
        return Action(f"installed, want absent: {', '.join(todo)}",
                      shell.cmd(python, "-m", "pip", "uninstall", "-y", *todo),
                      touches=(f"pip:{python}",))
    lines = []
    if args.get("virtualenv") and not st.get("exists"):
        lines.append(shell.cmd(*shlex.split(args["virtualenv_command"]), args["virtualenv"]))
    extra = shlex.split(args.get("extra_args") or "")
    lines.append(shell.cmd(python, "-m", "pip", "install", "-q", *extra, *todo))
    return Action(f"not installed in {python}: {', '.join(todo)}", shell.script(lines),
                  touches=(f"pip:{python}",))


SPEC = ModuleSpec("pip", ARGS, probes, plan, required=("name",))
