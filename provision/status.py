"""The fleet at a glance: one row per host, queried in parallel, read-only.

One facts trip per host (what is installed, the service state) and HTTP for the rest (health,
served model, one chat's latency). A host that cannot be reached is a row that says so; it
never stops the others.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import requests

from provision import matrix
from provision.apply import FACTS_TIMEOUT, Route
from provision.connection import Remote
from provision.facts import gather_command, parse_facts
from provision.model import HostSpec, ProvisionError, Settings, UnreachableError
from provision.plan import server_checks
from provision.play.gpu_facts import exporter_port
from provision.report import redact, table
from provision.verify import Endpoint, check_chat
from provision.webui.check import WebRoute


@dataclass
class StatusRow:
    host: str
    reachable: bool
    gpus: str = "-"
    driver: str | None = None
    cuda: str | None = None
    paddle: str | None = None
    fastdeploy: str | None = None
    release: str | None = None
    service: str | None = None
    health: str = "-"
    model: str | None = None
    chat_latency_s: float | None = None
    error: str | None = None
    web: str = "-"  # the chat page: HTTP status of its front page, "down", or "-" (web_ui off)
    exporter: str | None = None  # the GPU metrics exporter's port when it listens (gpu_exporter)

    def as_dict(self) -> dict:
        return asdict(self)


def _gpus(facts) -> str:
    if not facts.gpus:
        return "none"
    names = sorted({g.name for g in facts.gpus})
    return f"{len(facts.gpus)}x {', '.join(names)}"


def _served(endpoint: Endpoint) -> str | None:
    got = requests.get(f"{endpoint.api}/v1/models", headers=endpoint.headers(), timeout=10)
    if got.status_code != 200:
        return None
    ids = [m.get("id") for m in got.json().get("data", [])]
    return ids[0] if ids else None


def _web(remote: Remote, settings: Settings) -> str:
    with WebRoute(remote, settings) as route:
        try:
            return str(requests.get(f"{route.url}/", timeout=10).status_code)
        except requests.RequestException:
            return "down"


def host_status(spec: HostSpec, settings: Settings, accept_new_host_key: bool = False,
                connect_timeout: float = 10.0) -> StatusRow:
    row = StatusRow(spec.name, reachable=False)
    remote = Remote(spec, settings, accept_new_host_key=accept_new_host_key,
                    connect_timeout=connect_timeout)
    try:
        got = remote.run(gather_command(settings), FACTS_TIMEOUT)
        if not got.ok:
            raise ProvisionError(f"facts failed (exit {got.rc}): {got.tail(5)}")
        facts = parse_facts(spec.name, got.stdout)
        installed = facts.installed
        row.reachable = True
        row.gpus, row.driver, row.cuda = _gpus(facts), facts.driver_version, facts.cuda_version
        row.paddle, row.fastdeploy = installed.paddle_version, installed.fastdeploy_version
        row.release, row.service = installed.current_release, installed.service_active
        row.exporter = exporter_port(facts, spec.vars)
        with Route(remote, settings) as route:
            endpoint = Endpoint(route.api, route.metrics, settings.model, settings.api_key,
                                server_checks(settings, matrix.release(settings.fastdeploy_version),
                                              matrix.model_info(settings.model)))
            try:
                health = requests.get(f"{endpoint.api}/health", timeout=5)
                row.health = str(health.status_code)
            except requests.RequestException:
                row.health = "down"
            if row.health == "200":
                row.model = _served(endpoint)
                chat = check_chat(endpoint)
                row.chat_latency_s = round(chat.seconds, 3) if chat.ok else None
                if not chat.ok:
                    row.error = chat.detail
        if settings.web_ui:
            row.web = _web(remote, settings)
    except UnreachableError as exc:
        row.error = str(exc)
    except (ProvisionError, requests.RequestException) as exc:
        row.error = f"{type(exc).__name__}: {exc}"
    finally:
        remote.close()
    if row.error:  # a chat error or a journal line may echo the key
        row.error = redact(row.error, (settings.api_key or "",))
    return row


Query = Callable[[HostSpec, Settings, bool], StatusRow]


def _guarded(query: Query, spec: HostSpec, settings: Settings,
             accept_new_host_key: bool) -> StatusRow:
    """A bug (or an odd answer) on one host is that host's row, never the whole table's end."""
    try:
        return query(spec, settings, accept_new_host_key)
    except Exception as exc:  # noqa: BLE001 - reported in the row, the others go on
        return StatusRow(spec.name, reachable=False,
                         error=f"internal error: {type(exc).__name__}: {exc}")


def fleet_status(targets: list[tuple[HostSpec, Settings]], forks: int = 10,
                 accept_new_host_key: bool = False,
                 query: Query = host_status) -> list[StatusRow]:
    """Rows in the targets' order, at most `forks` hosts queried at once."""
    if not targets:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(forks, len(targets)))) as pool:
        futures = [pool.submit(_guarded, query, spec, settings, accept_new_host_key)
                   for spec, settings in targets]
        return [f.result() for f in futures]


def _latency(seconds: float | None) -> str:
    """Milliseconds below a second: the lab's stand-in answers in a few, "0.00s" says nothing."""
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:.2f}s"


def render_rows(rows: list[StatusRow]) -> list[str]:
    head = ("host", "reachable", "gpus", "driver/cuda", "paddle", "fastdeploy", "release",
            "service", "health", "model", "chat", "web", "exporter")
    cells = [head]
    for r in rows:
        cells.append((r.host, "yes" if r.reachable else "NO", r.gpus,
                      f"{r.driver or '-'}/{r.cuda or '-'}", r.paddle or "-", r.fastdeploy or "-",
                      r.release or "-", r.service or "-", r.health, r.model or "-",
                      _latency(r.chat_latency_s), r.web, r.exporter or "-"))
    return table(cells)


def healthy(row: StatusRow) -> bool:
    return (row.reachable and row.health == "200" and row.chat_latency_s is not None
            and row.web in ("-", "200"))

