"""One run at a time per host: a lock on the host, held by a session of this run's connection.

Two runs on one host interleave their builds and restarts, and both report "verified"
while only the last one serves. So each run that may change a host first opens one
long-lived SSH session that takes `flock` on a file under /run and then just reads its
stdin. Whatever must run under the lock first (the facts trip, with its rollback of an
earlier run's unverified switch) runs inside that same session once the lock is held, so a
run that changes a host still costs one exec request and one round trip before its plan.
The lock is released when that session ends, which is when this connection ends,
however it ends (closed, the tool killed; a cut link at the latest when the holder's own
time limit, the run's per-host limit, runs out; a heartbeat written every 5 s ends it as
soon as the host's sshd has dropped the session). A second run waits up to `wait_s`,
saying who holds it, then fails naming the holder.
"""

from __future__ import annotations

import getpass
import os
import socket

from provision import shell
from provision.connection import Remote, Result
from provision.model import ProvisionError, Settings

HELD = "provision-lock-held"
BUSY = "provision-lock-busy:"
THEN = "provision-lock-then-rc:"
LOCK_WAIT_S = 300.0
# $1 lock file, $2 seconds to wait, $3 who we are, $4 seconds to hold at most, $5 a script to
# run once held (its stdin is not the session's: that is what holds the lock), $6 its limit
_LOCK = r"""mkdir -p "$(dirname "$1")"
exec 9>>"$1"
if ! flock -n 9; then
  echo "provision-lock-busy: $(cat "$1.holder" 2>/dev/null || echo unknown)"
  flock -w "$2" 9 || exit 75
fi
printf '%s since %s\n' "$3" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$1.holder"
echo provision-lock-held
if [ -n "$5" ]; then
  timeout -k 5 "$6" /bin/sh -c "$5" 9>&- </dev/null 2>&1
  echo "provision-lock-then-rc: $?"
fi
( exec 9>&-; trap '' PIPE; while printf '\036' && sleep 5; do :; done; kill $$ ) &
exec timeout "$4" cat > /dev/null
"""


def lock_path(settings: Settings) -> str:
    return f"/run/lock/provision-{settings.service_name}.lock"


def whoami() -> str:
    """Who holds a lock, as the next run's message shows it."""
    return f"provision (pid {os.getpid()}) run by {getpass.getuser()}@{socket.gethostname()}"


def lock_script(settings: Settings, wait_s: float, hold_s: float, then: str = "",
                then_s: float = 0.0) -> str:
    return shell.cmd("/bin/sh", "-c", _LOCK, "provision", lock_path(settings), int(wait_s),
                     whoami(), int(hold_s) + 60, then, int(then_s) + 1)


def take(remote: Remote, settings: Settings, wait_s: float, hold_s: float,
         say=lambda text: None, then: str = "", then_s: float = 0.0) -> Result | None:
    """Hold the host's lock for the life of `remote`'s connection, or raise naming the holder.

    With `then`, that script runs under the lock in the same exec (stdout and stderr merged,
    bounded by `then_s`) and its Result comes back; without, None."""
    ready = THEN if then else HELD
    held, got = remote.hold(lock_script(settings, wait_s, hold_s, then, then_s), ready,
                            wait_s + (then_s + 10 if then else 0) + 30,
                            progress=lambda line: say(f"waiting up to {wait_s:.0f}s for the "
                                                      f"host lock, held by "
                                                      f"{line[len(BUSY):].strip()}")
                            if line.startswith(BUSY) else None)
    if held:
        return _then_result(got) if then else None
    holder = next((ln[len(BUSY):].strip() for ln in got.stdout.splitlines()
                   if ln.startswith(BUSY)), "")
    if holder or got.rc == 75:
        raise ProvisionError(
            f"{remote.spec.name}: another run holds this host ({holder or 'unknown holder'}); "
            f"waited {wait_s:.0f}s, nothing was changed. Fix: let that run finish, or stop it "
            f"(its lock is {lock_path(settings)}, released when its connection ends)")
    raise ProvisionError(f"{remote.spec.name}: could not take the host lock "
                         f"{lock_path(settings)} (exit {got.rc}): {got.tail(5)}")


def _then_result(got: Result) -> Result:
    """What the script run under the lock printed, between the HELD and THEN lines."""
    text = got.stdout.partition(HELD + "\n")[2]
    body, _, rest = text.rpartition(THEN)
    rc = rest.split("\n", 1)[0].strip()
    return Result(int(rc) if rc.lstrip("-").isdigit() else 1, body, "", got.seconds)
