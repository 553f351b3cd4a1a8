"""The plan for every lab GPU profile and variable set, without SSH (pyinfra-style tables)."""

from __future__ import annotations

import dataclasses

import pytest

from provision.model import Listener, Settings
from provision.plan import describe_plan, make_plan, plan_diffs
from provision.preflight import preflight
from provision_lab.profiles import load_profiles
from tests.unit.lab_facts import converged, facts_from_profile

BASE = "http://10.0.0.1:8080/simple"
UBUNTU = dict(os_id="ubuntu", os_version_id="22.04", python_version="3.10.12")


def ubuntu(profile: str, base: str = Settings().package_index_url, **changes):
    """A bare Ubuntu 22.04 host (Python 3.10) with this lab GPU profile."""
    return facts_from_profile(profile, base, **{**UBUNTU, **changes})

# profile -> version -> (release name, fastdeploy index) or the error keys pre-flight reports
EXPECTED = {
    ("a100", "2.4.0"): ("fastdeploy-2.4.0_paddle-3.3.0_cu126_sm80_90", "fastdeploy-gpu-80_90"),
    ("a100", "2.5.0"): ("fastdeploy-2.5.0_paddle-3.3.1_cu126", "cu126"),
    ("h100", "2.4.0"): ("fastdeploy-2.4.0_paddle-3.3.0_cu126_sm80_90", "fastdeploy-gpu-80_90"),
    ("h100", "2.5.0"): ("fastdeploy-2.5.0_paddle-3.3.1_cu129", "cu129"),
    ("a10", "2.4.0"): ("fastdeploy-2.4.0_paddle-3.3.0_cu126_sm86_89", "fastdeploy-gpu-86_89"),
    ("a10", "2.5.0"): ("fastdeploy-2.5.0_paddle-3.3.1_cu126", "cu126"),
    ("l40s", "2.4.0"): ("fastdeploy-2.4.0_paddle-3.3.0_cu126_sm86_89", "fastdeploy-gpu-86_89"),
    ("l40s", "2.5.0"): ("fastdeploy-2.5.0_paddle-3.3.1_cu126", "cu126"),
    ("rtx4090", "2.4.0"): ("fastdeploy-2.4.0_paddle-3.3.0_cu126_sm86_89",
                           "fastdeploy-gpu-86_89"),
    ("rtx4090", "2.5.0"): ("fastdeploy-2.5.0_paddle-3.3.1_cu126", "cu126"),
    ("a100x8", "2.4.0"): ("fastdeploy-2.4.0_paddle-3.3.0_cu126_sm80_90",
                          "fastdeploy-gpu-80_90"),
    ("a100x8", "2.5.0"): ("fastdeploy-2.5.0_paddle-3.3.1_cu126", "cu126"),
    ("t4", "2.4.0"): {"gpu.compute_cap", "gpu.memory"},  # its R535 driver is fine (C4)
    ("t4", "2.5.0"): {"gpu.compute_cap", "gpu.memory"},
    ("olddriver", "2.4.0"): {"driver_version"},
    ("olddriver", "2.5.0"): {"driver_version"},
    ("brokendriver", "2.4.0"): {"gpus"},
    ("brokendriver", "2.5.0"): {"gpus"},
    ("nogpu", "2.4.0"): {"gpus"},
    ("nogpu", "2.5.0"): {"gpus"},
    # R535 (CUDA 12.2) runs the CUDA 12.6 builds through minor-version compatibility (C4)
    ("r535", "2.4.0"): ("fastdeploy-2.4.0_paddle-3.3.0_cu126_sm80_90", "fastdeploy-gpu-80_90"),
    ("r535", "2.5.0"): ("fastdeploy-2.5.0_paddle-3.3.1_cu126", "cu126"),
}
PROFILES = set(load_profiles())


def test_every_lab_profile_is_in_the_table() -> None:
    assert PROFILES <= {p for p, _ in EXPECTED}


