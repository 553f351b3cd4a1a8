"""JUnit XML parses, counts right, and carries failure reasons intact."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from provision.junit import write_junit
from provision.verify import Check


def test_junit_counts_cases_and_failures(tmp_path: Path) -> None:
    path = tmp_path / "smoke.xml"
    write_junit(path, "smoke", {
        "gpu1": [Check("health", True, 1.5, "200"), Check("chat", True, 0.25, "hi")],
        "gpu2": [Check("health", False, 30.0, "not healthy within 30s\njournal: boom")],
    })
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("3", "1", "0")
    assert float(root.get("time")) == 31.75
    suites = root.findall("testsuite")
    assert [s.get("failures") for s in suites] == ["0", "1"]
    case = suites[1].find("testcase")
    got = (case.get("classname"), case.get("name"), case.get("time"))
    assert got == ("gpu2", "health", "30.000")
    failure = case.find("failure")
    assert failure.get("message") == "not healthy within 30s"
    assert "journal: boom" in failure.text
    assert suites[0].find("testcase").find("failure") is None


def test_control_characters_from_journals_do_not_break_the_xml(tmp_path: Path) -> None:
    path = tmp_path / "x.xml"
    detail = "worker died \x1b[31mred\x1b[0m <tag> & \x00 \"quoted\""
    write_junit(path, "smoke", {"gpu1": [Check("health", False, 1.0, detail)]})
    failure = ET.parse(path).getroot().find("testsuite/testcase/failure")
    assert "<tag> & " in failure.text and "\x1b" not in failure.text
    assert not list(tmp_path.glob("*.tmp"))
