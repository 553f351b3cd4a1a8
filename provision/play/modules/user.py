"""user: an account present (uid, shell, home, groups) or absent, via useradd/usermod."""

from __future__ import annotations

from provision import shell
from provision.play.model import Action, Probe
from provision.play.modules.base import Arg, Context, ModuleSpec, State

ARGS = {"name": Arg(aliases=("user",)), "state": Arg(choices=("present", "absent"),
                                                      default="present"),
        "uid": Arg("int"), "shell": Arg(), "home": Arg(), "group": Arg(), "groups": Arg("list"),
        "append": Arg("bool", default=False), "system": Arg("bool", default=False),
        "create_home": Arg("bool", default=True, aliases=("createhome",)),
        "remove": Arg("bool", default=False)}


def probes(args: dict) -> list[Probe]:
    return [Probe("user", args["name"])]


def _flags(args: dict) -> list[str]:
    flags = []
    for key, flag in (("uid", "-u"), ("shell", "-s"), ("home", "-d"), ("group", "-g")):
        if args.get(key) is not None:
            flags += [flag, str(args[key])]
    return flags


def plan(args: dict, state: State, ctx: Context) -> Action | None:
    name = args["name"]
    st = state[f"user:{name}"]
    touches = (f"user:{name}",)
    if args["state"] == "absent":
        if not st.get("exists"):
            return None
        return Action(f"user {name} exists, want absent",
                      shell.cmd("userdel", *(["-r"] if args["remove"] else []), name),
                      touches=touches)
    groups = args.get("groups")
    if not st.get("exists"):
        argv = ["useradd", *_flags(args), *(["-G", ",".join(groups)] if groups else []),
                *(["-r"] if args["system"] else []), "-m" if args["create_home"] else "-M", name]
        return Action(f"user {name} is missing", shell.cmd(*argv), touches=touches)
    gaps = [f"{k} {st.get(k)} -> {args[k]}" for k in ("uid", "shell", "home", "group")
            if args.get(k) is not None and str(st.get(k)) != str(args[k])]
    flags = [f for k in ("uid", "shell", "home", "group") if args.get(k) is not None
             and str(st.get(k)) != str(args[k]) for f in _flags({k: args[k]})]
    have = set(st.get("groups") or ())
    if groups is not None:
        want = have | set(groups) if args["append"] else set(groups)
        if want != have:
            gaps.append(f"groups {','.join(sorted(have)) or '-'} -> {','.join(sorted(want))}")
            flags += ["-G", ",".join(sorted(want))]
    if not gaps:
        return None
    return Action("; ".join(gaps), shell.cmd("usermod", *flags, name), touches=touches)


SPEC = ModuleSpec("user", ARGS, probes, plan, required=("name",))
