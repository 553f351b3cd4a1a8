"""The chat page's plan (pure): steps, pre-flight, rendering, and its checks' parsing."""

from __future__ import annotations

import dataclasses
import json

import pytest

from provision.model import HostSpec, Listener, Settings, WebInstalled
from provision.plan import describe_plan, make_plan, plan_diffs
from provision.steps.service import sha256
from provision.variables import check_all, settings_for
from provision.webui import GRADIO, fact_args, web_paths
from provision.webui.check import last_answer, parse_state, wait_page
from provision.webui.steps import (
    APP_SOURCE,
    pip_install,
    render_config,
    render_env,
    render_unit,
    web_problems,
)
from tests.unit.lab_facts import converged, facts_from_profile

WEB = Settings(web_ui=True, web_password="s3cret-pw", api_key="k3y", fastdeploy_version="2.4",
               pip_extra_index_url="http://10.1.2.1:8701/simple")


def web_converged(facts, settings: Settings):
    """The facts after the page was deployed too (files, venv, unit as rendered)."""
    paths = web_paths(settings)
    web = WebInstalled(unit_sha256=sha256(render_unit(settings)),
                       unit_text=render_unit(settings), app_sha256=sha256(APP_SOURCE.read_text()),
                       config_sha256=sha256(render_config(settings)),
                       env_sha256=sha256(render_env(settings)), env_mode=0o600,
                       gradio_version=GRADIO, active="active", enabled="enabled")
    listener = Listener(settings.web_port, 99, "python", f"{paths.unit}.service")
    return dataclasses.replace(facts, installed=dataclasses.replace(facts.installed, web=web),
                               listeners=(*facts.listeners, listener))


def plans(settings: Settings = WEB):
    facts = facts_from_profile("a100")
    first = make_plan("gpu1", facts, settings)
    done = web_converged(converged(facts, settings, first), settings)
    return first, done


def test_fresh_host_gets_every_page_step_and_a_page_restart() -> None:
    first, _ = plans()
    names = [s.name for s in first.steps]
    assert names[-6:] == ["web-venv", "web-app", "web-config", "web-env", "web-unit",
                         "web-enable"]
    assert first.web_restart and "would restart the chat page" in "\n".join(describe_plan(first))


def test_converged_page_has_no_step_and_no_restart() -> None:
    _, done = plans()
    again = make_plan("gpu1", done, WEB)
    assert again.steps == () and not again.web_restart and not again.restart


def test_a_changed_port_rewrites_the_config_only_and_restarts_the_page() -> None:
    _, done = plans()
    moved = dataclasses.replace(WEB, web_port=7861)
    plan = make_plan("gpu1", done, moved)
    assert [s.name for s in plan.steps] == ["web-config"] and plan.web_restart and not plan.restart
    assert '"port": 7861' in plan_diffs(plan)


def test_a_stopped_page_is_restarted_and_a_new_gradio_reinstalled() -> None:
    _, done = plans()
    web = dataclasses.replace(done.installed.web, active="failed", gradio_version="4.44.0")
    plan = make_plan("gpu1", dataclasses.replace(
        done, installed=dataclasses.replace(done.installed, web=web)), WEB)
    [venv] = plan.steps
    assert venv.name == "web-venv" and "gradio 4.44.0" in venv.reason and plan.web_restart


def test_web_ui_off_removes_a_page_left_behind_and_nothing_otherwise() -> None:
    _, done = plans()
    off = dataclasses.replace(WEB, web_ui=False)
    [remove] = make_plan("gpu1", done, off).steps
    assert remove.name == "web-remove" and "disable --now fastdeploy-webui" in remove.script
    facts = facts_from_profile("a100")
    bare = converged(facts, off, make_plan("gpu1", facts, off))
    assert make_plan("gpu1", bare, off).steps == ()


def test_gradio_comes_from_the_general_index_pinned_never_the_paddle_index() -> None:
    argv = pip_install(WEB, web_paths(WEB))
    assert f"gradio=={GRADIO}" in argv and WEB.package_index_url not in argv
    assert argv[argv.index("--index-url") + 1] == "http://10.1.2.1:8701/simple"
    assert argv[argv.index("--trusted-host") + 1] == "10.1.2.1"
    host_config = pip_install(dataclasses.replace(WEB, pip_extra_index_url=None), web_paths(WEB))
    assert "--index-url" not in host_config  # the host's pip.conf (site mirror) or PyPI


