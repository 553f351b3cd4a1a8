"""The way back: what served before a run is kept on the host until the new state is verified.

Before the first change to what serves (the venv link, the unit, the env file), the run
*arms* a guard in the same exec as that change: a snapshot directory
`<releases_dir>/.provision-pending` holding the old link target, copies of the old unit and
env file (or notes that they did not exist), the service name and whether it was active.
The directory appears in one rename, so it exists exactly when a change may have begun.

- the new state verified: the run *commits* (removes the directory);
- a failure or interruption the run survives: it *rolls back* at once (ROLLBACK restores
  link, unit and env file, reloads systemd and restarts the service if it was active);
- the run dies (killed, link lost): the directory stays, and the next run of any command
  that takes the host lock runs the same ROLLBACK before its facts, in the same exec.

The snapshot names its own paths, so the rollback never depends on the settings of the run
that finds it. Guard values are pure and printed by --check; tests run the scripts for real.
"""

from __future__ import annotations

from dataclasses import dataclass

from provision import shell
from provision.facts import unit_path
from provision.model import Facts, Plan, Settings

PENDING = ".provision-pending"
RECOVERED = "provision-rolled-back:"
FOUND = "provision-pending-found:"
SERVING_STEPS = ("switch", "unit", "env-file")


def pending_dir(settings: Settings) -> str:
    return f"{settings.releases_dir.rstrip('/')}/{PENDING}"


@dataclass(frozen=True)
class Guard:
    """The recorded way back for one run on one host (see the module doc)."""

    pending: str
    venv_dir: str
    previous_release: str | None
    unit_path: str
    env_file: str
    service: str

    def arm_lines(self) -> list[str]:
        """Snapshot the serving state, atomically; an existing snapshot (older) is kept."""
        new = f"{self.pending}.new"
        return [
            shell.fmt("if [ ! -d %s ]; then", self.pending),
            shell.cmd("rm", "-rf", new),
            shell.cmd("mkdir", "-p", "-m", "0700", new),
            shell.fmt("printf '%%s' %s > %s", self.venv_dir, f"{new}/venv-path"),
            shell.fmt("if [ -L %s ]; then readlink %s > %s; fi", self.venv_dir, self.venv_dir,
                      f"{new}/venv-target"),
            shell.fmt("printf '%%s' %s > %s", self.unit_path, f"{new}/unit-path"),
            shell.fmt("if [ -f %s ]; then cp -p %s %s; fi", self.unit_path, self.unit_path,
                      f"{new}/unit"),
            shell.fmt("printf '%%s' %s > %s", self.env_file, f"{new}/env-path"),
            shell.fmt("if [ -f %s ]; then cp -p %s %s; fi", self.env_file, self.env_file,
                      f"{new}/env"),
            shell.fmt("printf '%%s' %s > %s", self.service, f"{new}/service"),
            shell.fmt("if systemctl is-active -q %s; then touch %s; fi", self.service,
                      f"{new}/was-active"),
            shell.cmd("mv", "-T", new, self.pending),
            "fi",
        ]

    def describe(self) -> list[str]:
        """--check: the rollback path, as it would be recorded and taken."""
        was = self.previous_release or "(no release link)"
        return [
            f"  guard: before the first change, keep {was}, {self.unit_path} and "
            f"{self.env_file} in {self.pending}",
            f"  rollback (on any failure or interruption before verification, else by the "
            f"next run): point {self.venv_dir} back at {was}, restore the unit and env file, "
            f"daemon-reload, restart {self.service}",
            f"  commit (after verification): remove {self.pending}",
        ]


def guard_for(facts: Facts, settings: Settings, plan: Plan) -> Guard | None:
    """A guard when this plan changes what serves and something serves now; else None."""
    changes = any(step.name in SERVING_STEPS for step in plan.steps)
    if not changes or facts.installed.service_active != "active":
        return None
    return Guard(pending_dir(settings), settings.venv_dir, facts.installed.current_release,
                 unit_path(settings), settings.env_file, settings.service_name)


