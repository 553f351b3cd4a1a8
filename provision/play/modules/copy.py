"""copy: a file's whole content from `content:` or a control-node `src:` file."""

from __future__ import annotations

from provision import shell
from provision.play.model import Action, Probe
from provision.play.modules.base import Arg, ArgError, Context, ModuleSpec, State
from provision.play.modules.files import attr_gaps, attr_lines, content_change, write

ARGS = {"src": Arg(), "content": Arg("raw"), "dest": Arg(), "mode": Arg("mode"),
        "owner": Arg(), "group": Arg(), "force": Arg("bool", default=True)}


def probes(args: dict) -> list[Probe]:
    return [Probe("file", args["dest"])]


def planned(dest: str, data: bytes, args: dict, st: dict, ctx: Context, what: str
            ) -> Action | None:
    """The Action for a file whose content is `data` (copy and template share it)."""
    if st.get("state") not in ("file", "absent"):
        raise ArgError(f"{dest} is a {st.get('state')} on the host, not a file")
    reasons, diff, differs = content_change(dest, data, args, st, ctx.diff, what)
    if differs and st.get("state") == "file" and args.get("force") is False:
        reasons, diff, differs = attr_gaps(args, st), "", False  # force: no keeps the content
    if not reasons:
        return None
    if differs:
        script, stdin = write(dest, data, args)
        return Action("; ".join(reasons), script, stdin, diff, (f"file:{dest}",))
    return Action("; ".join(reasons), shell.script(attr_lines(dest, args)), None, diff,
                  (f"file:{dest}",))


def plan(args: dict, state: State, ctx: Context) -> Action | None:
    if args.get("src") is not None:
        path = ctx.find_src(args["src"])
        if path.is_dir():
            raise ArgError(f"src {args['src']} is a directory; copy supports single files")
        data = path.read_bytes()
    else:
        data = str(args.get("content")).encode()
    return planned(args["dest"], data, args, state[f"file:{args['dest']}"], ctx, "copy")


SPEC = ModuleSpec("copy", ARGS, probes, plan, required=("dest",), one_of=(("src", "content"),),
                  wants_content=lambda args, diff: diff)
