"""Rollout's pure parts: amounts, batches, the failure budget and the table."""

from __future__ import annotations

import pytest

from provision.model import ProvisionError
from provision.rollout import RolloutRow, batches, exit_status, parse_amount, render_table


@pytest.mark.parametrize("text, total, want", [
    ("1", 4, 1), ("3", 4, 3), ("25%", 4, 1), ("50%", 5, 2), ("100%", 4, 4), ("0", 4, 0),
    ("10%", 4, 0),
])
def test_amounts(text: str, total: int, want: int) -> None:
    assert parse_amount(text, total, "--serial") == want


@pytest.mark.parametrize("text", ["x", "1.5", "-1", "%"])
def test_bad_amounts_name_the_option(text: str) -> None:
    with pytest.raises(ProvisionError, match="--max-fail"):
        parse_amount(text, 4, "--max-fail")


def test_batches_keep_order_and_never_exceed_serial() -> None:
    assert batches([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]
    assert batches([1, 2], 0) == [[1], [2]]  # a rollout always moves


def test_table_and_exit_status() -> None:
    rows = [RolloutRow("gpu1", "fd-2.4", "fd-2.5", "ok", 3.25),
            RolloutRow("gpu2", "fd-2.4", "fd-2.5", "rolled back", 21.0, "boom"),
            RolloutRow("gpu3", None, None, "skipped", None)]
    lines = render_table(rows)
    assert lines[0].split() == ["host", "old", "release", "new", "release", "result", "out",
                                "of", "service"]
    assert lines[1].split() == ["gpu1", "fd-2.4", "fd-2.5", "ok", "3.2s"]
    assert lines[3].split() == ["gpu3", "-", "-", "skipped", "-"]
    assert exit_status(rows) == 1 and exit_status(rows[:1]) == 0
