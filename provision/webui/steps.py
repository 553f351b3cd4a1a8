"""The chat page's pre-flight and steps: pure functions of (facts, settings).

Like the server's steps, each file is rendered here and compared by sha256 with what the
facts trip saw, so a converged page costs no exec request. Gradio comes from the general
index (`pip_extra_index_url`, else the host's own pip configuration: a site mirror or
PyPI), never from the Paddle index, pinned to GRADIO. A changed page notifies the page's
own restart, which apply runs after the API server is verified.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from provision import shell
from provision.chat_client import is_vision, thinking_switch
from provision.model import Facts, Problem, Settings, Step
from provision.steps.hosts import text_diff
from provision.steps.service import MASK, _env, env_quote, sha256, systemd_quote
from provision.upload import Upload
from provision.webui import APP_SOURCE, GRADIO, GRADIO_MIN_PYTHON, WebPaths, web_paths

ENV_MODE = 0o600


# --------------------------------------------------------------------------- rendering


def api_url(settings: Settings) -> str:
    """How the page reaches the API on its own host."""
    host = settings.server_host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://{f'[{host}]' if ':' in host else host}:{settings.api_port}"


def render_config(settings: Settings) -> str:
    """The page's config.json (no secrets): API, model, its thinking switch, port."""
    switch = thinking_switch(settings.model, settings.reasoning_parser)
    vision = is_vision(settings.model)
    config = {
        "api": api_url(settings), "model": settings.model, "port": settings.web_port,
        "bind": "0.0.0.0", "think_on": switch.fields(True), "think_off": switch.fields(False),
        "think_default": True,
        "vision": vision if vision is not None else "-VL-" in settings.model,
    }
    return json.dumps(config, indent=2, sort_keys=True) + "\n"


def render_env(settings: Settings) -> str:
    pairs = [("PROVISION_WEB_API_KEY", settings.api_key),
             ("PROVISION_WEB_PASSWORD", settings.web_password)]
    return _env().get_template("fastdeploy.env.j2").render(
        variables=[(k, env_quote(v)) for k, v in pairs if v])


def render_unit(settings: Settings) -> str:
    paths = web_paths(settings)
    argv = (f"{paths.venv}/bin/python", paths.app, paths.config)
    return _env().get_template("webui.service.j2").render(
        unit=paths.unit, api_unit=settings.service_name, served_model=settings.model,
        state_dir=paths.unit, env_file=paths.env_file,
        exec_start=" ".join(systemd_quote(w) for w in argv))


def pip_install(settings: Settings, paths: WebPaths) -> list[str]:
    """pip arguments for the pinned Gradio, from the general index only."""
    args = ["install", "--disable-pip-version-check", "--no-input", f"gradio=={GRADIO}"]
    url = settings.pip_extra_index_url
    if url:
        args += ["--index-url", url]
        parts = urlsplit(url)
        if parts.scheme == "http" and parts.hostname:
            args += ["--trusted-host", parts.hostname]
    return [f"{paths.venv}/bin/python", "-m", "pip", *args]


# --------------------------------------------------------------------------- pre-flight


def web_problems(host: str, facts: Facts, settings: Settings) -> list[Problem]:
    if not settings.web_ui:
        return []
    problems = []
    if not settings.web_password:
        problems.append(Problem(
            host, "web_password", "unset",
            f"the chat page on port {settings.web_port} has no login: it serves the model to "
            "anyone who reaches that port", "set web_password (a secret), or firewall the "
            "port", severity="warning"))
    version = tuple(int(x) for x in (facts.python_version or "0.0").split(".")[:2])
    if facts.python_version and version < GRADIO_MIN_PYTHON:
        problems.append(Problem(
            host, "python_version", facts.python_version,
            f"Gradio {GRADIO} (the chat page) needs Python "
            f"{'.'.join(map(str, GRADIO_MIN_PYTHON))} or newer",
            "set python to a newer interpreter on the host, or web_ui: false"))
    unit = f"{web_paths(settings).unit}.service"
    for listener in facts.listeners:
        if listener.port == settings.web_port and listener.unit != unit:
            owner = listener.unit or listener.command or "another process"
            problems.append(Problem(
                host, "web_port", str(settings.web_port),
                f"port {settings.web_port} is already taken by {owner}",
                "choose another web_port, or stop what holds it"))
    return problems


# --------------------------------------------------------------------------- steps


def _venv_step(facts: Facts, settings: Settings, paths: WebPaths) -> Step | None:
    have = facts.installed.web.gradio_version
    if have == GRADIO:
        return None
    script = shell.script([
        shell.fmt("[ -x %s/bin/python ] || %s -m venv %s", paths.venv, settings.python,
                  paths.venv),
        shell.cmd(*pip_install(settings, paths)),
    ])
    why = f"gradio {have} in {paths.venv}, want {GRADIO}" if have else \
        f"create {paths.venv} with gradio {GRADIO}"
    return Step("web-venv", why, script, notifies_web=True, timeout_s=1800)


