"""unarchive: a tar archive unpacked into `dest` unless `creates:` already exists.

Ansible compares an archive member by member; provision decides from one path the
facts trip checks, so `creates:` is required (an error before any connection says so).
"""

from __future__ import annotations

from provision import shell
from provision.play.model import Action, Probe
from provision.play.modules.base import Arg, ArgError, Context, ModuleSpec, State
from provision.play.modules.get_url import FETCH

ARGS = {"src": Arg(), "dest": Arg(), "remote_src": Arg("bool", default=False),
        "creates": Arg(), "owner": Arg(), "group": Arg(), "extra_opts": Arg("list")}


def probes(args: dict) -> list[Probe]:
    return [Probe("path", args["creates"]), Probe("file", args["dest"])]


def plan(args: dict, state: State, ctx: Context) -> Action | None:
    if state[f"path:{args['creates']}"].get("exists"):
        return None
    dest, src = args["dest"], args["src"]
    if state[f"file:{dest}"].get("state") != "directory":
        raise ArgError(f"dest {dest} is not a directory on the host (create it with file)")
    tmp = f"{dest.rstrip('/')}/.provision-unarchive.tmp"
    owner = [f"--owner={args['owner']}"] if args.get("owner") else []
    group = [f"--group={args['group']}"] if args.get("group") else []
    untar = shell.cmd("tar", "-x", "-f", tmp, "-C", dest, *owner, *group,
                      *(args.get("extra_opts") or []))
    stdin = None
    if args["remote_src"] and "://" in src:
        fetch = shell.fmt("python3 -c %s %s %s '' 30", FETCH, src, tmp)
    elif args["remote_src"]:
        fetch = shell.cmd("cp", "--", src, tmp)
    else:
        stdin = ctx.find_src(src).read_bytes()
        fetch = shell.fmt("cat > %s", tmp)
    cleanup = shell.cmd("rm", "-f", tmp)
    lines = [fetch, untar + " || { " + cleanup + "; exit 1; }", cleanup]
    return Action(f"{args['creates']} does not exist", shell.script(lines), stdin,
                  touches=(f"path:{args['creates']}",))


SPEC = ModuleSpec("unarchive", ARGS, probes, plan, required=("src", "dest", "creates"))
