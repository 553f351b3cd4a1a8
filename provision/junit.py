"""JUnit XML from check results, so CI systems show each check as a test case.

Every CI system reads JUnit XML; rendering it from the same `Check` results as the console
and JSON output keeps the three from drifting apart.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from provision.verify import Check

# XML 1.0 forbids most control characters; journals and worker logs contain them.
_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _clean(text: str) -> str:
    return _ILLEGAL.sub("\ufffd", text)


def junit_tree(suite_name: str, checks_by_host: dict[str, list[Check]]) -> ET.ElementTree:
    root = ET.Element("testsuites", name=suite_name)
    totals = {"tests": 0, "failures": 0, "time": 0.0}
    for host, checks in checks_by_host.items():
        failures = sum(1 for c in checks if not c.ok)
        seconds = sum(c.seconds for c in checks)
        suite = ET.SubElement(root, "testsuite", name=f"{suite_name}.{host}",
                              tests=str(len(checks)), failures=str(failures), errors="0",
                              skipped="0", time=f"{seconds:.3f}")
        for check in checks:
            case = ET.SubElement(suite, "testcase", classname=host, name=check.name,
                                 time=f"{check.seconds:.3f}")
            if check.ok:
                if check.detail:
                    ET.SubElement(case, "system-out").text = _clean(check.detail)
            else:
                first = _clean(check.detail.splitlines()[0] if check.detail else "failed")
                failure = ET.SubElement(case, "failure", message=first[:500], type="CheckFailed")
                failure.text = _clean(check.detail)
        totals["tests"] += len(checks)
        totals["failures"] += failures
        totals["time"] += seconds
    root.set("tests", str(totals["tests"]))
    root.set("failures", str(totals["failures"]))
    root.set("errors", "0")
    root.set("time", f"{totals['time']:.3f}")
    return ET.ElementTree(root)


def write_junit(path: Path, suite_name: str, checks_by_host: dict[str, list[Check]]) -> None:
    """Write atomically, so a CI step never parses half a file."""
    tmp = Path(f"{path}.tmp")
    junit_tree(suite_name, checks_by_host).write(tmp, encoding="utf-8", xml_declaration=True)
    tmp.replace(path)
