"""file: a path's kind (file, directory, link, absent, touch) and its mode and owner."""

from __future__ import annotations

from provision import shell
from provision.play.model import Action, Probe
from provision.play.modules.base import Arg, ArgError, Context, ModuleSpec, State
from provision.play.modules.files import attr_gaps, attr_lines

ARGS = {"path": Arg(aliases=("dest", "name")),
        "state": Arg(choices=("file", "directory", "absent", "touch", "link"), default="file"),
        "mode": Arg("mode"), "owner": Arg(), "group": Arg(), "src": Arg(),
        "force": Arg("bool", default=False)}


def probes(args: dict) -> list[Probe]:
    return [Probe("file", args["path"])]


def plan(args: dict, state: State, ctx: Context) -> Action | None:
    path, want = args["path"], args["state"]
    st = state[f"file:{path}"]
    have = st.get("state")
    touches = (f"file:{path}",)
    if want == "absent":
        if have == "absent":
            return None
        return Action(f"{path} exists ({have}); state=absent", shell.cmd("rm", "-rf", "--", path),
                      touches=touches)
    if want == "file":
        if have == "absent":
            raise ArgError(f"{path} does not exist; state=file only changes an existing file "
                           "(use state=touch, copy or template to create it)")
        if have != "file":
            raise ArgError(f"{path} is a {have} on the host, not a file (state=file)")
        gaps = attr_gaps(args, st)
        return (Action("; ".join(gaps), shell.script(attr_lines(path, args)), touches=touches)
                if gaps else None)
    if want == "touch":
        lines = [shell.cmd("touch", "--", path), *attr_lines(path, args)]
        return Action(f"touch {path} (always changes, as in Ansible)", shell.script(lines),
                      touches=touches)
    if want == "directory":
        if have not in ("absent", "directory"):
            raise ArgError(f"{path} is a {have} on the host, not a directory")
        gaps = [f"{path} is missing (directory)"] if have == "absent" else attr_gaps(args, st)
        if not gaps:
            return None
        lines = [shell.cmd("mkdir", "-p", "--", path), *attr_lines(path, args)]
        return Action("; ".join(gaps), shell.script(lines), touches=touches)
    if not args.get("src"):
        raise ArgError("state=link needs src")
    if have == "link" and st.get("target") == args["src"]:
        gaps = [g for g in attr_gaps({"owner": args.get("owner"), "group": args.get("group")},
                                     st)]
        return (Action("; ".join(gaps), shell.script(
            [shell.cmd("chown", "-h", f"{args.get('owner') or ''}:{args.get('group') or ''}",
                       path)]), touches=touches) if gaps else None)
    if have not in ("absent", "link") and not args.get("force"):
        raise ArgError(f"{path} is a {have} on the host; refusing to replace it with a link "
                       "(force: true replaces it)")
    why = (f"{path} -> {st.get('target')}, want -> {args['src']}" if have == "link"
           else f"{path} is {have}; want a link to {args['src']}")
    return Action(why, shell.cmd("ln", "-sfn", "--", args["src"], path), touches=touches)


SPEC = ModuleSpec("file", ARGS, probes, plan, required=("path",))
