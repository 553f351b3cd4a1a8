"""Facts: the parsers on real nvidia-smi outputs, and the real script run on this machine."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from provision.facts import (
    BEGIN,
    END,
    compute_cap_from_name,
    gather_command,
    parse_facts,
    parse_gpu_csv,
    parse_nvidia,
    parse_smi_table,
)
from provision.model import ProvisionError, Settings

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "nvidia-smi"


@pytest.mark.parametrize("name, driver, cuda", [
    ("table-r555-a100x4.txt", "555.42.02", "12.5"),
    ("table-r590-h100.txt", "590.48.01", "13.1"),
    ("table-r550-l40s.txt", "550.127.05", "12.4"),
    ("table-r550-rtx4090x8.txt", "550.127.05", "12.4"),
    ("table-r525-a10.txt", "525.85.12", "12.0"),
    ("table-r535-t4.txt", "535.104.05", "12.2"),
    ("table-r565-h100x8.txt", "565.57.01", "12.7"),
    ("table-r590-h100-mig.txt", "590.48.01", "13.1"),
    ("table-r610-rtx2080.txt", "610.57.04", "13.3"),
    # the binary says 470.256.02, the driver 580.95.05: the driver is what counts
    ("table-r470-snap-binary.txt", "580.95.05", "13.0"),
])
def test_table_header_gives_driver_and_cuda(name: str, driver: str, cuda: str) -> None:
    assert parse_smi_table((FIXTURES / name).read_text()) == (driver, cuda)


def test_table_cuda_na_and_garbage() -> None:
    line = "| NVIDIA-SMI 418.92 Driver Version: 418.92 CUDA Version: N/A |"
    assert parse_smi_table(line) == ("418.92", None)
    assert parse_smi_table("No devices were found\n") == (None, None)


CSV_ROWS = [
    ("0, NVIDIA H100 80GB HBM3, GPU-00000000-0000-0000-0000-000000000000, 9.0, 81559, 0, "
     "590.48.01", "9.0", 81559, 90),
    ("0, NVIDIA H200, GPU-00000000-0000-0000-0000-000000000000, 9.0, 143771, 0, 590.48.01",
     "9.0", 143771, 90),
    ("0, NVIDIA L40S, GPU-00000000-0000-0000-0000-000000000000, 8.9, 46068, 0, 595.80",
     "8.9", 46068, 89),
    ("0, NVIDIA GeForce RTX 2080 SUPER, GPU-00000000-0000-0000-0000-000000000000, 7.5, 8192, "
     "211, 610.57.04", "7.5", 8192, 75),
]


@pytest.mark.parametrize("row, cap, total, sm", CSV_ROWS)
def test_csv_rows(row: str, cap: str, total: int, sm: int) -> None:
    gpus, driver = parse_gpu_csv(row + "\n")
    assert [(g.compute_cap, g.memory_total_mib, g.sm) for g in gpus] == [(cap, total, sm)]
    assert driver == row.rsplit(", ", 1)[1]


def test_csv_eight_gpus_mig_and_unavailable_values() -> None:
    rows = "".join(f"{i}, NVIDIA A100-SXM4-80GB, GPU-{i}, 8.0, 81920, [N/A], 565.57.01\n"
                   for i in range(8))
    gpus, _ = parse_gpu_csv("index, name, uuid, compute_cap, memory.total [MiB], "
                            "memory.used [MiB], driver_version\n" + rows)
    assert [g.index for g in gpus] == list(range(8))
    assert {g.memory_used_mib for g in gpus} == {0}
    # MIG on: the parent GPU keeps its whole memory in the query (§2.1 "H100 (MIG on)")
    mig, _ = parse_gpu_csv("0, NVIDIA H100 80GB HBM3, GPU-0, 9.0, 81559, 59, 590.48.01\n")
    assert mig[0].memory_total_mib == 81559 and mig[0].memory_used_mib == 59


def test_r470_without_compute_cap_takes_sm_from_the_name_table() -> None:
    gpus, driver = parse_gpu_csv("0, NVIDIA A100-SXM4-80GB, GPU-1, 81920, 0, 470.182.03\n",
                                 with_cap=False)
    assert (gpus[0].compute_cap, driver) == ("8.0", "470.182.03")


@pytest.mark.parametrize("name, cap", [
    ("NVIDIA A100-SXM4-80GB", "8.0"), ("NVIDIA A10", "8.6"), ("NVIDIA A10G", "8.6"),
    ("NVIDIA GeForce RTX 4090", "8.9"), ("NVIDIA L40S", "8.9"), ("Tesla T4", "7.5"),
    ("Tesla V100-SXM2-16GB", "7.0"), ("NVIDIA H100 80GB HBM3", "9.0"), ("NVIDIA B200", "10.0"),
    ("NVIDIA RTX PRO 6000 Blackwell Server Edition", "12.0"), ("Mystery GPU", "0.0"),
])
def test_name_table(name: str, cap: str) -> None:
    assert compute_cap_from_name(name) == cap


def _raw(rc: int, out: str) -> dict:
    return {"rc": rc, "out": out, "err": ""}


def test_nvidia_failure_modes() -> None:
    assert parse_nvidia(None)["nvidia_smi"] == "missing"
    broken = parse_nvidia({"query": _raw(9, "NVIDIA-SMI has failed because it couldn't "
                                            "communicate with the NVIDIA driver. Make sure..."),
                           "query_no_cap": None, "table": _raw(9, "")})
    assert broken["nvidia_smi"] == "error" and broken["gpus"] == ()
    assert "exit 9" in broken["nvidia_smi_error"]
    assert "communicate with the NVIDIA driver" in broken["nvidia_smi_error"]
    none = parse_nvidia({"query": _raw(6, "No devices were found\n"), "query_no_cap": None,
                         "table": _raw(6, "No devices were found\n")})
    assert none["gpus"] == () and "No devices were found" in none["nvidia_smi_error"]


def test_nvidia_r470_fallback_uses_table_cuda() -> None:
    table = (FIXTURES / "table-r470-snap-binary.txt").read_text()
    got = parse_nvidia({
        "query": _raw(2, 'Field "compute_cap" is not a valid field to query.\n'),
        "query_no_cap": _raw(0, "0, NVIDIA A100-SXM4-80GB, GPU-1, 81920, 0, 470.182.03\n"),
        "table": _raw(0, table)})
    assert got["nvidia_smi"] == "ok"
    assert (got["gpus"][0].sm, got["driver_version"], got["cuda_version"]) == (
        80, "470.182.03", "13.0")


# --------------------------------------------------------------------------- the real script


def _run(command: str) -> str:
    got = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=60)
    assert got.returncode == 0, got.stderr
    return got.stdout


def test_script_on_this_machine(tmp_path: Path) -> None:
    """The script really runs (stdlib only) and its frame parses into this machine's facts."""
    releases = tmp_path / "releases"
    rel = releases / "fastdeploy-2.5.0_paddle-3.3.1_cu126"
    site = rel / "lib" / "python3.10" / "site-packages"
    (site / "paddlepaddle_gpu-3.3.1.dist-info").mkdir(parents=True)
    (site / "fastdeploy_gpu-2.5.0.dist-info").mkdir()
    (rel / ".provision-complete").touch()
    (releases / "half-built.partial").mkdir()
    venv = tmp_path / "venv"
    venv.symlink_to(rel)
    env = tmp_path / "env"
    env.write_text("FD_API_KEY='x'\n")
    env.chmod(0o600)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    settings = Settings(python=sys.executable, releases_dir=str(releases), venv_dir=str(venv),
                        env_file=str(env), model_cache_dir=str(tmp_path / "no" / "such"),
                        service_name="provision-test-absent", api_port=port)
    try:
        facts = parse_facts("here", "login banner\n" + _run(gather_command(settings)))
    finally:
        listener.close()
    assert facts.hostname == socket.gethostname()
    assert facts.kernel == "Linux"
    assert facts.python_version == ".".join(map(str, sys.version_info[:3]))
    assert facts.installed.current_release == rel.name
    assert facts.installed.releases == (rel.name,)
    assert (facts.installed.paddle_version, facts.installed.fastdeploy_version) == (
        "3.3.1", "2.5.0")
    assert facts.installed.env_mode == 0o600 and facts.installed.unit_text is None
    assert facts.disk_free_mib[str(tmp_path / "no" / "such")] > 0  # nearest existing ancestor
    mine = [lst for lst in facts.listeners if lst.port == port]
    assert mine and mine[0].pid == os.getpid()


