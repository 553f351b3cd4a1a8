"""The built-in deployment as a playbook: `provision up` takes its role order from it."""

from __future__ import annotations

from pathlib import Path

from provision.play.model import PlaybookError
from provision.play.parser import parse_playbook

DEPLOYMENT = Path(__file__).resolve().parents[1] / "playbooks" / "fastdeploy.yml"


def deployment_roles(path: Path = DEPLOYMENT) -> tuple[str, ...]:
    """The plan's role names, in the playbook's order (fastdeploy_release -> release)."""
    plays = parse_playbook(path)
    play = plays[0]
    if len(plays) != 1 or not play.builtin or play.all_tasks() or any(r.when for r in
                                                                      play.builtin):
        raise PlaybookError(str(play.where), "the built-in deployment is one play of built-in "
                            "roles without tasks or when:; run other playbooks with "
                            "`provision play`")
    return tuple(r.name.removeprefix("fastdeploy_") for r in play.builtin)
