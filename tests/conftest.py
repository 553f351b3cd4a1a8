"""The one fixture every end-to-end test gets its lab hosts from.

One Lab per test session: stale leftovers of an interrupted run are cleaned first, hosts
are booted on demand (`lab.add_hosts([...])`), and everything is stopped at the end.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def lab() -> Iterator[object]:
    from provision_lab.lab import Lab

    session_lab = Lab()
    session_lab.down()  # a lab killed midway leaves namespaces, mounts and state
    try:
        yield session_lab
    finally:
        session_lab.down()