def test_host_without_the_interpreter_still_frames() -> None:
    facts = parse_facts("h", _run(gather_command(Settings(python="python-does-not-exist"))))
    assert facts.python_version is None


def test_missing_frame_names_the_host_and_shows_output() -> None:
    with pytest.raises(ProvisionError, match=r"(?s)gpu7: .*Welcome to the machine"):
        parse_facts("gpu7", "Welcome to the machine\n")
    with pytest.raises(ProvisionError, match="gpu7: the facts frame is not valid JSON"):
        parse_facts("gpu7", f"{BEGIN}\n{{oops\n{END}\n")


def test_a_failed_builds_partial_counts_as_free_disk(tmp_path) -> None:
    """Smaller finding: the .partial a failed build left is deleted by the next build, so
    pre-flight must not refuse the host for the space it holds."""
    import importlib.util

    from provision.facts import _SCRIPT

    spec = importlib.util.spec_from_file_location("facts_script", _SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    partial = tmp_path / "rel.partial" / "lib"
    partial.mkdir(parents=True)
    (partial / "big").write_bytes(b"x" * (3 * 1024 * 1024))
    (tmp_path / "complete").mkdir()
    (tmp_path / "complete" / "big").write_bytes(b"x" * (5 * 1024 * 1024))
    assert script.partial_mib(str(tmp_path)) == 3
