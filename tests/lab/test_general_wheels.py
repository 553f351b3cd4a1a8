"""The lab's mirror of real PyPI wheels for its general index (the chat page's Gradio)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from provision_lab import general_wheels
from provision_lab.system import LabError


def test_download_is_for_the_hosts_python_and_binary_only(tmp_path: Path) -> None:
    argv = general_wheels.download_argv(tmp_path, ("gradio==5.50.0",))
    assert argv[-1] == "gradio==5.50.0" and "--only-binary=:all:" in argv
    assert argv[argv.index("--python-version") + 1] == "3.11"
    assert argv[argv.index("--abi") + 1] == "cp311"
    assert "manylinux_2_36_x86_64" in argv and argv[argv.index("--dest") + 1] == str(tmp_path)


def test_mirror_downloads_once_per_requirement_set(tmp_path: Path) -> None:
    calls = []

    def run(argv, **_):
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0, "", "")

    general_wheels.mirror(tmp_path, ("a==1",), run=run)
    general_wheels.mirror(tmp_path, ("a==1",), run=run)
    assert len(calls) == 1
    general_wheels.mirror(tmp_path, ("a==1", "b==2"), run=run)
    assert len(calls) == 2


def test_a_failed_download_is_a_lab_error_and_leaves_no_stamp(tmp_path: Path) -> None:
    def run(argv, **_):
        return subprocess.CompletedProcess(argv, 1, "", "No matching distribution")

    with pytest.raises(LabError, match="No matching distribution"):
        general_wheels.mirror(tmp_path, ("a==1",), run=run)
    assert not list(tmp_path.glob(".provision-lab-*"))
