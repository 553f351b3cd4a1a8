"""Status's table and its isolation of one host's trouble from the others' rows."""

from __future__ import annotations

import dataclasses
import threading

from provision.model import HostSpec, Settings
from provision.status import StatusRow, fleet_status, healthy, render_rows


def _targets(n: int) -> list[tuple[HostSpec, Settings]]:
    return [(HostSpec(name=f"gpu{i}", address=f"10.0.0.{i}"), Settings()) for i in range(n)]


def test_hosts_are_queried_at_once_and_one_crash_is_only_its_row() -> None:
    barrier = threading.Barrier(3, timeout=10)  # breaks unless three queries run together

    def query(spec, settings, accept):
        barrier.wait()
        if spec.name == "gpu1":
            raise ValueError("odd /v1/models answer")
        return StatusRow(spec.name, True, health="200", chat_latency_s=0.004)

    rows = fleet_status(_targets(3), forks=10, query=query)
    assert [r.host for r in rows] == ["gpu0", "gpu1", "gpu2"]
    assert [healthy(r) for r in rows] == [True, False, True]
    assert rows[1].error == "internal error: ValueError: odd /v1/models answer"


def test_table_shows_unreachable_and_latency_in_milliseconds() -> None:
    rows = [StatusRow("gpu1", True, gpus="1x NVIDIA L40S", driver="550.127.05", cuda="12.4",
                      paddle="3.3.1", fastdeploy="2.5.0", release="fd-2.5.0", service="active",
                      health="200", model="baidu/ERNIE-4.5-0.3B-Paddle", chat_latency_s=0.0042,
                      exporter="9835"),
            StatusRow("ghost", False, error="unreachable")]
    lines = render_rows(rows)
    assert lines[0].split()[:3] == ["host", "reachable", "gpus"]
    assert lines[1].split() == ["gpu1", "yes", "1x", "NVIDIA", "L40S", "550.127.05/12.4",
                                "3.3.1", "2.5.0", "fd-2.5.0", "active", "200",
                                "baidu/ERNIE-4.5-0.3B-Paddle", "4ms", "-", "9835"]
    assert lines[2].split() == ["ghost", "NO", "-", "-/-", "-", "-", "-", "-", "-", "-", "-",
                                "-", "-"]
    assert not healthy(rows[1])
    assert healthy(rows[0]) and not healthy(dataclasses.replace(rows[0], web="down"))
