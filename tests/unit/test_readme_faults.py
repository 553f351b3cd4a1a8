"""The README's "What happens when..." table is the fault suite's last results, rendered."""

from __future__ import annotations

import json
from pathlib import Path

from tests.faults import table


def test_readme_table_matches_the_fault_suite_results() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rendered = table.render(json.loads(table.RESULTS.read_text()))
    assert rendered.count("\n") == 18  # header, rule and 16 faults x phases
    assert rendered in readme
