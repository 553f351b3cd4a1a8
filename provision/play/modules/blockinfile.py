"""blockinfile: a marked block of lines present or absent, with Ansible's default markers."""

from __future__ import annotations

import re

from provision.play.model import Probe
from provision.play.modules.base import Arg, ModuleSpec
from provision.play.modules.lineinfile import plan_text

ARGS = {"path": Arg(aliases=("dest", "destfile", "name")),
        "block": Arg(default="", aliases=("content",)),
        "marker": Arg(default="# {mark} ANSIBLE MANAGED BLOCK"),
        "marker_begin": Arg(default="BEGIN"), "marker_end": Arg(default="END"),
        "state": Arg(choices=("present", "absent"), default="present"),
        "insertafter": Arg(), "insertbefore": Arg(), "create": Arg("bool", default=False),
        "mode": Arg("mode"), "owner": Arg(), "group": Arg()}


def edit(text: str | None, args: dict) -> str:
    """The file's text with the block put in place (or removed), as Ansible's module does."""
    lines = (text or "").splitlines()
    begin = args["marker"].replace("{mark}", args["marker_begin"])
    end = args["marker"].replace("{mark}", args["marker_end"])
    block = (args.get("block") or "").splitlines()
    wanted = [begin, *block, end] if args["state"] == "present" and block else []
    start = max((i for i, x in enumerate(lines) if x == begin), default=None)
    stop = max((i for i, x in enumerate(lines) if x == end), default=None)
    if start is None or stop is None:
        at = len(lines)
        if args.get("insertbefore") == "BOF":
            at = 0
        elif args.get("insertbefore"):
            hits = [i for i, x in enumerate(lines) if re.search(args["insertbefore"], x)]
            at = hits[-1] if hits else len(lines)
        elif args.get("insertafter") not in (None, "EOF"):
            hits = [i for i, x in enumerate(lines) if re.search(args["insertafter"], x)]
            at = hits[-1] + 1 if hits else len(lines)
    else:
        first, last = min(start, stop), max(start, stop)
        del lines[first:last + 1]
        at = first
    lines[at:at] = wanted
    if not lines:
        return ""
    return "\n".join(lines) + ("\n" if text is None or text.endswith("\n") or text == ""
                               else "")


def probes(args: dict) -> list[Probe]:
    return [Probe("file", args["path"], content=True)]


def plan(args, state, ctx):
    return plan_text(args, state, ctx, edit, "block " + ("removed" if args["state"] == "absent"
                                                         else "set"))


SPEC = ModuleSpec("blockinfile", ARGS, probes, plan, required=("path",))
