"""The private loopback sshd the unit tests that need real SSH share (one per module)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.unit.sshd_server import Sshd


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    server = Sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()