def armed(plan: Plan, guard: Guard | None) -> Plan:
    """The plan with the guard armed in the same exec as its first serving change."""
    if guard is None:
        return plan
    from dataclasses import replace

    steps = list(plan.steps)
    first = next(i for i, s in enumerate(steps) if s.name in SERVING_STEPS)
    body = steps[first].script.removeprefix("set -eu\n")
    steps[first] = replace(steps[first], script=shell.script([*guard.arm_lines(), body]))
    return replace(plan, steps=tuple(steps))


# What rolls back: generic, it reads every path from the snapshot itself.
_ROLLBACK = r"""if [ -d "$p" ]; then
  svc="$(cat "$p/service")"; v="$(cat "$p/venv-path")"; back=""
  if [ -f "$p/venv-target" ]; then
    back="$(cat "$p/venv-target")"
    ln -sfn "$back" "$v.provision-tmp" && mv -T "$v.provision-tmp" "$v"
  fi
  u="$(cat "$p/unit-path")"
  if [ -f "$p/unit" ]; then cp -p "$p/unit" "$u.provision-tmp" && mv -f "$u.provision-tmp" "$u"
  else rm -f "$u"; fi
  e="$(cat "$p/env-path")"
  if [ -f "$p/env" ]; then cp -p "$p/env" "$e.provision-tmp" && mv -f "$e.provision-tmp" "$e"
  else rm -f "$e"; fi
  systemctl daemon-reload
  if [ -f "$p/was-active" ]; then
    systemctl reset-failed "$svc" 2>/dev/null || true
    systemctl restart "$svc"
  fi
  rm -rf "$p"
  echo "MARK${back##*/}"
fi
"""


def rollback_script(settings: Settings) -> str:
    """Roll back to the snapshot when one is recorded; print RECOVERED and the release."""
    return shell.script([shell.fmt("p=%s", pending_dir(settings)),
                         _ROLLBACK.replace("MARK", RECOVERED)])


def recover_prefix(settings: Settings, check: bool) -> str:
    """Put before the facts command: roll back a switch an earlier run left unverified.

    In check mode nothing changes: it only says that a rollback would come first.
    """
    if check:
        return shell.fmt('if [ -d %s ]; then echo "%s"; fi\n', pending_dir(settings), FOUND)
    return (shell.fmt("p=%s\n", pending_dir(settings))
            + _ROLLBACK.replace("MARK", RECOVERED).replace("  systemctl daemon-reload",
                                                           "  systemctl daemon-reload || true"))


SERVING = "provision-serving:"


def confirm_script(settings: Settings, release: str | None, argv: tuple[str, ...]) -> str:
    """After verification: prove the server that answered runs this run's release and flags
    (the unit's main process and the venv link), then forget the way back (commit).

    Exits 3 printing SERVING lines when something else serves (another run, a hand edit).
    """
    lines = [
        shell.fmt('pid="$(systemctl show -p MainPID --value %s)"', settings.service_name),
        shell.fmt('if [ -z "$pid" ] || [ "$pid" = 0 ]; then echo "%s no main process"; exit 3; fi',
                  SERVING),
        "got=\"$(tr '\\0' '\\n' < /proc/$pid/cmdline)\"",
        shell.fmt('if [ "$got" != %s ]; then echo "%s the server runs:"; printf \'%%s\\n\' "$got"; '
                  'exit 3; fi', "\n".join(argv), SERVING),
    ]
    if release:
        target = f"{settings.releases_dir}/{release}"
        lines.append(shell.fmt('if [ "$(readlink %s)" != %s ]; then echo "%s %s points at '
                               '$(readlink %s)"; exit 3; fi', settings.venv_dir, target, SERVING,
                               settings.venv_dir, settings.venv_dir))
    lines.append(shell.cmd("rm", "-rf", pending_dir(settings)))
    return shell.script(lines)


def recovered(output: str) -> str | None:
    """The release a rollback went back to ('' when none was linked), None if no rollback ran."""
    for line in output.splitlines():
        if line.startswith(RECOVERED):
            return line[len(RECOVERED):].strip()
    return None
