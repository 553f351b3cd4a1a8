"""get_url: a file downloaded ON the host, verified against `checksum:` before it is kept.

The host fetches it with its own python3 (no curl needed); a checksum mismatch leaves
the old file in place. With a checksum, a file that already has it is never fetched.
"""

from __future__ import annotations

from provision import shell
from provision.play.model import Action, Probe
from provision.play.modules.base import Arg, ArgError, Context, ModuleSpec, State
from provision.play.modules.files import attr_gaps, attr_lines

ARGS = {"url": Arg(), "dest": Arg(), "checksum": Arg(), "mode": Arg("mode"), "owner": Arg(),
        "group": Arg(), "force": Arg("bool", default=False), "timeout": Arg("int", default=10)}
# Runs on the host: argv = url, tmp, sha256-or-empty, timeout. Never a shell string.
FETCH = """import hashlib, sys, urllib.request
url, tmp, want, timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
digest = hashlib.sha256()
with urllib.request.urlopen(url, timeout=timeout) as got, open(tmp, "wb") as out:
    for chunk in iter(lambda: got.read(1 << 20), b""):
        digest.update(chunk); out.write(chunk)
if want and digest.hexdigest() != want:
    sys.exit("checksum mismatch for %s: got sha256:%s, want sha256:%s"
             % (url, digest.hexdigest(), want))
"""


def sha256_of(checksum: str | None) -> str:
    if not checksum:
        return ""
    algo, _, value = checksum.partition(":")
    if algo != "sha256" or len(value) != 64:
        raise ArgError(f"checksum {checksum!r}: use sha256:<64 hex digits>")
    return value.lower()


def probes(args: dict) -> list[Probe]:
    return [Probe("file", args["dest"])]


def plan(args: dict, state: State, ctx: Context) -> Action | None:
    dest, want = args["dest"], sha256_of(args.get("checksum"))
    st = state[f"file:{dest}"]
    if st.get("state") not in ("file", "absent"):
        raise ArgError(f"dest {dest} is a {st.get('state')}; give the file's full path")
    if st.get("state") == "file":
        if (want and st.get("sha256") == want) or (not want and not args.get("force")):
            gaps = attr_gaps(args, st)
            return (Action("; ".join(gaps), shell.script(attr_lines(dest, args)),
                           touches=(f"file:{dest}",)) if gaps else None)
        reason = f"{dest} checksum differs" if want else f"{dest}: force=true"
    else:
        reason = f"{dest} is missing (get_url)"
    tmp = f"{dest}.provision-tmp"
    lines = [shell.fmt("umask 022; python3 -c %s %s %s %s %s", FETCH, args["url"], tmp, want,
                       args["timeout"]), *attr_lines(tmp, args), shell.cmd("mv", "-f", tmp, dest)]
    return Action(reason, shell.script(lines), touches=(f"file:{dest}",))


SPEC = ModuleSpec("get_url", ARGS, probes, plan, required=("url", "dest"))
