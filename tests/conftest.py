"""The one fixture every end-to-end test gets its lab hosts from.

One Lab per test session (per xdist worker): stale leftovers of an interrupted run are
cleaned first, hosts are booted on demand (`lab.add_hosts([...])`), and everything is
stopped at the end.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# Under pytest-xdist (`make test` runs `-n`), each worker gets a lab of its own: its own
# state, bridge and /24 (PROVISION_LAB_ID), so workers never stop each other's hosts. Set
# here, before any test module imports provision_lab (its paths are read at import).
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if _WORKER.startswith("gw"):
    _LAB = int(os.environ.get("PROVISION_LAB_ID") or 0) + int(_WORKER[2:]) + 1
    if _LAB > 9:
        raise SystemExit(f"xdist worker {_WORKER} needs PROVISION_LAB_ID={_LAB}, above 9: "
                         "run fewer workers (-n) or start from a lower PROVISION_LAB_ID")
    os.environ["PROVISION_LAB_ID"] = str(_LAB)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under `--dist loadgroup`, a test file is one unit of work (its module fixtures boot
    and converge hosts once), unless the module names an XDIST_SPLIT(item) -> str: then each
    of its parts is a unit of its own, so a long file runs on several workers at once (each
    part sets its module fixtures up again)."""
    for item in items:
        group = item.nodeid.split("::", 1)[0]
        split = getattr(getattr(item, "module", None), "XDIST_SPLIT", None)
        if split is not None:
            group += "#" + split(item)
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def lab() -> Iterator[object]:
    from provision_lab.lab import Lab

    session_lab = Lab()
    session_lab.down()  # a lab killed midway leaves namespaces, mounts and state
    try:
        yield session_lab
    finally:
        session_lab.down()
