"""lineinfile: one line present (replacing the last regexp match) or absent, as Ansible edits.

The new text is computed here from the file's text the facts trip read, so `--check`
and `--diff` show exactly what will be written; the write is the whole file, atomic.
"""

from __future__ import annotations

import re

from provision.play.model import Action, Probe
from provision.play.modules.base import Arg, ArgError, Context, ModuleSpec, State
from provision.play.modules.files import attr_gaps, text_diff, write

ARGS = {"path": Arg(aliases=("dest", "destfile", "name")), "line": Arg(aliases=("value",)),
        "regexp": Arg(aliases=("regex",)), "state": Arg(choices=("present", "absent"),
                                                          default="present"),
        "insertafter": Arg(), "insertbefore": Arg(), "create": Arg("bool", default=False),
        "mode": Arg("mode"), "owner": Arg(), "group": Arg()}


def _last(lines: list[str], pattern: str) -> int:
    rx = re.compile(pattern)
    found = -1
    for number, line in enumerate(lines):
        if rx.search(line):
            found = number
    return found


def edit(text: str | None, args: dict) -> str:
    """The file's text after the task (pure): lineinfile's rules for present and absent."""
    lines = (text or "").splitlines()
    trailing = text is None or text == "" or text.endswith("\n")
    line = args.get("line")
    if args["state"] == "absent":
        keep = [x for x in lines if not (re.search(args["regexp"], x) if args.get("regexp")
                                         else x == line)]
        return "\n".join(keep) + ("\n" if keep and trailing else "")
    if line is None:
        raise ArgError("state=present needs line")
    at = _last(lines, args["regexp"]) if args.get("regexp") else -1
    if at >= 0:
        lines[at] = line
    elif line in lines:
        pass  # the regexp matches nothing but the line is already there: Ansible leaves it
    elif args.get("insertbefore") == "BOF" or args.get("insertafter") == "BOF":
        lines.insert(0, line)
    elif args.get("insertbefore") and (mark := _last(lines, args["insertbefore"])) >= 0:
        lines.insert(mark, line)
    elif (args.get("insertafter") not in (None, "EOF")
          and (mark := _last(lines, args["insertafter"])) >= 0):
        lines.insert(mark + 1, line)
    else:
        lines.append(line)
        trailing = True
    return "\n".join(lines) + ("\n" if trailing else "")


def probes(args: dict) -> list[Probe]:
    return [Probe("file", args["path"], content=True)]


def plan_text(args: dict, state: State, ctx: Context, edit_fn, what: str) -> Action | None:
    """Shared by lineinfile and blockinfile: edit the text, write it when it differs."""
    path = args["path"]
    st = state[f"file:{path}"]
    if st.get("state") == "absent":
        if args["state"] == "absent":
            return None
        if not args.get("create"):
            raise ArgError(f"{path} does not exist on the host (create: true makes it)")
        old = None
    elif st.get("state") != "file":
        raise ArgError(f"{path} is a {st.get('state')} on the host, not a file")
    elif "content" not in st:
        raise ArgError(f"{path} is larger than 1 MiB; {what} edits smaller files only")
    else:
        old = st["content"]
    new = edit_fn(old, args)
    if new == old:
        gaps = attr_gaps(args, st)
        if not gaps:
            return None
        reason = "; ".join(gaps)
    else:
        reason = f"{path}: {what}" if old is not None else f"{path} is missing ({what})"
    script, stdin = write(path, new.encode("utf-8", "surrogateescape"), args)
    diff = text_diff(path, old, new) if ctx.diff and new != old else ""
    return Action(reason, script, stdin, diff, (f"file:{path}",))


def plan(args: dict, state: State, ctx: Context) -> Action | None:
    return plan_text(args, state, ctx, edit, "line " + ("removed" if args["state"] == "absent"
                                                        else "set"))


SPEC = ModuleSpec("lineinfile", ARGS, probes, plan, required=("path",))
