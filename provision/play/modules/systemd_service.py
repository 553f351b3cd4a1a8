"""systemd_service (and its old name `systemd`): a unit started/stopped/restarted, enabled."""

from __future__ import annotations

from provision import shell
from provision.play.model import Action, Probe
from provision.play.modules.base import Arg, ArgError, Context, ModuleSpec, State

ARGS = {"name": Arg(aliases=("service", "unit")),
        "state": Arg(choices=("started", "stopped", "restarted", "reloaded")),
        "enabled": Arg("bool"), "daemon_reload": Arg("bool", default=False,
                                                     aliases=("daemon-reload",))}
RUNNING = ("active", "activating", "reloading")
ENABLED = ("enabled", "enabled-runtime", "static", "alias", "indirect", "generated")


def probes(args: dict) -> list[Probe]:
    return [Probe("unit", args["name"])] if args.get("name") else []


def plan(args: dict, state: State, ctx: Context) -> Action | None:
    name = args.get("name")
    if not name:  # a bare daemon_reload: Ansible runs it and reports no change
        return None
    st = state[f"unit:{name}"]
    missing = st.get("load") == "not-found"
    if missing and args.get("daemon_reload"):
        st = {"load": "not-found", "active": "inactive", "enabled": "disabled"}  # new unit file
    elif missing and (args.get("state") or args.get("enabled") is not None):
        if not ctx.check:
            raise ArgError(f"unit {name} is not found on the host")
        return Action(f"unit {name} is not there yet (an earlier task may create it)", "",
                      touches=(f"unit:{name}",))
    lines, why = [], []
    if args.get("enabled") is True and st.get("enabled") not in ENABLED:
        lines.append(shell.cmd("systemctl", "enable", name))
        why.append(f"{name} is {st.get('enabled')}, want enabled")
    elif args.get("enabled") is False and st.get("enabled") in ("enabled", "enabled-runtime"):
        lines.append(shell.cmd("systemctl", "disable", name))
        why.append(f"{name} is enabled, want disabled")
    want = args.get("state")
    if want == "started" and st.get("active") not in RUNNING:
        lines.append(shell.cmd("systemctl", "start", name))
        why.append(f"{name} is {st.get('active')}, want started")
    elif want == "stopped" and st.get("active") in RUNNING:
        lines.append(shell.cmd("systemctl", "stop", name))
        why.append(f"{name} is {st.get('active')}, want stopped")
    elif want in ("restarted", "reloaded"):
        verb = "restart" if want == "restarted" else "reload-or-restart"
        lines.append(shell.cmd("systemctl", verb, name))
        why.append(f"state={want} always acts")
    if not lines:
        return None
    if args.get("daemon_reload"):
        lines.insert(0, shell.cmd("systemctl", "daemon-reload"))
    return Action("; ".join(why), shell.script(lines), touches=(f"unit:{name}",))


SPEC = ModuleSpec("systemd_service", ARGS, probes, plan)
