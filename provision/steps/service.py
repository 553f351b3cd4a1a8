"""Steps: the service's directories, env file, systemd unit and enablement.

The unit and env file are rendered purely (render_unit / render_env) and compared by
sha256 with what the facts trip saw, so "changed" is decided without touching the host.
The start itself is a handler: steps only set notifies_restart, plan.py decides once.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from pathlib import Path

import jinja2

from provision import shell
from provision.facts import unit_path
from provision.model import Facts, ProvisionError, Settings, Step
from provision.steps.hosts import text_diff
from provision.upload import MASK, Upload

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
ENV_MODE = 0o600
TIMEOUT_STOP_S = 90  # graceful shutdown defaults to 0 (no timeout, C10): systemd's bound
RESTART_S = 15
NOFILE = 65536
_SAFE = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")


def systemd_quote(word: str, exec_line: bool = True) -> str:
    """One word for ExecStart= (or Environment= with exec_line=False), as systemd parses it.

    systemd splits on whitespace, unquotes "..." with C escapes, expands %-specifiers
    everywhere and $VAR only on Exec lines, so those become %% and $$.

    >>> systemd_quote("a b")
    '"a b"'
    >>> systemd_quote('{"image": 1}')
    '"{\\\\"image\\\\": 1}"'
    """
    if "\n" in word or "\r" in word:
        raise ProvisionError(f"a value for the systemd unit contains a line break: {word!r}")
    text = word.replace("%", "%%")
    if exec_line:
        text = text.replace("$", "$$")
    if word and _SAFE.fullmatch(word):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def sd_text(value: str) -> str:
    """A plain unit value (path, description): only %-specifiers need escaping."""
    if "\n" in value:
        raise ProvisionError(f"a value for the systemd unit contains a line break: {value!r}")
    return value.replace("%", "%%")


def env_quote(value: str) -> str:
    """An EnvironmentFile value: single quotes are literal in systemd's env-file parser."""
    if "'" in value or "\n" in value:
        raise ProvisionError("the value for the env file contains a quote or line break; "
                             "use a key without ' or newline")
    return f"'{value}'"


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.filters.update(sd_quote=lambda v: systemd_quote(v, exec_line=False), sd_text=sd_text)
    return env


def model_cache_env(settings: Settings, flat_cache: bool = False) -> str:
    """FD_MODEL_CACHE: on releases that download into it directly (2.0.x, C8) it is the
    model's own <cache>/PaddlePaddle/<name>, where newer releases put it, so two models never
    share a directory and the facts trip finds the weights in the same place."""
    if not flat_cache or settings.model_dir:
        return settings.model_cache_dir
    return f"{settings.model_cache_dir}/PaddlePaddle/{settings.model.rsplit('/', 1)[-1]}"


# Binds the metrics port to the host's loopback, then runs the server as `-m` would.
# Upstream's metrics server binds 0.0.0.0 whatever --host says, and its /config-info dumps
# FD_API_KEY (api_server.py@a2bd99e, C3): with a key, that port must not face the network.
LOCAL_METRICS_LAUNCHER = (
    "import runpy,socket,sys;P=int(sys.argv.pop(1));B=socket.socket.bind;"
    "L={socket.AF_INET:'127.0.0.1',socket.AF_INET6:'::1'};"
    "socket.socket.bind=lambda s,a:B(s,(L[s.family],*a[1:]) if type(a) is tuple and len(a)>1 "
    "and a[1]==P and a[0] in ('','0.0.0.0','::') and s.family in L else a);"
    "sys.argv[0]='fastdeploy.entrypoints.openai.api_server';"
    "runpy.run_module(sys.argv[0],run_name='__main__',alter_sys=True)"
)


def unit_environment(settings: Settings, flat_cache: bool = False) -> list[str]:
    """Environment= assignments: HOME and FD_MODEL_CACHE explicit (reference §6 #19)."""
    items = [f"HOME={settings.data_dir}",
             f"FD_MODEL_CACHE={model_cache_env(settings, flat_cache)}",
             f"FD_LOG_DIR={settings.log_dir}", "ENABLE_V1_KVCACHE_SCHEDULER=1"]
    if settings.cuda_visible_devices:
        items.append(f"CUDA_VISIBLE_DEVICES={settings.cuda_visible_devices}")
    return items


