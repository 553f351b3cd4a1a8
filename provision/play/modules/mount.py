"""mount: an /etc/fstab entry (Ansible's six-field line) and the live mount of it."""

from __future__ import annotations

from provision import shell
from provision.play.model import Action, Probe
from provision.play.modules.base import Arg, ArgError, Context, ModuleSpec, State
from provision.play.modules.files import text_diff

ARGS = {"path": Arg(aliases=("name",)), "src": Arg(), "fstype": Arg(),
        "opts": Arg(default="defaults"), "dump": Arg(default="0"), "passno": Arg(default="0"),
        "state": Arg(choices=("mounted", "unmounted", "present", "absent")),
        "fstab": Arg(default="/etc/fstab")}


def entry(args: dict) -> str:
    return " ".join([args["src"], args["path"], args["fstype"], args["opts"], str(args["dump"]),
                     str(args["passno"])]) + "\n"


def edit(text: str, args: dict) -> str:
    """fstab with this path's line replaced (or appended, or dropped for absent)."""
    out, done = [], False
    for line in text.splitlines(keepends=True):
        cols = line.split()
        if cols and not cols[0].startswith("#") and len(cols) >= 2 and cols[1] == args["path"]:
            if not done and args["state"] != "absent":
                same = cols[:6] == entry(args).split()
                out.append(line if same else entry(args))
            done = True
            continue
        out.append(line)
    if not done and args["state"] != "absent":
        if out and not out[-1].endswith("\n"):
            out[-1] += "\n"
        out.append(entry(args))
    return "".join(out)


def probes(args: dict) -> list[Probe]:
    return [Probe("file", args["fstab"], content=True), Probe("mount", args["path"])]


def plan(args: dict, state: State, ctx: Context) -> Action | None:
    path, fstab, want = args["path"], args["fstab"], args["state"]
    if want in ("mounted", "present") and not (args.get("src") and args.get("fstype")):
        raise ArgError(f"state={want} needs src and fstype")
    st = state[f"file:{fstab}"]
    if st.get("state") == "file" and "content" not in st:
        raise ArgError(f"{fstab} is larger than 1 MiB")
    old = st.get("content") or ""
    mounted = state[f"mount:{path}"].get("mounted")
    why, lines, stdin, diff = [], [], None, ""
    if want != "unmounted":
        new = edit(old, args)
        if new != old:
            why.append(f"{fstab}: entry for {path} " + ("removed" if want == "absent"
                                                        else "differs or is missing"))
            tmp = f"{fstab}.provision-tmp"
            lines += [shell.fmt("umask 022; cat > %s", tmp),
                      shell.fmt("if [ -e %s ]; then chmod --reference=%s %s; fi", fstab, fstab,
                                tmp), shell.cmd("mv", "-f", tmp, fstab)]
            stdin = new.encode()
            diff = text_diff(fstab, old if st.get("state") == "file" else None, new) \
                if ctx.diff else ""
    if want == "mounted" and not mounted:
        why.append(f"{path} is not mounted")
        lines += [shell.cmd("mkdir", "-p", "--", path), shell.cmd("mount", path)]
    elif want == "mounted" and stdin is not None:
        lines.append(shell.cmd("mount", "-o", "remount", path))
    elif want in ("unmounted", "absent") and mounted:
        why.append(f"{path} is mounted")
        lines.append(shell.cmd("umount", path))
    if not lines:
        return None
    return Action("; ".join(why) or "remount after the entry changed", shell.script(lines),
                  stdin, diff, (f"file:{fstab}", f"mount:{path}"))


SPEC = ModuleSpec("mount", ARGS, probes, plan, required=("path", "state"))