def _file_step(name: str, path: str, text: str, have: str | None, home: tuple[str, ...],
               diff: bool) -> Step | None:
    """One page file, sent on stdin (provision/upload.py), only when its digest differs."""
    if have == sha256(text):
        return None
    upload = Upload(path, text.encode(), mode="0644")
    # Readable by the page's dynamic user: the directories are made 0755 first.
    script = shell.script([shell.cmd("install", "-d", "-m", "0755", *home),
                           *upload.script_lines()])
    return Step(name, f"{path} {'differs' if have else 'is missing'}", script,
                diff=text_diff(path, None, text) if diff else None, notifies_web=True,
                timeout_s=60, upload=upload)


def _files_steps(facts: Facts, settings: Settings, paths: WebPaths) -> list[Step | None]:
    web, home = facts.installed.web, (paths.home, paths.config.rsplit("/", 1)[0])
    return [_file_step("web-app", paths.app, APP_SOURCE.read_text(), web.app_sha256, home,
                       diff=False),
            _file_step("web-config", paths.config, render_config(settings), web.config_sha256,
                       home, diff=True)]


def _env_step(facts: Facts, settings: Settings, paths: WebPaths) -> Step | None:
    web, text = facts.installed.web, render_env(settings)
    if web.env_sha256 == sha256(text) and web.env_mode == ENV_MODE:
        return None
    masked = text
    for secret in (settings.api_key, settings.web_password):
        masked = masked.replace(secret, MASK) if secret else masked
    why = (f"create {paths.env_file}" if web.env_sha256 is None else
           f"{paths.env_file} differs or is not 0600 (contents not shown: secrets)")
    upload = Upload(paths.env_file, text.encode(), mode="0600", secret=True)
    return Step("web-env", why, shell.script(upload.script_lines()),
                diff=text_diff(paths.env_file, None, masked), notifies_web=True, timeout_s=60,
                upload=upload)


def _unit_step(facts: Facts, settings: Settings, paths: WebPaths) -> Step | None:
    web, text = facts.installed.web, render_unit(settings)
    if web.unit_sha256 == sha256(text):
        return None
    upload = Upload(paths.unit_path, text.encode(), mode="0644")
    return Step("web-unit", f"create {paths.unit_path}" if web.unit_text is None else
                f"{paths.unit_path} differs from the rendered unit",
                shell.script([*upload.script_lines(), shell.cmd("systemctl", "daemon-reload")]),
                diff=text_diff(paths.unit_path, web.unit_text, text), notifies_web=True,
                timeout_s=120, upload=upload)


def _enable_step(facts: Facts, paths: WebPaths) -> Step | None:
    if facts.installed.web.enabled == "enabled":
        return None
    return Step("web-enable", f"{paths.unit} is not enabled at boot",
                shell.script([shell.cmd("systemctl", "enable", paths.unit)]), timeout_s=120)


def _remove_step(facts: Facts, paths: WebPaths) -> Step | None:
    """web_ui turned off: stop the page and remove it (its port closes)."""
    web = facts.installed.web
    if web.unit_text is None and web.app_sha256 is None and web.env_sha256 is None:
        return None
    return Step("web-remove", f"web_ui is off: stop and remove {paths.unit}", shell.script([
        shell.fmt("systemctl disable --now %s 2>/dev/null || true", paths.unit),
        shell.cmd("rm", "-rf", paths.unit_path, paths.home, paths.env_file.rsplit("/", 1)[0]),
        shell.cmd("systemctl", "daemon-reload"),
    ]), timeout_s=120)


def web_steps(facts: Facts, settings: Settings) -> list[Step]:
    paths = web_paths(settings)
    if not settings.web_ui:
        return [s for s in (_remove_step(facts, paths),) if s]
    steps = (_venv_step(facts, settings, paths), *_files_steps(facts, settings, paths),
             _env_step(facts, settings, paths), _unit_step(facts, settings, paths),
             _enable_step(facts, paths))
    return [s for s in steps if s is not None]


def web_restart(facts: Facts, settings: Settings, steps: list[Step]) -> bool:
    return settings.web_ui and (any(s.notifies_web for s in steps)
                                or facts.installed.web.active != "active")


def restart_script(settings: Settings) -> str:
    return shell.script([shell.cmd("systemctl", "restart", web_paths(settings).unit)])


def state_script(settings: Settings) -> str:
    """The page unit's state and its last journal lines, in one exec (a failing page)."""
    unit = web_paths(settings).unit
    return "\n".join([
        shell.cmd("systemctl", "show", "-p", "ActiveState", "-p", "SubState", "-p",
                  "NRestarts", "-p", "Result", unit),
        shell.fmt("journalctl -u %s -n 12 --no-pager -o cat 2>&1 | sed 's/^/journal: /'",
                  unit),
    ])
