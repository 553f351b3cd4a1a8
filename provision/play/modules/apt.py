"""apt: Debian packages present or absent; the cache is refreshed only when installing."""

from __future__ import annotations

from provision import shell
from provision.play.model import Action, Probe
from provision.play.modules.base import Arg, Context, ModuleSpec, State

ARGS = {"name": Arg("list", aliases=("pkg", "package")),
        "state": Arg(choices=("present", "absent"), default="present"),
        "update_cache": Arg("bool", default=False, aliases=("update-cache",)),
        "install_recommends": Arg("bool", aliases=("install-recommends",)),
        "purge": Arg("bool", default=False),
        "cache_valid_time": Arg("int")}
APT = ("env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-y", "-q",
       "-o", "DPkg::Lock::Timeout=120")


def _split(spec: str) -> tuple[str, str | None]:
    name, _, version = spec.partition("=")
    return name, version or None


def probes(args: dict) -> list[Probe]:
    return [Probe("package", _split(p)[0]) for p in args["name"]]


def plan(args: dict, state: State, ctx: Context) -> Action | None:
    todo = []
    for spec in args["name"]:
        name, version = _split(spec)
        st = state[f"package:{name}"]
        if args["state"] == "absent" and st.get("installed"):
            todo.append(name)
        elif args["state"] == "present" and (not st.get("installed") or
                                             (version and st.get("version") != version)):
            todo.append(spec)
    if not todo:
        return None
    touches = tuple(f"package:{_split(p)[0]}" for p in todo)
    if args["state"] == "absent":
        verb = "purge" if args.get("purge") else "remove"
        return Action(f"installed, want absent: {', '.join(todo)}",
                      shell.cmd(*APT, verb, *todo), touches=touches)
    lines = [shell.cmd(*APT, "update")] if args.get("update_cache") else []
    flags = {True: ["--install-recommends"], False: ["--no-install-recommends"]}.get(
        args.get("install_recommends"), [])
    lines.append(shell.cmd(*APT, "install", *flags, *todo))
    return Action(f"not installed: {', '.join(todo)}", shell.script(lines), touches=touches)


SPEC = ModuleSpec("apt", ARGS, probes, plan, required=("name",))
