"""The guard's decisions and scripts (pure); the lab's fault suite runs them for real."""

from __future__ import annotations

import dataclasses

from provision.guard import (
    FOUND,
    RECOVERED,
    armed,
    guard_for,
    pending_dir,
    recover_prefix,
    recovered,
)
from provision.model import Plan, Settings, Step

SETTINGS = Settings()


def _plan(*names: str) -> Plan:
    steps = tuple(Step(n, f"{n} needed", f"set -eu\necho {n}\n") for n in names)
    return Plan("h", (), steps, None, (), "m", True)


def _facts(active: str = "active"):
    from tests.unit.lab_facts import facts_from_profile

    facts = facts_from_profile("a100")
    return dataclasses.replace(facts, installed=dataclasses.replace(
        facts.installed, service_active=active, current_release="old"))


def test_a_guard_only_when_something_serves_and_a_serving_change_comes() -> None:
    assert guard_for(_facts(), SETTINGS, _plan("release", "switch")) is not None
    assert guard_for(_facts(), SETTINGS, _plan("env-file")) is not None  # finding B
    assert guard_for(_facts(), SETTINGS, _plan("hosts", "enable")) is None
    assert guard_for(_facts("inactive"), SETTINGS, _plan("switch")) is None


def test_the_guard_is_armed_in_the_same_exec_as_the_first_serving_change() -> None:
    guard = guard_for(_facts(), SETTINGS, _plan("release", "unit", "env-file"))
    plan = armed(_plan("release", "unit", "env-file"), guard)
    release, unit, env = plan.steps
    assert "provision-pending" not in release.script and "provision-pending" not in env.script
    arm, body = unit.script.index(pending_dir(SETTINGS)), unit.script.index("echo unit")
    assert arm < body and unit.script.startswith("set -eu\n")
    assert unit.script.count("set -eu") == 1


def test_check_mode_only_reports_a_pending_switch() -> None:
    text = recover_prefix(SETTINGS, check=True)
    assert FOUND in text and "systemctl" not in text and "rm -rf" not in text
    live = recover_prefix(SETTINGS, check=False)
    assert "systemctl restart" in live and RECOVERED in live


def test_describe_names_the_way_back() -> None:
    guard = guard_for(_facts(), SETTINGS, _plan("switch"))
    assert guard is not None
    text = "\n".join(guard.describe())
    assert "point /opt/fastdeploy/venv back at old" in text and "next run" in text


def test_recovered_reads_the_release() -> None:
    assert recovered(f"noise\n{RECOVERED}fastdeploy-2.5.0\n") == "fastdeploy-2.5.0"
    assert recovered("nothing\n") is None