@pytest.mark.parametrize("profile, version", sorted(k for k in EXPECTED if k[0] in PROFILES))
def test_profile_plan(profile: str, version: str) -> None:
    settings = Settings(fastdeploy_version=version, package_index_url=BASE)
    plan = make_plan(profile, ubuntu(profile, BASE), settings)
    want = EXPECTED[(profile, version)]
    if isinstance(want, set):
        assert {p.key for p in plan.errors} == want
        assert plan.steps == () and plan.install is None
        for problem in plan.errors:  # each names the host, the value and a fix
            assert str(problem).startswith(f"{profile}: ") and problem.fix and problem.value
        return
    name, fd_index = want
    assert plan.errors == ()
    assert {p.key for p in plan.warnings} <= {"quantization", "doubt C13-sm"}
    cuda_index = name.split("_")[2]
    assert plan.install.release == name
    assert plan.install.paddle_index_url == f"{BASE}/{cuda_index}/"
    assert plan.install.fastdeploy_index_url == f"{BASE}/{fd_index}/"
    assert [s.name for s in plan.steps] == ["release", "switch", "hosts", "env-file", "unit",
                                           "enable"]
    assert plan.restart
    build = plan.steps[0].script
    assert f"paddlepaddle-gpu=={plan.install.paddle_version}" in build
    assert f"fastdeploy-gpu=={version}" in build
    assert "--trusted-host 10.0.0.1" in build


def test_errors_come_all_at_once_and_name_the_fix() -> None:
    plan = make_plan("t4", ubuntu("t4"), Settings())
    by_key = {p.key: p for p in plan.errors}
    assert "7.5" in by_key["gpu.compute_cap"].value
    assert "driver_version" not in by_key  # 535.104.05: R535 runs CUDA 12.x builds (C4)
    old = make_plan("o", ubuntu("olddriver"), Settings()).errors[0]
    assert old.value == "470.182.03" and ">= 535" in old.message


def test_lab_host_gets_warnings_only() -> None:
    problems = preflight("gpu1", facts_from_profile("a100"), Settings(fastdeploy_version="2.4"))
    assert {p.key for p in problems} == {"os"}
    assert all(p.severity == "warning" for p in problems)


def test_default_server_flags_on_a100() -> None:
    plan = make_plan("a100", ubuntu("a100"), Settings())
    assert plan.install.fastdeploy_version == "2.5.0"  # the line 2.5, newest on the index
    assert plan.server_argv == (
        "--model", "baidu/ERNIE-4.5-VL-28B-A3B-Paddle",
        "--served-model-name", "baidu/ERNIE-4.5-VL-28B-A3B-Paddle", "--host", "0.0.0.0",
        "--port", "8180", "--metrics-port", "8181", "--engine-worker-queue-port", "8182",
        "--cache-queue-port", "8183", "--max-model-len", "32768", "--max-num-seqs", "32",
        "--reasoning-parser", "ernie-45-vl")
    assert plan.served_model == "baidu/ERNIE-4.5-VL-28B-A3B-Paddle"


def test_rtx4090_default_model_is_served_in_wint4_with_a_warning() -> None:
    """Decision: the default VL-28B does not fit a 24 GB card in bf16 or wint8; upstream's own
    recipe serves it there with wint4, so the plan picks wint4 and says so (a warning)."""
    plan = make_plan("4090", ubuntu("rtx4090"), Settings())
    assert plan.errors == ()
    assert ("--quantization", "wint4") == plan.server_argv[
        plan.server_argv.index("--quantization"):][:2]
    assert [p.value for p in plan.warnings if p.key == "quantization"] == ["wint4"]
    forced = make_plan("4090", ubuntu("rtx4090"), Settings(quantization="bf16"))
    assert [p.key for p in forced.errors] == ["gpu.memory"]
    assert "quantization=wint4" in forced.errors[0].fix
    # one 24 GB card: upstream's single-4090 example needs --max-num-batched-tokens 384 (C12)
    assert "--max-num-batched-tokens 384" in " ".join(plan.server_argv)
    big = make_plan("a100", ubuntu("a100"), Settings())
    assert "--max-num-batched-tokens" not in big.server_argv


@pytest.mark.parametrize("changes, present, absent", [
    (dict(model_dir="/models/vl28"), ["--model /models/vl28 --served-model-name "
                                      "baidu/ERNIE-4.5-VL-28B-A3B-Paddle"], []),
    (dict(fastdeploy_version="2.1.0"), ["--enable-mm"], []),
    (dict(fastdeploy_version="2.2.0"), [], ["--enable-mm"]),
    (dict(model="baidu/ERNIE-4.5-21B-A3B-PT"), ["--load-choices default_v1"],
     ["--reasoning-parser"]),
    (dict(reasoning_parser="ernie-x1"), ["--reasoning-parser ernie-x1"], ["ernie-45-vl"]),
    (dict(gpu_memory_utilization=0.85, extra_server_args=("--enable-logprob",)),
     ["--gpu-memory-utilization 0.85", "--enable-logprob"], []),
    (dict(tensor_parallel_size=4, quantization="wint8"),
     ["--tensor-parallel-size 4 --quantization wint8"], []),
])
def test_flags(changes: dict, present: list[str], absent: list[str]) -> None:
    plan = make_plan("h", ubuntu("a100x8"), Settings(**changes))
    assert plan.errors == ()
    text = " ".join(plan.server_argv)
    for group in present:
        assert group in text
    for flag in absent:
        assert flag not in text


