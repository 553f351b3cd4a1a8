"""Step: the OS packages a venv needs (bare Ubuntu lacks python3-venv, design.md §1)."""

from __future__ import annotations

from provision import shell
from provision.model import Facts, Step

PACKAGES = ("python3-venv", "python3-pip")


def packages_step(facts: Facts) -> Step | None:
    """apt-get install when `python3 -m venv` or pip is missing; None when both work."""
    if facts.has_venv and facts.has_pip:
        return None
    missing = [name for name, ok in (("venv", facts.has_venv), ("pip", facts.has_pip)) if not ok]
    apt = ("env", "DEBIAN_FRONTEND=noninteractive", "apt-get")
    return Step(
        name="packages",
        reason=f"python3 lacks {' and '.join(missing)}: install {' '.join(PACKAGES)}",
        script=shell.script([
            shell.cmd(*apt, "update", "-q"),
            shell.cmd(*apt, "install", "-y", "-q", "--no-install-recommends", *PACKAGES),
        ]),
        timeout_s=900,
    )
