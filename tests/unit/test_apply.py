"""provision.apply on a real sshd and a real HTTP server, with plans written by the test.

The plan and facts stages are pure and tested on their own; here they are
replaced by fixed values so that what is under test is the carrying out: one
exec per step, stop at the first failure, the restart handler, verification
over HTTP, diagnostics in one exec, and the exec budget of a converged host.
"""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import pytest

from provision import apply, shell
from provision.apply import Options, converge_host
from provision.model import Facts, HostSpec, Plan, Problem, Settings, Step
from provision.report import Reporter
from provision.steps.release import CAUSE
from tests.unit.sshd_server import Sshd
from tests.unit.test_verify import Behaviour, Server

FACTS = Facts(hostname="box", kernel="Linux", arch="x86_64", os_id="ubuntu",
              os_version_id="22.04", os_id_like="debian", os_pretty="Ubuntu 22.04",
              etc_hosts="", cloud_hosts_template=None, python_version="3.11.2",
              has_venv=True, has_pip=True, nvidia_smi="ok", nvidia_smi_error=None, gpus=(),
              driver_version="555.42.02", cuda_version="12.5")
MODEL = "baidu/ERNIE-4.5-VL-28B-A3B-Paddle"


@pytest.fixture
def world(sshd: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A host (the local sshd), an HTTP server playing FastDeploy, and a plan to hand out."""
    monkeypatch.setenv("HOME", str(tmp_path))
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts_line())
    http = Server(Behaviour())
    settings = Settings(known_hosts_file=str(known), api_port=http.port,
                        metrics_port=http.port, log_dir=str(tmp_path / "log"),
                        service_name="provision-test-unit", health_timeout=5)
    spec = HostSpec(name="box", address="127.0.0.1", port=sshd.port, key_file=str(sshd.client_key))
    state = {"plan": Plan("box", (), (), None, (), MODEL, False)}
    monkeypatch.setattr(apply, "gather_command", lambda s: "echo facts")
    monkeypatch.setattr(apply, "parse_facts", lambda host, out: FACTS)
    monkeypatch.setattr(apply, "make_plan", lambda host, facts, s, roles=None: state["plan"])
    monkeypatch.setattr(apply, "describe_plan", lambda plan: [f"would: {s.name}"
                                                               for s in plan.steps])
    monkeypatch.setattr(apply, "plan_diffs", lambda plan: "+ExecStart=...")
    yield spec, settings, state, tmp_path
    http.stop()


def _run(world, **options):
    spec, settings, _, _ = world
    out = io.StringIO()
    return converge_host(spec, settings, Options(**options), Reporter(out)), out.getvalue()


def _step(name: str, *lines: str, restart: bool = False) -> Step:
    return Step(name, f"{name} needed", shell.script(lines), notifies_restart=restart)


def test_converged_host_costs_one_exec_and_verifies_over_http(world, sshd: Sshd) -> None:
    """The host lock (one long-lived session) with the facts run inside it once held."""
    before = sshd.exec_requests()
    result, out = _run(world)
    assert result.status == "ok" and result.error is None, out
    assert [s.name for s in result.steps] == ["facts", "verify health", "verify models",
                                              "verify chat", "verify metrics"]
    assert result.exec_requests == 1 == sshd.exec_requests() - before
    assert "box : " not in out  # the recap is the command's job, not the host's


def test_steps_run_in_order_and_stop_at_the_first_failure(world) -> None:
    spec, settings, state, tmp = world
    state["plan"] = replace(state["plan"], steps=(
        _step("one", shell.fmt("echo one > %s", tmp / "one")),
        _step("two", "echo 'something broke' >&2", "exit 7"),
        _step("three", shell.fmt("echo three > %s", tmp / "three")),
    ))
    result, out = _run(world)
    assert [(s.name, s.status) for s in result.steps] == [
        ("facts", "ok"), ("one", "changed"), ("two", "failed")]
    assert (tmp / "one").exists() and not (tmp / "three").exists()
    assert result.status == "failed" and result.failed_at == "apply"
    assert "something broke" in result.steps[-1].output and "exit 7" in result.error
    assert "box | two | failed" in out
    assert result.exec_requests == 3  # lock with the facts, one, two


def test_pip_failure_names_its_cause_not_the_python(world) -> None:
    """C1: a dependency missing from the general index is named as such; the host's Python
    (checked against the index's wheel tags before any change) is not blamed."""
    spec, settings, state, tmp = world
    state["plan"] = replace(state["plan"], steps=(_step(
        "release", "echo 'ERROR: No matching distribution found for paddleformers'",
        f"echo '{CAUSE} the dependencies did not install from the general index'",
        f"echo '{CAUSE} pip found no distribution for paddleformers there'", "exit 1"),))
    result, _ = _run(world)
    assert "general index" in result.error and "paddleformers" in result.error
    assert "Python" not in result.error


def test_pip_failure_names_the_cause_from_the_hosts_probe(world) -> None:
    """Finding F end to end over SSH: the probe runs in the failing step, apply names the
    cause (here: the index is closed) instead of blaming the Python version."""
    from provision import pipfail

    spec, settings, state, tmp = world
    probe = pipfail.probe_line("python3", "http://127.0.0.1:9/cu126/", "fastdeploy-gpu", 2)
    state["plan"] = replace(state["plan"], steps=(_step(
        "release", "echo 'ERROR: No matching distribution found for fastdeploy-gpu==2.5.0'",
        probe, "exit 1"),))
    result, _ = _run(world)
    assert "unreachable from the host: http://127.0.0.1:9/cu126/fastdeploy-gpu/" in result.error
    assert "Python" not in result.error


def test_preflight_errors_change_nothing(world) -> None:
    spec, settings, state, tmp = world
    problem = Problem("box", "gpu", "none", "no NVIDIA GPU found", "use a GPU host")
    state["plan"] = replace(state["plan"], problems=(problem,),
                            steps=(_step("one", shell.fmt("touch %s", tmp / "one")),))
    result, out = _run(world)
    assert result.failed_at == "preflight" and result.problems == [problem]
    assert not (tmp / "one").exists() and result.exec_requests == 1  # lock with the facts
    assert "box | ERROR: no NVIDIA GPU found (gpu=none). Fix: use a GPU host" in out


def test_check_mode_prints_the_plan_and_runs_nothing(world) -> None:
    spec, settings, state, tmp = world
    state["plan"] = replace(state["plan"], steps=(
        _step("venv", shell.fmt("touch %s", tmp / "venv")),), restart=True)
    result, out = _run(world, check=True, diff=True)
    assert result.status == "changed" and [s.status for s in result.steps] == ["ok", "changed"]
    assert "would: venv" in out and "+ExecStart=..." in out
    assert not (tmp / "venv").exists() and result.exec_requests == 1


def test_failed_restart_reports_the_logs(world, monkeypatch: pytest.MonkeyPatch) -> None:
    spec, settings, state, tmp = world
    (tmp / "log").mkdir()
    (tmp / "log" / "workerlog.0").write_text("ValueError: begin_norm_axis must be in range\n")
    monkeypatch.setattr(apply, "restart_script", lambda s: "echo 'unit not found' >&2; exit 5")
    state["plan"] = replace(state["plan"], steps=(_step("unit", "true", restart=True),),
                            restart=True)
    result, _ = _run(world)
    assert result.status == "failed" and result.failed_at == "apply"
    assert "unit not found" in result.error
    assert "begin_norm_axis" in result.error  # workerlog.0, fetched with the journal
    assert result.exec_requests == 4  # lock with the facts, unit, restart, diagnostics


def test_verify_failure_carries_the_worker_log(world) -> None:
    spec, settings, state, tmp = world
    (tmp / "log").mkdir()
    (tmp / "log" / "workerlog.0").write_text("CUDA error 209: no kernel image\n")
    settings = replace(settings, api_port=1, metrics_port=1)  # nothing listens there
    out = io.StringIO()
    result = converge_host(spec, settings, Options(), Reporter(out))
    assert result.failed_at == "verify"
    assert "not healthy within 5s" in result.error and "CUDA error 209" in result.error


def test_api_key_reaches_the_env_file_but_never_argv(world) -> None:
    """Finding G: the env file's bytes travel on stdin; the remote shell's argv lacks the key."""
    from provision.steps.service import env_step
    from tests.unit.lab_facts import facts_from_profile

    spec, settings, state, tmp = world
    key = "sk-secret-4242"
    env_file = tmp / "etc" / "env"
    step = env_step(facts_from_profile("a100"), replace(settings, api_key=key,
                                                        env_file=str(env_file)))
    assert step is not None
    spy = shell.fmt("tr '\\0' ' ' < /proc/$$/cmdline > %s", tmp / "argv")
    state["plan"] = replace(state["plan"], steps=(replace(
        step, script=step.script.replace("set -eu\n", f"set -eu\n{spy}\n", 1)),))
    result, out = _run(world)
    assert [s.status for s in result.steps[:2]] == ["ok", "changed"], out
    argv = (tmp / "argv").read_text()
    assert "/bin/sh -c" in argv and "FD_API_KEY" not in argv and key not in argv
    assert f"FD_API_KEY='{key}'" in env_file.read_text()
    assert oct(env_file.stat().st_mode & 0o777) == "0o600"
    assert key not in out


# --------------------------------------------------------------------------- where verify goes


def test_verify_goes_through_the_ssh_connection(world, sshd: Sshd) -> None:
    """Finding A: the server is asked on the host's own loopback, through the connection,
    never at the SSH address (a mapped port or bastion there could be another server)."""
    spec, settings, _, _ = world
    asked: list[tuple[str, int]] = []
    with apply.Remote(spec, settings) as remote:
        route = apply.Route(remote, settings, probe=lambda h, p: asked.append((h, p)) or True)
        with route:
            assert route.tunnelled and asked == []
            import requests

            assert requests.get(f"{route.api}/health", timeout=5).status_code == 200


def test_without_forwarding_only_a_port_that_answers_is_used(
        tmp_path_factory: pytest.TempPathFactory, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """sshd forbids forwarding: direct only when the port accepts; else a clear error at
    once instead of taking "refused" for "loading" until health_timeout."""
    from provision.model import ProvisionError

    closed = Sshd(tmp_path_factory.mktemp("sshd-noforward"), forwarding=False)
    try:
        monkeypatch.setenv("HOME", str(tmp_path))
        known = tmp_path / "known_hosts"
        known.write_text(closed.known_hosts_line())
        settings = Settings(known_hosts_file=str(known), api_port=9, metrics_port=10)
        spec = HostSpec(name="box", address="127.0.0.1", port=closed.port,
                        key_file=str(closed.client_key))
        with apply.Remote(spec, settings) as remote:
            assert not remote.can_forward("127.0.0.1", 9)
            with apply.Route(remote, settings, probe=lambda h, p: True) as route:
                assert not route.tunnelled and route.api == "http://127.0.0.1:9"
            with pytest.raises(ProvisionError, match="refuses port forwarding"):
                apply.Route(remote, settings, probe=lambda h, p: False)
    finally:
        closed.stop()
