"""sysctl: a kernel parameter in sysctl_file (as `name=value`) and, when asked, live.

Edits the file as Ansible's module does (the first line for the key is replaced,
later ones dropped, a missing key appended) and reloads it with `sysctl -p FILE`.
"""

from __future__ import annotations

from provision import shell
from provision.play.model import Action, Probe
from provision.play.modules.base import Arg, ArgError, Context, ModuleSpec, State
from provision.play.modules.files import text_diff

ARGS = {"name": Arg(aliases=("key",)), "value": Arg(aliases=("val",)),
        "state": Arg(choices=("present", "absent"), default="present"),
        "sysctl_file": Arg(default="/etc/sysctl.conf"), "reload": Arg("bool", default=True),
        "sysctl_set": Arg("bool", default=False), "ignoreerrors": Arg("bool", default=False)}


def norm(value: str | None) -> str | None:
    return None if value is None else " ".join(str(value).split())


def file_value(text: str, name: str) -> str | None:
    found = None
    for line in text.splitlines():
        body = line.strip()
        if body and body[0] not in "#;" and "=" in body:
            key, _, value = body.partition("=")
            if key.strip() == name:
                found = norm(value)
    return found


def edit(text: str, args: dict) -> str:
    out, done = [], False
    for line in text.splitlines(keepends=True):
        body = line.strip()
        if body and body[0] not in "#;" and "=" in body and body.split("=")[0].strip() == \
                args["name"]:
            if not done and args["state"] == "present":
                out.append(f"{args['name']}={args['value']}\n")
            done = True
            continue
        out.append(line)
    if not done and args["state"] == "present":
        if out and not out[-1].endswith("\n"):
            out[-1] += "\n"
        out.append(f"{args['name']}={args['value']}\n")
    return "".join(out)


def probes(args: dict) -> list[Probe]:
    return [Probe("file", args["sysctl_file"], content=True), Probe("sysctl", args["name"])]


def plan(args: dict, state: State, ctx: Context) -> Action | None:
    name, path = args["name"], args["sysctl_file"]
    if args["state"] == "present" and args.get("value") is None:
        raise ArgError("state=present needs value")
    st = state[f"file:{path}"]
    if st.get("state") not in ("file", "absent") or (st.get("state") == "file"
                                                     and "content" not in st):
        raise ArgError(f"{path} is not a readable file under 1 MiB on the host")
    old = st.get("content") or ""
    live = norm(state[f"sysctl:{name}"].get("value"))
    want = norm(args.get("value"))
    why, lines, diff = [], [], ""
    if (file_value(old, name) != want) if args["state"] == "present" \
            else file_value(old, name) is not None:
        new = edit(old, args)
        have = file_value(old, name)
        shown = have if have is not None else "not set"
        goal = f"want {want}" if args["state"] == "present" else "want it removed"
        why.append(f"{path}: {name} is {shown}, {goal}")
        tmp = f"{path}.provision-tmp"
        lines += [shell.fmt("umask 022; cat > %s", tmp),
                  shell.fmt("if [ -e %s ]; then chmod --reference=%s %s; fi", path, path, tmp),
                  shell.cmd("mv", "-f", tmp, path)]
        if args["reload"]:
            lines.append(shell.cmd("sysctl", *(["-e"] if args["ignoreerrors"] else []), "-p",
                                   path))
        diff = text_diff(path, old if st.get("state") == "file" else None, new) if ctx.diff \
            else ""
        stdin = new.encode()
    else:
        stdin = None
    if args["state"] == "present" and args["sysctl_set"] and live != want:
        why.append(f"live {name}={live}, want {want}")
        lines.append(shell.cmd("sysctl", "-w", f"{name}={args['value']}"))
    if not lines:
        return None
    return Action("; ".join(why), shell.script(lines), stdin, diff,
                  (f"file:{path}", f"sysctl:{name}"))


SPEC = ModuleSpec("sysctl", ARGS, probes, plan, required=("name",))
