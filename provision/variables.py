"""Every variable provision reads: one table of names, types, defaults and docs, and validation.

The table is the single source for the README's reference and for the
checks: a value that reaches a unit file, a pip command or a URL is checked
here, against a strict pattern, before any connection, and the error names
the file and line it came from (HostSpec.sources), the key, the value and the
fix. Values are then converted to the Settings types ("8180" from `-e` -> 8180,
"" or null -> None for optional text, a string of server flags -> a tuple).

Unknown names are ignored (inventories carry other tools' variables), except
names close to one of ours (difflib), which are almost always typos of ours:
`api_prot` silently meaning the default port would be worse than an error.

`python -m provision.variables` prints the reference table as Markdown.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from provision import matrix, paths
from provision.inventory import ExtraVars, apply_extra_vars, parse_extra_vars
from provision.model import ConfigError, HostSpec, Settings

__all__ = ["VARIABLES", "Variable", "ExtraVars", "apply_extra_vars", "check_all",
           "markdown_table", "parse_extra_vars", "settings_for"]

HIDDEN = "<hidden>"
PORT_VARS = ("api_port", "metrics_port", "engine_worker_queue_port", "cache_queue_port")
QUANTIZATIONS = ("wint2", "wint4", "wint8", "block_wise_fp8", "w4a8")  # server's --quantization
# bf16 (models.yaml) means "no --quantization flag"; it is accepted too, as the plan knows it.

_ABS_PATH = re.compile(r"^/[A-Za-z0-9._/+-]*$")
_MODEL = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._/-]*$")
_URL = re.compile(r"^https?://[^\s'\"$`;\\<>|&(){}]+$")
_SERVICE = re.compile(r"^[a-zA-Z0-9_.@][a-zA-Z0-9_.@-]*$")
_CUDA = re.compile(r"^[0-9]+\.[0-9]+$")
_WORD = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._-]*$")
_HOST = re.compile(r"^[A-Za-z0-9.:_][A-Za-z0-9.:_-]*$")
_DEVICES = re.compile(r"^[A-Za-z0-9][A-Za-z0-9,-]*$")
_PROGRAM = re.compile(r"^[A-Za-z0-9._/+][A-Za-z0-9._/+-]*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Invalid(ValueError):
    """A value a check refused; the text is the fix."""


Check = Callable[[object], None]


@dataclass(frozen=True)
class Variable:
    """One variable: its Settings field, type as users read it, default and doc.

    `type` is one of: str, str?, int, int?, float?, bool, args (`?`: may be unset,
    written as null or "").
    """

    name: str
    type: str
    default: object
    doc: str
    secret: bool = False
    check: Check | None = field(default=None, repr=False, compare=False)


# --------------------------------------------------------------------------- checks


def _pattern(regex: re.Pattern, fix: str) -> Check:
    def check(value: object) -> None:
        if not regex.match(str(value)):
            raise Invalid(fix)
    return check


_path = _pattern(_ABS_PATH, "give an absolute path of letters, digits and . _ / + - "
                            "(no spaces or shell characters)")
_url = _pattern(_URL, "give an http:// or https:// URL without spaces, quotes, $, `, ; "
                      "or other shell characters")


def _positive(value: object) -> None:
    if value < 1:  # type: ignore[operator]
        raise Invalid("give a whole number of at least 1")


def _port(value: object) -> None:
    if not 1 <= value <= 65535:  # type: ignore[operator]
        raise Invalid("a TCP port is a whole number from 1 to 65535")


_VERSION = re.compile(r"^[0-9]+\.[0-9]+(\.[0-9]+)?$")


def _release(value: object) -> None:
    known = matrix.releases()
    if not _VERSION.match(str(value)):
        raise Invalid("give a release line (2.4: its newest patch on the index) or an exact "
                      "version (2.4.0); quote it in YAML")
    if matrix.line_of(str(value)) not in known:
        raise Invalid(f"release line {matrix.line_of(str(value))} is not in "
                      f"provision/data/releases.yaml; choose one of: {', '.join(known)} "
                      "(a new line is one data entry with its source)")


def _cuda(value: object) -> None:
    known = sorted({b.cuda for b in matrix.cuda_builds().values()}, key=matrix.version_key)
    if not _CUDA.match(str(value)) or value not in known:
        raise Invalid(f"give a CUDA version as MAJOR.MINOR (quote it in YAML), one of: "
                      f"{', '.join(known)}; or leave it unset for the newest the driver allows")


def _quantization(value: object) -> None:
    allowed = tuple(dict.fromkeys((*matrix.quantizations(), *QUANTIZATIONS)))
    if value not in allowed:
        raise Invalid(f"choose one of: {', '.join(allowed)}; or leave it unset to let the "
                      "catalogue pick what fits the GPU memory")


def _fraction(value: object) -> None:
    if not 0 < value <= 1:  # type: ignore[operator]
        raise Invalid("give a fraction of GPU memory, above 0 and at most 1 (e.g. 0.9)")


def _api_key(value: object) -> None:
    if _CONTROL.search(str(value)):
        raise Invalid("the API key must be one line without control characters")
    if "'" in str(value):  # the env file quotes values with ' (systemd reads them literally)
        raise Invalid("the API key must not contain a single quote ('); choose another key")


def _password(value: object) -> None:
    if _CONTROL.search(str(value)) or "'" in str(value):
        raise Invalid("the password must be one line without control characters or '")


def _server_args(value: object) -> None:
    args = tuple(value)  # type: ignore[call-overload]
    if args and not args[0].startswith("--"):
        raise Invalid("extra server arguments start with a --flag (values follow their flag)")
    for arg in args:
        if _CONTROL.search(arg):
            raise Invalid("extra server arguments must not contain newlines or control "
                          "characters")
        if arg.startswith("-") and not arg.startswith("--") and not _is_number(arg):
            raise Invalid(f"{arg!r}: the server's flags are long options (--name)")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- the table

_DEFAULTS = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
             for f in dataclasses.fields(Settings)}


def _var(name: str, type_: str, doc: str, check: Check | None = None,
         secret: bool = False) -> Variable:
    return Variable(name, type_, _DEFAULTS[name], doc, secret, check)


VARIABLES: tuple[Variable, ...] = (
    # --- fixed names: users, the lab and CI scripts rely on them
    _var("package_index_url", "str",
         "Base URL under which the Paddle (`cu126/`, ...) and FastDeploy "
         "(`fastdeploy-gpu-80_90/`, ...) package indexes live.", _url),
    _var("pip_extra_index_url", "str?",
         "General index for the ordinary dependencies (fastapi, uvicorn, paddleformers, "
         "numpy, ...). `paddlepaddle-gpu` and `fastdeploy-gpu` never come from it: they are "
         "installed without dependencies from the Paddle index only. Unset or \"\": the "
         "host's own pip configuration (pip.conf / PIP_INDEX_URL, e.g. a site mirror), else "
         "pip's default (pypi.org).", _url),
    _var("fastdeploy_version", "str",
         "FastDeploy to install: a release line (`2.4`: its newest patch on the index) or "
         "an exact version (`2.4.0`). Lines: provision/data/releases.yaml; versions and wheel "
         "tags: the index, asked from the host.", _release),
    _var("venv_dir", "str",
         "Link to the current release's virtualenv; the unit runs the server from it.", _path),
    _var("model", "str", "Model to serve: a Hugging Face / AI Studio name, or the served name "
                         "when `model_dir` is set.", _pattern(
                             _MODEL, "give a model name of letters, digits and . _ / - "
                                     "(e.g. baidu/ERNIE-4.5-0.3B-Paddle)")),
    _var("api_port", "int", "OpenAI-compatible API port (`--port`).", _port),
    _var("metrics_port", "int", "Prometheus metrics port (`--metrics-port`).", _port),
    _var("engine_worker_queue_port", "int", "Engine worker queue port.", _port),
    _var("cache_queue_port", "int", "Cache queue port.", _port),
    _var("health_timeout", "int",
         "Seconds to wait for `/health` after a restart (covers download and load).",
         _positive),
    _var("known_hosts_file", "str?",
         "Extra known_hosts file on this machine, checked first and where accepted keys are "
         "recorded. A relative path in an inventory is relative to its directory; from -e, to "
         "the current directory."),
    # --- ours
    _var("model_dir", "str?",
         "Weights already on the host: passed as `--model DIR --served-model-name MODEL`.",
         _path),
    _var("releases_dir", "str", "Where each release's virtualenv is built.", _path),
    _var("releases_keep", "int", "How many releases to keep (the current one included).",
         _positive),
    _var("data_dir", "str", "HOME and working directory of the service.", _path),
    _var("model_cache_dir", "str", "`FD_MODEL_CACHE`: where downloaded weights go.", _path),
    _var("log_dir", "str", "`FD_LOG_DIR`: the server's logs (`workerlog.0`, ...).", _path),
    _var("service_name", "str", "systemd unit name (without `.service`).", _pattern(
        _SERVICE, "give a unit name of letters, digits and _ . @ - (e.g. fastdeploy)")),
    _var("env_file", "str", "Environment file (mode 0600) for secrets such as `FD_API_KEY`.",
         _path),
    _var("api_key", "str?", "API key the server requires (`FD_API_KEY`); never printed.",
         _api_key, secret=True),
    _var("cuda", "str?", "Force a CUDA build (\"12.6\"); unset: the newest the driver allows.",
         _cuda),
    _var("server_host", "str", "Address the server listens on (`--host`).", _pattern(
        _HOST, "give an IP address or host name (letters, digits, . : _ -)")),
    _var("max_model_len", "int", "`--max-model-len`.", _positive),
    _var("max_num_seqs", "int", "`--max-num-seqs`.", _positive),
    _var("quantization", "str?",
         "`--quantization`; unset: the catalogue's choice for the GPU memory.", _quantization),
    _var("tensor_parallel_size", "int?",
         "`--tensor-parallel-size`; unset: the catalogue's choice.", _positive),
    _var("gpu_memory_utilization", "float?", "`--gpu-memory-utilization` (0 to 1).",
         _fraction),
    _var("reasoning_parser", "str?",
         "`--reasoning-parser`; unset: the catalogue's choice; `none`: no parser.",
         _pattern(_WORD, "give a parser name of letters, digits and . _ - (e.g. ernie-45-vl)")),
    _var("extra_server_args", "args",
         "More server flags, appended last: a list, or one string split like a shell "
         "command line (commas before `--` also separate).", _server_args),
    _var("cuda_visible_devices", "str?", "`CUDA_VISIBLE_DEVICES` for the service.", _pattern(
        _DEVICES, "give GPU indexes or UUIDs separated by commas (e.g. 0,1)")),
    _var("python", "str", "Python interpreter that builds the virtualenvs.", _pattern(
        _PROGRAM, "give a program name or absolute path (e.g. python3 or /usr/bin/python3.10)")),
    _var("web_ui", "bool", "Also deploy the Gradio chat page as its own unit "
                           "(`<service_name>-webui`, own venv, pinned Gradio from the general "
                           "index: `pip_extra_index_url`, else the host's pip configuration)."),
    _var("web_port", "int", "Port of the chat page (all interfaces).", _port),
    _var("web_password", "str?", "Password of the chat page's login (any user name); unset: "
                                 "no login, and the plan warns.", _password, secret=True),
)
BY_NAME = {v.name: v for v in VARIABLES}


# --------------------------------------------------------------------------- conversion


def _convert(var: Variable, value: object) -> object:
    """Raw YAML/-e value -> the Settings type; Invalid carries the fix."""
    optional = var.type.endswith("?")
    if optional and (value is None or value == ""):
        return None
    kind = var.type.rstrip("?")
    if kind == "bool":
        words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
        if isinstance(value, bool):
            return value
        if str(value).strip().lower() not in words:
            raise Invalid("give true or false")
        return words[str(value).strip().lower()]
    if kind == "int":
        if isinstance(value, bool) or not (
                isinstance(value, int) or (isinstance(value, str)
                                           and re.fullmatch(r"\s*[0-9]+\s*", value))):
            raise Invalid("give a whole number")
        return int(value)
    if kind == "float":
        if isinstance(value, bool):
            raise Invalid("give a number")
        try:
            return float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise Invalid("give a number") from None
    if kind == "args":
        if value is None or value == "":
            return ()
        if isinstance(value, str):
            try:
                words = shlex.split(value)
            except ValueError as exc:
                raise Invalid(f"unbalanced quotes ({exc})") from None
            return tuple(part for word in words for part in re.split(r",(?=--)", word) if part)
        if isinstance(value, (list, tuple)) and all(
                isinstance(a, (str, int, float)) and not isinstance(a, bool) for a in value):
            return tuple(str(a) for a in value)
        raise Invalid("give a list of arguments, or one string of them")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise Invalid("give a text value")
    if var.name == "fastdeploy_version" and not isinstance(value, str):
        raise Invalid("quote it in YAML (\"2.4\"): unquoted, 2.10 would read as the number 2.1")
    text = str(value)
    if var.name.endswith("_url"):
        text = text.rstrip("/")  # the plan appends "/cu126/": no "//"
    if not text:
        raise Invalid("give a value (it cannot be empty)")
    return text


def _shown(var: Variable | None, value: object) -> object:
    return HIDDEN if var is not None and var.secret and value not in (None, "") else value


def _resolve_local(name: str, value: object) -> object:
    if name == "known_hosts_file" and isinstance(value, str) and value:
        return str(Path(value).expanduser())
    return value


def _errors_and_values(spec: HostSpec) -> tuple[list[ConfigError], dict]:
    errors: list[ConfigError] = []
    values: dict = {}

    def where(name: str) -> str:
        return spec.sources.get(name, spec.name)

    for name, raw in spec.vars.items():
        if name in BY_NAME or name.startswith("ansible_"):
            continue
        close = difflib.get_close_matches(name, BY_NAME, n=1, cutoff=0.8)
        if close:
            errors.append(ConfigError(where(name), name, raw,
                                      f"unknown variable; did you mean {close[0]!r}?"))
    for var in VARIABLES:
        if var.name not in spec.vars:
            continue
        raw = spec.vars[var.name]
        try:
            value = _convert(var, raw)
            if value is not None and var.check is not None:
                var.check(value)
        except Invalid as exc:
            errors.append(ConfigError(where(var.name), var.name, _shown(var, raw), str(exc)))
            continue
        values[var.name] = _resolve_local(var.name, value)
    errors += _release_errors(values, where)
    errors += _path_errors(values, where)
    ports: dict[int, str] = {}
    for name in PORT_VARS + (("web_port",) if values.get("web_ui") else ()):
        port = values.get(name, _DEFAULTS[name])
        if port in ports:
            errors.append(ConfigError(where(name), name, port,
                                      f"it is the same as {ports[port]}; the ports "
                                      f"({', '.join(PORT_VARS)}, web_port) must all "
                                      "differ"))
        ports.setdefault(port, name)
    return errors, values


def _release_errors(values: dict, where: Callable[[str], str]) -> list[ConfigError]:
    """Settings the chosen release cannot honour: an API key it would silently ignore (C3)."""
    version = values.get("fastdeploy_version", _DEFAULTS["fastdeploy_version"])
    if not values.get("api_key") or matrix.line_of(version) not in matrix.releases():
        return []
    if matrix.release(version).api_key:
        return []
    first = matrix.first_with("api_key")
    return [ConfigError(where("api_key"), "api_key", HIDDEN,
                        f"FastDeploy {version} ignores FD_API_KEY, so the API would stay open; "
                        f"API-key support arrived with release {first}. Fix: set "
                        f"fastdeploy_version to {first} or newer, or unset api_key")]
def _path_errors(values: dict, where: Callable[[str], str]) -> list[ConfigError]:
    """Each path alone (no system files or directories), then all of them together."""
    errors = []
    for name in paths.PATH_VARS:
        why = paths.own_problem(name, values[name]) if values.get(name) else None
        if why:
            errors.append(ConfigError(where(name), name, values[name], why))
    effective = {n: values.get(n, _DEFAULTS[n]) for n in paths.PATH_VARS}
    for name, why in paths.overlap_problems(effective):
        errors.append(ConfigError(where(name), name, effective[name], why))
    return errors


def settings_for(spec: HostSpec) -> Settings:
    """The host's validated Settings; raises the first ConfigError (check_all gives them all)."""
    errors, values = _errors_and_values(spec)
    if errors:
        raise errors[0]
    return Settings(**values)


def check_all(specs: Iterable[HostSpec]) -> list[ConfigError]:
    """Every error of every host at once; one bad group variable is reported once, with its hosts.
    """
    found: dict[tuple, tuple[ConfigError, list[str]]] = {}
    for spec in specs:
        for error in _errors_and_values(spec)[0]:
            key = (error.where, error.key, repr(error.value), error.fix)
            found.setdefault(key, (error, []))[1].append(spec.name)
    out = []
    for error, hosts in found.values():
        if error.where in hosts:  # the host's own name already says which host
            out.append(error)
            continue
        label = "host" if len(hosts) == 1 else "hosts"
        out.append(ConfigError(f"{error.where} ({label} {', '.join(hosts)})", error.key,
                               error.value, error.fix))
    return out


def markdown_table() -> str:
    """The README's variable reference, generated so it cannot drift from the code."""
    rows = ["| Variable | Type | Default | Description |", "|---|---|---|---|"]
    for var in VARIABLES:
        default = "unset" if var.default is None else (
            "`[]`" if var.default == () else f"`{var.default}`")
        doc = var.doc.replace("|", "\\|") + (" Secret: shown as `<hidden>`." if var.secret else "")
        rows.append(f"| `{var.name}` | {var.type} | {default} | {doc} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
