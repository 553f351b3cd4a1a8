"""Facts: one remote command (`gather_command`) and pure parsers (`parse_facts`).

pyinfra splits a fact into a command and a pure `process()`; testinfra frames output
between markers. We do both in ONE trip: the stdlib script in facts_script.py prints
framed JSON, and everything here turns text into typed Facts without I/O, so the
parsers are tested on real nvidia-smi outputs kept as fixtures.
"""

from __future__ import annotations

import dataclasses
import json
import re
from functools import lru_cache
from pathlib import Path

from provision import matrix, pkgindex, shell
from provision.model import (
    Facts,
    Gpu,
    IndexPage,
    Installed,
    Listener,
    ProvisionError,
    Settings,
    WebInstalled,
)
from provision.webui import fact_args as web_fact_args

BEGIN = "===PROVISION-FACTS-BEGIN==="
END = "===PROVISION-FACTS-END==="
# Used when neither nvidia-smi nor the name table knows the compute capability: sm == 0,
# which pre-flight reports as unsupported, naming the GPU.
UNKNOWN_CAP = "0.0"
_SCRIPT = Path(__file__).with_name("facts_script.py")
# The nvidia-smi queries the script makes; the CSV parser below expects these columns.
QUERY_FIELDS = "index,name,uuid,compute_cap,memory.total,memory.used,driver_version"
QUERY_FIELDS_NO_CAP = "index,name,uuid,memory.total,memory.used,driver_version"


def unit_path(settings: Settings) -> str:
    """Where the service's unit lives; the facts trip digests it and the service step writes it."""
    return f"/etc/systemd/system/{settings.service_name}.service"


def disk_paths(settings: Settings) -> tuple[str, ...]:
    """Paths whose free space pre-flight checks: where releases and weights go."""
    return (settings.releases_dir, settings.model_cache_dir)


def model_paths(settings: Settings) -> tuple[str, ...]:
    """Where the weights are when present: model_dir, or FD's download cache (reference §5.3:
    AIStudio/ModelScope use <cache>/PaddlePaddle/<name>, Hugging Face <cache>/baidu/<name>)."""
    if settings.model_dir:
        return (settings.model_dir,)
    tail = settings.model.rsplit("/", 1)[-1]
    return tuple(f"{settings.model_cache_dir}/{org}/{tail}" for org in ("PaddlePaddle", "baidu"))


def index_pages(settings: Settings) -> tuple[str, ...]:
    """The project pages the plan may need for this release line (any GPU, any CUDA build)."""
    try:
        rel = matrix.release(settings.fastdeploy_version)
    except ProvisionError:
        return ()
    return tuple(pkgindex.page_url(settings.package_index_url, index, project)
                 for index, project in matrix.candidate_indexes(rel))


def gather_command(settings: Settings, tasks: list | None = None,
                   tasks_script: str = "") -> str:
    """The one exec string: the facts script under the host's python3, framed JSON out.

    A host without that interpreter still prints a frame (with python3: false), so the
    plan can report "python3 missing" with a fix instead of a parse error. `tasks` (probe
    specs) and `tasks_script` (their stdlib code, prepended) are playbooks' hook: their
    tasks' state comes back in the same trip as `tasks_state`.
    """
    args = {
        "venv_dir": settings.venv_dir,
        "releases_dir": settings.releases_dir,
        "unit_path": unit_path(settings),
        "env_file": settings.env_file,
        "service": settings.service_name,
        "disk_paths": list(disk_paths(settings)),
        "model_paths": list(model_paths(settings)),
        "query": QUERY_FIELDS,
        "query_no_cap": QUERY_FIELDS_NO_CAP,
        "ports": [settings.api_port, settings.metrics_port,
                  settings.engine_worker_queue_port, settings.cache_queue_port,
                  settings.web_port],
        "index_pages": list(index_pages(settings)),
        "skip_index_if_installed": (settings.fastdeploy_version
                                    if matrix.is_exact(settings.fastdeploy_version) else None),
        "web": web_fact_args(settings),
    }
    missing = json.dumps({"python3": False, "interpreter": settings.python})
    if tasks:
        args["tasks"] = tasks
    code = (tasks_script + "\n" + _SCRIPT.read_text()) if tasks else _SCRIPT.read_text()
    run = shell.cmd(settings.python, "-c", code, json.dumps(args))
    return (shell.fmt("if command -v %s >/dev/null 2>&1; then ", settings.python) + run
            + shell.fmt("; else printf '%%s\\n' %s %s %s; fi", BEGIN, missing, END))