def exec_argv(settings: Settings, server_argv: tuple[str, ...],
              local_metrics: bool = False) -> tuple[str, ...]:
    python = f"{settings.venv_dir}/bin/python"
    if local_metrics:
        return (python, "-c", LOCAL_METRICS_LAUNCHER, str(settings.metrics_port), *server_argv)
    return (python, "-m", "fastdeploy.entrypoints.openai.api_server", *server_argv)


def render_unit(settings: Settings, server_argv: tuple[str, ...], local_metrics: bool = False,
                flat_cache: bool = False) -> str:
    """The unit file text (pure), from templates/fastdeploy.service.j2."""
    argv = exec_argv(settings, server_argv, local_metrics)
    return _env().get_template("fastdeploy.service.j2").render(
        service_name=settings.service_name, served_model=settings.model,
        data_dir=settings.data_dir, environment=unit_environment(settings, flat_cache),
        env_file=settings.env_file,
        exec_start=" ".join(systemd_quote(w) for w in argv),
        timeout_stop_s=TIMEOUT_STOP_S, restart_s=RESTART_S, nofile=NOFILE)


def render_env(settings: Settings, masked: bool = False) -> str:
    """The env file text (pure): secrets only; FD_API_KEY when api_key is set.

    `masked` renders the same file with each secret value replaced by the mask, so a diff
    shows the shape of the file without substring-replacing (a short key would otherwise
    mask, and so reveal, every place its letters happen to occur).
    """
    variables = [("FD_API_KEY", settings.api_key)] if settings.api_key else []
    return _env().get_template("fastdeploy.env.j2").render(
        variables=[(k, MASK if masked else env_quote(v)) for k, v in variables])


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def env_step(facts: Facts, settings: Settings) -> Step | None:
    text = render_env(settings)
    inst = facts.installed
    if inst.env_sha256 == sha256(text) and inst.env_mode == ENV_MODE:
        return None
    if inst.env_sha256 is None:
        why = f"create {settings.env_file}"
    elif inst.env_sha256 != sha256(text):
        why = f"{settings.env_file} differs (contents not shown: secrets)"
    else:
        why = f"{settings.env_file} has mode {oct(inst.env_mode or 0)}, want 0o600"
    upload = Upload(settings.env_file, text.encode(), mode="0600", secret=True)
    return Step(name="env-file", reason=why, script=shell.script(upload.script_lines()),
                diff=text_diff(settings.env_file, None, render_env(settings, masked=True)).replace(
                    "--- /dev/null", f"--- {settings.env_file} (old contents not shown)"),
                notifies_restart=True, timeout_s=60, upload=upload)


def unit_step(facts: Facts, settings: Settings, server_argv: tuple[str, ...],
              local_metrics: bool = False, flat_cache: bool = False) -> Step | None:
    """Directories + unit file + daemon-reload, only when the unit's digest differs."""
    text = render_unit(settings, server_argv, local_metrics, flat_cache)
    if facts.installed.unit_sha256 == sha256(text):
        return None
    path = unit_path(settings)
    dirs = tuple(dict.fromkeys((settings.data_dir, settings.log_dir, settings.model_cache_dir,
                                model_cache_env(settings, flat_cache))))
    upload = Upload(path, text.encode(), mode="0644")
    return Step(
        name="unit",
        reason=(f"create {path}" if facts.installed.unit_text is None
                else f"{path} differs from the rendered unit"),
        script=shell.script([shell.cmd("mkdir", "-p", *dirs), *upload.script_lines(),
                             shell.cmd("systemctl", "daemon-reload")]),
        diff=text_diff(path, facts.installed.unit_text, text),
        notifies_restart=True, timeout_s=120, upload=upload)


def enable_step(facts: Facts, settings: Settings) -> Step | None:
    if facts.installed.service_enabled == "enabled":
        return None
    return Step(name="enable",
                reason=f"{settings.service_name} is {facts.installed.service_enabled or 'absent'}"
                       ", not enabled at boot",
                script=shell.script([shell.cmd("systemctl", "enable", settings.service_name)]),
                timeout_s=120)


def service_steps(facts: Facts, settings: Settings, server_argv: tuple[str, ...],
                  local_metrics: bool = False, flat_cache: bool = False) -> list[Step]:
    steps = [env_step(facts, settings),
             unit_step(facts, settings, server_argv, local_metrics, flat_cache),
             enable_step(facts, settings)]
    return [s for s in steps if s is not None]
