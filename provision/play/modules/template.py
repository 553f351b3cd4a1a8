"""template: a Jinja2 file from the control node, rendered with the host's variables.

Rendered as Ansible's template module does (trim_blocks on, the trailing newline kept),
so the same playbook writes the same bytes under either tool.
"""

from __future__ import annotations

from provision.play.model import Action, Probe
from provision.play.modules.base import Arg, Context, ModuleSpec, State
from provision.play.modules.copy import planned

ARGS = {"src": Arg(), "dest": Arg(), "mode": Arg("mode"), "owner": Arg(), "group": Arg(),
        "force": Arg("bool", default=True)}


def probes(args: dict) -> list[Probe]:
    return [Probe("file", args["dest"])]


def plan(args: dict, state: State, ctx: Context) -> Action | None:
    text = ctx.find_src(args["src"]).read_text()
    data = ctx.render(text, template_file=True).encode()
    return planned(args["dest"], data, args, state[f"file:{args['dest']}"], ctx, "template")


SPEC = ModuleSpec("template", ARGS, probes, plan, required=("src", "dest"),
                  wants_content=lambda args, diff: diff)
