"""Smoke results as JUnit: every step a test case, the failure reason where CI shows it."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from provision.model import HostResult, StepResult
from provision.smoke import junit_checks, write_smoke_junit

JOURNAL = "--- journalctl -u fastdeploy (last lines)\nworker exited: sk-secret rejected"


def _failed_run() -> HostResult:
    steps = [StepResult("facts", "ok", "", 0.4), StepResult("switch", "changed", "link", 0.1),
             StepResult("restart", "changed", "", 1.0),
             StepResult("verify health", "failed", "not healthy within 30s", 30.0),
             StepResult("health", "running", "waiting")]
    return HostResult("gpu1", "failed", steps=steps, failed_at="verify",
                      error=f"gpu1: verification failed\n{JOURNAL}")


def test_every_finished_step_is_a_case_and_the_failure_carries_the_journal() -> None:
    checks = junit_checks(_failed_run(), ("sk-secret",))
    assert [c.name for c in checks] == ["facts", "switch", "restart", "verify health"]
    assert [c.ok for c in checks] == [True, True, True, False]
    assert checks[3].seconds == 30.0
    assert checks[3].detail.startswith("not healthy within 30s\ngpu1: verification failed")
    assert "journalctl" in checks[3].detail
    assert "sk-secret" not in checks[3].detail and "********" in checks[3].detail


def test_a_run_that_failed_outside_any_step_still_fails_a_case() -> None:
    result = HostResult("gpu9", "unreachable", error="gpu9: connection refused",
                        failed_at="connect")
    checks = junit_checks(result)
    assert [(c.name, c.ok, c.detail) for c in checks] == [
        ("connect", False, "gpu9: connection refused")]


def test_a_good_run_has_no_failure(tmp_path: Path) -> None:
    good = HostResult("gpu2", "changed", steps=[StepResult("facts", "ok", "", 0.3),
                                                StepResult("acceptance:vision", "ok", "", 0.1)])
    path = tmp_path / "smoke.xml"
    write_smoke_junit(path, [good, _failed_run()])
    root = ET.parse(path).getroot()
    assert root.get("tests") == "6" and root.get("failures") == "1"
    failing = root.findall(".//testcase/failure/..")
    assert [(c.get("classname"), c.get("name")) for c in failing] == [("gpu1", "verify health")]
