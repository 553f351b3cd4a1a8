"""Step: the OS packages a venv needs (bare Ubuntu lacks python3-venv, design.md §1).

A fresh cloud image often runs unattended-upgrades at first boot, holding the dpkg lock
for minutes; apt-get then fails at once ("exit 100"). So the step first waits for the
locks (bounded, LOCK_WAIT_S), saying once which process holds them, and apt-get itself
waits a little more (DPkg::Lock::Timeout) for the race between that check and its start.
"""

from __future__ import annotations

from provision import shell
from provision.model import Facts, Step

PACKAGES = ("python3-venv", "python3-pip")
LOCK_WAIT_S = 600
APT_LOCK_TIMEOUT_S = 120
LOCKS = ("/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock", "/var/lib/apt/lists/lock",
         "/var/cache/apt/archives/lock")
# Waits until no apt/dpkg lock is held (fcntl locks, as apt takes them); runs on the host.
WAIT_LOCKS = (
    "import fcntl, os, sys, time\n"
    "limit, paths = float(sys.argv[1]), sys.argv[2:]\n"
    "deadline, said = time.monotonic() + limit, False\n"
    "def holder(path):\n"
    "    ino = os.stat(path).st_ino\n"
    "    for line in open('/proc/locks'):\n"
    "        f = line.split()\n"
    "        if len(f) > 5 and f[5].endswith(':' + str(ino)):\n"
    "            pid = f[4]\n"
    "            try:\n"
    "                return open('/proc/' + pid + '/comm').read().strip() + ' (pid ' + pid + ')'\n"
    "            except OSError:\n"
    "                return 'pid ' + pid\n"
    "    return 'another process'\n"
    "def busy():\n"
    "    for path in paths:\n"
    "        try:\n"
    "            fd = os.open(path, os.O_RDWR)\n"
    "        except OSError:\n"
    "            continue\n"
    "        try:\n"
    "            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
    "        except OSError:\n"
    "            return path\n"
    "        finally:\n"
    "            os.close(fd)\n"
    "while True:\n"
    "    path = busy()\n"
    "    if path is None:\n"
    "        sys.exit(0)\n"
    "    if not said:\n"
    "        print('provision: ' + path + ' is held by ' + holder(path) + '; waiting up to '\n"
    "              + str(int(limit)) + 's for it', flush=True)\n"
    "        said = True\n"
    "    if time.monotonic() > deadline:\n"
    "        print('provision: ' + path + ' is still held by ' + holder(path) + ' after '\n"
    "              + str(int(limit)) + 's. Fix: let it finish (unattended-upgrades on a fresh '\n"
    "              'image) or stop it, then rerun', file=sys.stderr)\n"
    "        sys.exit(1)\n"
    "    time.sleep(2)\n"
)


def packages_step(facts: Facts, lock_wait_s: int = LOCK_WAIT_S) -> Step | None:
    """apt-get install when `python3 -m venv` or pip is missing; None when both work."""
    if facts.has_venv and facts.has_pip:
        return None
    missing = [name for name, ok in (("venv", facts.has_venv), ("pip", facts.has_pip)) if not ok]
    apt = ("env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-o",
           f"DPkg::Lock::Timeout={APT_LOCK_TIMEOUT_S}")
    return Step(
        name="packages",
        reason=f"python3 lacks {' and '.join(missing)}: install {' '.join(PACKAGES)}",
        script=shell.script([
            shell.cmd("python3", "-c", WAIT_LOCKS, lock_wait_s, *LOCKS),
            shell.cmd(*apt, "update", "-q"),
            shell.cmd(*apt, "install", "-y", "-q", "--no-install-recommends", *PACKAGES),
        ]),
        timeout_s=lock_wait_s + 2 * APT_LOCK_TIMEOUT_S + 600,
    )