# --------------------------------------------------------------------------- nvidia-smi


@lru_cache(maxsize=1)
def _caps_by_name() -> dict[str, str]:
    return {str(name): str(arch["compute_cap"])
            for arch in matrix.load_data("gpus.yaml")["architectures"] for name in arch["names"]}


def compute_cap_from_name(name: str) -> str:
    """SM from the model name, for drivers that cannot report it (R470): longest key wins.

    >>> compute_cap_from_name("NVIDIA A100-SXM4-80GB")
    '8.0'
    """
    upper = name.upper()
    hits = [key for key in _caps_by_name() if key.upper() in upper]
    return _caps_by_name()[max(hits, key=len)] if hits else UNKNOWN_CAP


def _mib(value: str) -> int:
    """'81559', '81559 MiB' -> 81559; '[N/A]', 'N/A', '[Not Supported]' -> 0."""
    match = re.match(r"\s*(\d+)", value)
    return int(match.group(1)) if match else 0


def parse_gpu_csv(text: str, with_cap: bool = True) -> tuple[list[Gpu], str | None]:
    """GPUs and the driver version from `--query-gpu=... --format=csv,noheader,nounits`.

    Fields are split on ", " (names contain spaces); a header row is tolerated.
    Without compute_cap (R470) the SM comes from the name table in data/gpus.yaml.
    """
    gpus: list[Gpu] = []
    driver = None
    width = 7 if with_cap else 6
    for line in text.splitlines():
        cols = [c.strip() for c in line.split(", ")]
        if len(cols) != width or not cols[0].isdigit():
            continue
        if with_cap:
            index, name, uuid, cap, total, used, drv = cols
            if not re.fullmatch(r"\d+\.\d+", cap):
                cap = compute_cap_from_name(name)
        else:
            index, name, uuid, total, used, drv = cols
            cap = compute_cap_from_name(name)
        gpus.append(Gpu(int(index), name, uuid, cap, _mib(total), _mib(used)))
        if re.fullmatch(r"[\d.]+", drv):
            driver = driver or drv
    return gpus, driver


def parse_smi_table(text: str) -> tuple[str | None, str | None]:
    """(driver, cuda) from the plain table header; R610 labels them KMD / CUDA UMD Version.

    Regexes, never column offsets: the header's width changes by driver branch.
    """
    driver = re.search(r"(?:Driver|KMD) Version:\s*([\d.]+)", text)
    cuda = re.search(r"CUDA (?:UMD )?Version:\s*([\d.]+)", text)
    return (driver.group(1) if driver else None, cuda.group(1) if cuda else None)


def _first_line(raw: dict) -> str:
    text = (raw.get("out") or "") + "\n" + (raw.get("err") or "")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return f"exit {raw.get('rc')}: " + (lines[0] if lines else "(no output)")


def parse_nvidia(raw: dict | None) -> dict:
    """The GPU part of Facts from the raw nvidia-smi outcomes the script collected."""
    if raw is None:
        return {"nvidia_smi": "missing", "nvidia_smi_error": "nvidia-smi: command not found",
                "gpus": (), "driver_version": None, "cuda_version": None}
    table = raw.get("table") or {}
    t_driver, cuda = parse_smi_table(table.get("out") or "")
    query = raw["query"]
    if query["rc"] == 0:
        gpus, driver = parse_gpu_csv(query["out"], with_cap=True)
    elif raw.get("query_no_cap") and raw["query_no_cap"]["rc"] == 0:
        gpus, driver = parse_gpu_csv(raw["query_no_cap"]["out"], with_cap=False)
    else:
        return {"nvidia_smi": "error", "nvidia_smi_error": _first_line(query), "gpus": (),
                "driver_version": t_driver, "cuda_version": cuda}
    return {"nvidia_smi": "ok", "nvidia_smi_error": None, "gpus": tuple(gpus),
            "driver_version": driver or t_driver, "cuda_version": cuda}


# --------------------------------------------------------------------------- frame -> Facts