@pytest.mark.parametrize("changes, facts_changes, key", [
    (dict(model="baidu/ERNIE-4.5-21B-A3B-PT", fastdeploy_version="2.0.0"), {},
     "fastdeploy_version"),
    (dict(tensor_parallel_size=2), {}, "tensor_parallel_size"),
    (dict(cuda="12.9", fastdeploy_version="2.4.0"), {}, "cuda"),
    ({}, dict(disk_free_mib={"/opt/fastdeploy/releases": 100_000,
                             "/var/lib/fastdeploy/models": 1000}), "disk_free_mib"),
    ({}, dict(disk_free_mib={"/opt/fastdeploy/releases": 1000,
                             "/var/lib/fastdeploy/models": 100_000}), "disk_free_mib"),
    ({}, dict(listeners=(Listener(8182, 4242, "nginx", "nginx.service"),)),
     "engine_worker_queue_port"),
    ({}, dict(systemd_state="offline"), "systemd_state"),
    ({}, dict(kernel="Darwin"), "kernel"),
    ({}, dict(python_version=None), "python3"),
])
def test_preflight_errors(changes: dict, facts_changes: dict, key: str) -> None:
    facts = ubuntu("a100", **facts_changes)
    plan = make_plan("h", facts, Settings(**changes))
    assert key in {p.key for p in plan.errors}
    assert plan.steps == ()


def test_what_is_not_an_error() -> None:
    ours = Listener(8180, 99, "python", "fastdeploy.service")
    small = {"/opt/fastdeploy/releases": 100_000, "/var/lib/fastdeploy/models": 10}
    for facts, settings in [
        (ubuntu("a100", listeners=(ours,)), Settings()),
        (ubuntu("a100", disk_free_mib=small), Settings(model_dir="/models/x")),
        (ubuntu("a100", disk_free_mib=small, model_present=True), Settings()),
        (facts_from_profile("a100"), Settings(fastdeploy_version="2.4")),
    ]:
        assert make_plan("h", facts, settings).errors == ()
    assert make_plan("h", ubuntu("a100"), Settings()).problems == ()


@pytest.mark.parametrize("profile, version", [("a100", "2.5.0"), ("h100", "2.4.0"),
                                              ("rtx4090", "2.5.0"), ("a100x8", "2.5.0")])
def test_converged_host_has_zero_steps(profile: str, version: str) -> None:
    settings = Settings(fastdeploy_version=version, api_key="s3cret")
    facts = ubuntu(profile)
    first = make_plan("h", facts, settings)
    second = make_plan("h", converged(facts, settings, first), settings)
    assert second.steps == () and not second.restart
    assert "nothing to change" in "\n".join(describe_plan(second))


def test_partial_convergence_changes_only_what_differs() -> None:
    settings = Settings()
    facts = ubuntu("a100")
    done = converged(facts, settings, make_plan("h", facts, settings))
    stopped = dataclasses.replace(done, installed=dataclasses.replace(
        done.installed, service_active="failed"))
    plan = make_plan("h", stopped, settings)
    assert plan.steps == () and plan.restart
    other = make_plan("h", done, Settings(max_num_seqs=64))
    assert [s.name for s in other.steps] == ["unit"] and other.restart
    assert "+ExecStart=" in plan_diffs(other) and "--max-num-seqs 64" in plan_diffs(other)
    upgrade = make_plan("h", done, Settings(fastdeploy_version="2.4.0"))
    assert [s.name for s in upgrade.steps] == ["release", "switch"]
    bare = make_plan("h", dataclasses.replace(facts, has_venv=False, has_pip=False), settings)
    assert bare.steps[0].name == "packages"


def test_check_and_diff_output_hide_the_secret() -> None:
    settings = Settings(api_key="s3cret-value")
    plan = make_plan("h", ubuntu("a100"), settings)
    text = "\n".join(describe_plan(plan)) + plan_diffs(plan)
    assert "s3cret-value" not in text
    assert "would change: release" in text and "+++ /etc/hosts" in text
    assert "FD_API_KEY=" in text and "********" in text