def test_secrets_only_in_the_root_only_env_file_and_masked_in_diffs() -> None:
    config = json.loads(render_config(WEB))
    assert config["api"] == "http://127.0.0.1:8180" and config["port"] == 7860
    assert config["think_off"] == {"chat_template_kwargs": {"enable_thinking": False}}
    assert config["vision"] is True
    assert "s3cret-pw" not in render_config(WEB) + render_unit(WEB)
    env = render_env(WEB)
    assert "PROVISION_WEB_PASSWORD='s3cret-pw'" in env and "PROVISION_WEB_API_KEY='k3y'" in env
    first, _ = plans()
    shown = plan_diffs(first) + "\n".join(describe_plan(first))
    assert "s3cret-pw" not in shown and "k3y" not in shown
    [env_step] = [s for s in first.steps if s.name == "web-env"]
    assert "0600" in env_step.script


def test_the_unit_runs_unprivileged_from_its_own_venv() -> None:
    unit = render_unit(WEB)
    assert "DynamicUser=yes" in unit and "After=network-online.target fastdeploy.service" in unit
    assert ("ExecStart=/opt/fastdeploy-webui/venv/bin/python /opt/fastdeploy-webui/app.py "
            "/etc/fastdeploy-webui/config.json") in unit
    assert "EnvironmentFile=-/etc/fastdeploy-webui/env" in unit


def test_preflight_warns_without_a_password_and_refuses_a_taken_port() -> None:
    facts = facts_from_profile("a100")
    open_page = dataclasses.replace(WEB, web_password=None)
    [warning] = web_problems("gpu1", facts, open_page)
    assert warning.severity == "warning" and "anyone" in warning.message
    taken = dataclasses.replace(facts, listeners=(Listener(7860, 5, "nginx", "nginx.service"),))
    [error] = web_problems("gpu1", taken, WEB)
    assert error.key == "web_port" and "nginx.service" in error.message
    old = dataclasses.replace(facts, python_version="3.8.10")
    assert [p.key for p in web_problems("gpu1", old, WEB)] == ["python_version"]
    assert web_problems("gpu1", taken, dataclasses.replace(WEB, web_ui=False)) == []


@pytest.mark.parametrize(("raw", "ok"), [("true", True), ("no", True), (True, True),
                                         ("maybe", False)])
def test_web_variables_are_validated(raw, ok: bool) -> None:
    spec = HostSpec("gpu1", "10.0.0.2", vars={"web_ui": raw})
    assert (check_all([spec]) == []) is ok


def test_web_port_must_not_take_an_api_port_and_password_is_hidden() -> None:
    spec = HostSpec("gpu1", "10.0.0.2", vars={"web_ui": True, "web_port": 8180,
                                                "web_password": "a'b"})
    errors = {e.key: e for e in check_all([spec])}
    assert "same as api_port" in str(errors["web_port"])
    assert check_all([HostSpec("gpu1", "10.0.0.2", vars={"web_port": 8180})]) == []
    assert "a'b" not in str(errors["web_password"])
    assert settings_for(HostSpec("h", "a", vars={"web_ui": "yes"})).web_ui is True


def test_facts_args_name_the_pages_files() -> None:
    args = fact_args(WEB)
    assert args["service"] == "fastdeploy-webui" and args["env"] == "/etc/fastdeploy-webui/env"


def test_last_answer_skips_the_reasoning_block() -> None:
    view = [{"role": "user", "content": "q"},
            {"role": "assistant", "content": "hm", "metadata": {"title": "Thinking"}},
            {"role": "assistant", "content": " Yes. ", "metadata": None}]
    assert last_answer(view) == "Yes."
    assert last_answer(view[:2]) == "" and last_answer("nonsense") == ""


def test_parse_state_splits_the_unit_from_its_journal() -> None:
    state, journal = parse_state("ActiveState=activating\nSubState=auto-restart\nNRestarts=4\n"
                                 "journal: Traceback\njournal: PermissionError: x\n")
    assert state.broken and state.restarts == 4
    assert journal == "Traceback\nPermissionError: x"


def test_wait_page_gives_up_at_once_when_the_unit_keeps_failing() -> None:
    from provision.verify import UnitState

    calls = []

    def unit():
        calls.append(1)
        return UnitState("activating", "auto-restart", len(calls)), "journal line"

    check = wait_page("http://127.0.0.1:9", timeout=60, unit=unit, unit_every=0,
                      sleep=lambda _: None)
    assert not check.ok and "auto-restart" in check.detail and "journal line" in check.detail
    assert len(calls) == 1