def unframe(host: str, stdout: str) -> dict:
    """The JSON between the markers; a clear error (with what came instead) when absent."""
    start, end = stdout.rfind(BEGIN), stdout.rfind(END)
    if start < 0 or end < start:
        head = "\n".join(stdout.strip().splitlines()[:5]) or "(no output)"
        raise ProvisionError(
            f"{host}: the facts command printed no {BEGIN} ... {END} frame; its output began "
            f"with:\n{head}\nFix: make the login shell quiet (no output from ~/.bashrc for "
            "non-interactive shells) and check that python3 runs on the host")
    body = stdout[start + len(BEGIN):end]
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise ProvisionError(f"{host}: the facts frame is not valid JSON ({exc}); "
                             f"first 200 characters: {body.strip()[:200]!r}") from exc


def _installed(raw: dict) -> Installed:
    return Installed(
        current_release=raw.get("current_release"),
        releases=tuple(raw.get("releases") or ()),
        paddle_version=raw.get("paddle_version"),
        fastdeploy_version=raw.get("fastdeploy_version"),
        unit_sha256=raw.get("unit_sha256"),
        unit_text=raw.get("unit_text"),
        env_sha256=raw.get("env_sha256"),
        env_mode=raw.get("env_mode"),
        service_active=raw.get("service_active"),
        service_enabled=raw.get("service_enabled"),
        service_restarts=raw.get("service_restarts"),
        venv_kind=raw.get("venv_kind", "missing"),
    )


def parse_index(raw: dict | None) -> tuple[dict, bool]:
    """(url -> IndexPage, skipped) from what the script fetched; pages parsed here."""
    raw = raw or {}
    pages = {}
    for url, page in (raw.get("pages") or {}).items():
        if page.get("ok"):
            pages[url] = IndexPage(True, "", pkgindex.parse_page(str(page.get("text") or "")))
        else:
            pages[url] = IndexPage(False, str(page.get("error") or "unknown error"))
    return pages, bool(raw.get("skipped"))
def _web(raw: dict | None) -> WebInstalled:
    raw = raw or {}
    return WebInstalled(**{f.name: raw.get(f.name) for f in dataclasses.fields(WebInstalled)})


def _without_python(data: dict) -> Facts:
    return Facts(hostname="", kernel="", arch="", os_id="", os_version_id="", os_id_like="",
                 os_pretty="", etc_hosts=None, cloud_hosts_template=None, python_version=None,
                 has_venv=False, has_pip=False, nvidia_smi="missing",
                 nvidia_smi_error="not gathered: python3 is missing", gpus=(),
                 driver_version=None, cuda_version=None)


def facts_from_json(data: dict) -> Facts:
    """Typed Facts from the script's JSON (pure)."""
    if data.get("python3") is False:
        return _without_python(data)
    osr = data.get("os_release") or {}
    cloud = data.get("cloud_init") or {}
    pages, skipped = parse_index(data.get("package_index"))
    return Facts(
        hostname=data["hostname"],
        kernel=data["kernel"],
        arch=data["arch"],
        os_id=osr.get("ID", ""),
        os_version_id=osr.get("VERSION_ID", ""),
        os_id_like=osr.get("ID_LIKE", ""),
        os_pretty=osr.get("PRETTY_NAME", ""),
        etc_hosts=data.get("etc_hosts"),
        cloud_hosts_template=cloud.get("text"),
        cloud_hosts_template_path=cloud.get("path"),
        python_version=data.get("python_version"),
        has_venv=bool(data.get("has_venv")),
        has_pip=bool(data.get("has_pip")),
        disk_free_mib=dict(data.get("disk_free_mib") or {}),
        mem_total_mib=int(data.get("mem_total_mib") or 0),
        systemd_state=data.get("systemd_state") or "unknown",
        listeners=tuple(Listener(x["port"], x.get("pid"), x.get("command"), x.get("unit"))
                        for x in data.get("listeners") or ()),
        installed=dataclasses.replace(_installed(data.get("installed") or {}),
                                      web=_web(data.get("web"))),
        model_present=bool(data.get("model_present")),
        index_pages=pages,
        index_skipped=skipped,
        **parse_nvidia(data.get("nvidia_smi")),
    )


def parse_facts(host: str, stdout: str) -> Facts:
    """Facts from the facts command's stdout; ProvisionError naming the host when unusable."""
    data = unframe(host, stdout)
    try:
        return facts_from_json(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ProvisionError(f"{host}: the facts JSON lacks or mangles {exc}; "
                             "the facts script and this provision version may differ") from exc
