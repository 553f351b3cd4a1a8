"""Rollout's pure parts: amounts, batches, the failure budget and the table."""

from __future__ import annotations

import io
import threading

import pytest

from provision.apply import Options
from provision.model import HostResult, HostSpec, ProvisionError, Settings
from provision.report import Reporter
from provision.rollout import (
    RolloutRow,
    batches,
    exit_status,
    parse_amount,
    print_report,
    render_table,
    rollout,
)


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


# ----------------------------------------------------------------- the rollout loop itself
# The per-host job is replaced by a small function: what is under test is the batching and
# the failure budget around it (the real job runs end to end in tests/e2e/test_fleet.py).


def _targets(n: int) -> list[tuple[HostSpec, Settings]]:
    return [(HostSpec(name=f"gpu{i}", address=f"10.0.0.{i}"), Settings()) for i in range(n)]


class FakeFleet:
    """Converges hosts instantly, failing (or rolling back) the ones named, and records
    which hosts were touched and how many were "out of service" together."""

    def __init__(self, failing: dict[str, str] | None = None,
                 together: tuple[str, ...] = ()) -> None:
        self.failing = failing or {}
        self.touched: list[str] = []
        self.lock, self.running, self.peak = threading.Lock(), 0, 0
        # Hosts that must be out of service together (one batch): each waits for the others,
        # so a rollout that ran them one after another breaks the barrier and fails the test.
        self.together = together
        self.barrier = threading.Barrier(len(together), timeout=10) if together else None

    def __call__(self, spec, settings, options, reporter, abort) -> HostResult:
        with self.lock:
            self.touched.append(spec.name)
            self.running += 1
            self.peak = max(self.peak, self.running)
        if spec.name in self.together:
            self.barrier.wait()
        with self.lock:
            self.running -= 1
        how = self.failing.get(spec.name)
        if how == "unreachable":
            return HostResult(spec.name, "unreachable", error="no route", failed_at="connect")
        result = HostResult(spec.name, "changed", old_release="fd-2.4", new_release="fd-2.5",
                            out_of_service_s=1.5)
        if how:
            result.status, result.error, result.failed_at = "failed", "gate", "verify"
            result.rolled_back = how == "rolled back"
        return result


def _run(fleet: FakeFleet, n: int, serial: int, max_fail: int) -> list[RolloutRow]:
    return rollout(_targets(n), Options(), Reporter(io.StringIO()), serial, max_fail,
                   converge=fleet)


def test_every_host_ok_in_batches_never_more_than_serial_at_once() -> None:
    fleet = FakeFleet(together=("gpu2", "gpu3"))
    rows = _run(fleet, 5, serial=2, max_fail=0)
    assert [r.result for r in rows] == ["ok"] * 5
    assert [r.host for r in rows] == [f"gpu{i}" for i in range(5)]
    assert fleet.peak == 2
    assert exit_status(rows) == 0


def test_serial_one_is_one_host_at_a_time() -> None:
    fleet = FakeFleet()
    _run(fleet, 3, serial=1, max_fail=0)
    assert fleet.peak == 1 and fleet.touched == ["gpu0", "gpu1", "gpu2"]


def test_max_fail_zero_stops_after_the_first_failed_batch() -> None:
    fleet = FakeFleet({"gpu0": "rolled back"})
    rows = _run(fleet, 4, serial=1, max_fail=0)
    assert [r.result for r in rows] == ["rolled back", "skipped", "skipped", "skipped"]
    assert fleet.touched == ["gpu0"]
    assert "--max-fail is 0" in rows[1].error
    assert exit_status(rows) == 1


def test_failures_up_to_max_fail_are_tolerated_and_the_next_one_stops_it() -> None:
    fleet = FakeFleet({"gpu0": "failed", "gpu2": "unreachable"})
    rows = _run(fleet, 5, serial=1, max_fail=1)
    assert [r.result for r in rows] == ["failed", "ok", "unreachable", "skipped", "skipped"]
    assert fleet.touched == ["gpu0", "gpu1", "gpu2"]


def test_a_batch_that_started_finishes_even_past_the_budget() -> None:
    # Both hosts of the first batch fail: the batch was already out, the next never starts.
    fleet = FakeFleet({"gpu0": "failed", "gpu1": "failed"})
    rows = _run(fleet, 4, serial=2, max_fail=0)
    assert [r.result for r in rows] == ["failed", "failed", "skipped", "skipped"]


def test_percentages_apply_to_the_fleet_size() -> None:
    fleet = FakeFleet({"gpu0": "failed", "gpu1": "failed"}, together=("gpu0", "gpu1"))
    size, budget = parse_amount("50%", 4, "--serial"), parse_amount("25%", 4, "--max-fail")
    rows = _run(fleet, 4, serial=size, max_fail=budget)
    assert fleet.peak == 2 and budget == 1
    assert [r.result for r in rows] == ["failed", "failed", "skipped", "skipped"]


def test_report_masks_secrets_and_summarises_errors() -> None:
    rows = [RolloutRow("gpu1", "a", "b", "rolled back", 2.0,
                       "gpu1: verification failed: key sk-123\njournal...\nrolled back to a")]
    out = io.StringIO()
    print_report(rows, ("sk-123",), out=out)
    text = out.getvalue()
    assert "sk-123" not in text and "********" in text
    assert "gpu1: verification failed: key ******** ... rolled back to a" in text


def test_a_fleet_line_after_each_batch() -> None:
    out = io.StringIO()
    rollout(_targets(5), Options(), Reporter(out), 2, 0,
            converge=FakeFleet({"gpu1": "rolled back"}))
    fleet = [line for line in out.getvalue().splitlines() if line.startswith("fleet |")]
    assert fleet == ["fleet | batch 1: 2/5 hosts done, 1 in service, 1 failed (1 rolled back), "
                     "3 to go"]
    out = io.StringIO()
    rollout(_targets(3), Options(), Reporter(out), 1, 0, converge=FakeFleet())
    assert [line for line in out.getvalue().splitlines() if line.startswith("fleet |")] == [
        f"fleet | batch {i}: {i}/3 hosts done, {i} in service, 0 failed, {3 - i} to go"
        for i in (1, 2, 3)]
