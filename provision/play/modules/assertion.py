"""assert: conditions on facts and variables that must hold, else the host stops with why.

Evaluated on the control node from the facts trip (no exec), so a pre_tasks assert is
a pre-flight check: it stops the host before any later task changes anything.
"""

from __future__ import annotations

from provision.play.model import Action, Probe
from provision.play.modules.base import Arg, ArgError, Context, ModuleSpec, State

ARGS = {"that": Arg("raw"), "fail_msg": Arg(aliases=("msg",)), "success_msg": Arg(),
        "quiet": Arg("bool", default=False)}


def probes(args: dict) -> list[Probe]:
    return []


def plan(args: dict, state: State, ctx: Context) -> Action | None:
    that = args["that"] if isinstance(args["that"], list) else [args["that"]]
    for condition in that:
        if isinstance(condition, bool):
            held = condition
        else:
            held = ctx.holds(str(condition))
        if not held:
            raise ArgError(args.get("fail_msg") or f"Assertion failed: {condition}")
    return None


SPEC = ModuleSpec("assert", ARGS, probes, plan, required=("that",))
