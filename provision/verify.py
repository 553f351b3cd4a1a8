"""Prove a server works, over HTTP from the control node: health, models, chat, metrics.

Each check returns a `Check` (name, ok, seconds, detail) so `up`, `smoke` and JUnit
output all render the same structured results. The health wait is the only slow
part: the real server keeps its port closed while it downloads and loads the model
(minutes), so "connection refused" means "still loading" until the deadline, or
until the unit itself has failed or restarted. The unit is asked about rarely
(one SSH exec each time) so that a healthy server costs no exec request at all.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from provision import plain_http, shell
from provision.model import ServerChecks, Settings
from provision.progress import (
    LOAD_MARK,
    SIZE_MARK,
    HostProgress,
    Meter,
    health_text,
    parse_host_progress,
)

CHAT_PROMPT = "Reply with one short sentence: are you ready?"
_SAMPLE = re.compile(r"^[A-Za-z_:][A-Za-z0-9_:]*(?:\{[^}]*\})? (?:-?[0-9.eE+-]+|NaN|[+-]Inf)", re.M)
DIAG_MARK = "----- provision: workerlog.0 -----"


@dataclass
class Check:
    """One verification result; `detail` says what was seen (never a secret)."""

    name: str
    ok: bool
    seconds: float
    detail: str = ""


@dataclass(frozen=True)
class Endpoint:
    """Where a server answers, as reachable from here (direct, or through an SSH tunnel)."""

    api: str  # "http://10.0.0.2:8180"
    metrics: str  # "http://10.0.0.2:8181"
    model: str  # the served model name that /v1/models must list
    api_key: str | None = None
    checks: ServerChecks = ServerChecks()
    outside_metrics: str | None = None  # the metrics port as the network sees it, if reachable

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


@dataclass(frozen=True)
class UnitState:
    """What systemd says about the service while we wait for it."""

    active: str  # ActiveState: active, activating, failed, inactive, ...
    sub: str  # SubState: running, auto-restart, dead, ...
    restarts: int  # NRestarts: automatic restarts since the last manual start
    result: str = ""  # Result: success, exit-code, ...
    progress: HostProgress | None = None  # the download's size and loading line (poll_script)

    @property
    def broken(self) -> bool:
        """Failed, or between automatic restarts: waiting longer will not help."""
        return self.active in ("failed", "inactive") or self.sub == "auto-restart"

    def __str__(self) -> str:
        return f"{self.active}/{self.sub}, restarts={self.restarts}"


def unit_state_script(settings: Settings) -> str:
    return shell.cmd(
        "systemctl", "show", "-p", "ActiveState", "-p", "SubState", "-p", "NRestarts",
        "-p", "Result", settings.service_name,
    )


def poll_script(settings: Settings, download_dirs: tuple[str, ...] = ()) -> str:
    """The health wait's one exec: the unit's state, the download's size, the loading line.

    `du -sb` of the directories the weights download into (none when nothing downloads),
    and the newest `Loading Weights/Layers: N%` of workerlog.0 (reference §5.4), only when
    the log was written since the unit's main process started: a previous start's
    `100%` must not pass for this one's (a new start's worker log may still show the
    previous start's last line until it writes its first). The log is read from its last
    64 kB only; du is given 10 s, well inside the poll's own 30 s limit.
    """
    log = f"{settings.log_dir.rstrip('/')}/workerlog.0"
    lines = [unit_state_script(settings), shell.fmt("echo %s", SIZE_MARK)]
    if download_dirs:
        lines.append(shell.cmd("timeout", "10", "du", "-sb", "--", *download_dirs)
                     + " 2>/dev/null || true")  # a slow (network) disk costs no poll
    lines += [
        shell.fmt("echo %s", LOAD_MARK),
        shell.fmt("t=$(systemctl show --value -p ExecMainStartTimestamp %s)",
                  settings.service_name),
        shell.fmt('if [ -n "$t" ] && s=$(date -d "$t" +%%s 2>/dev/null) && [ -f %s ] && '
                  '[ "$(stat -c %%Y %s)" -ge "$s" ]; then tail -c 65536 %s | '
                  "grep -aoE 'Loading (Weights|Layers): *[0-9]{1,3}%%' | tail -n 1; fi; true",
                  log, log, log),
    ]
    return "\n".join(lines)


def parse_poll(stdout: str) -> UnitState:
    """poll_script's output: the unit's lines come first, so nothing the host's files
    hold (a log line saying `ActiveState=active`) can pass for systemd's answer."""
    unit, mark, rest = f"\n{stdout}".partition(f"\n{SIZE_MARK}\n")
    state = parse_unit_state(unit)
    if not mark:
        return state
    return dataclasses.replace(state, progress=parse_host_progress(f"{SIZE_MARK}\n{rest}"))


def parse_unit_state(stdout: str) -> UnitState:
    """`systemctl show -p ...` output to a UnitState.

    >>> parse_unit_state("ActiveState=active\\nSubState=running\\nNRestarts=2\\n").restarts
    2
    """
    values = dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line)
    restarts = values.get("NRestarts", "0")
    return UnitState(
        active=values.get("ActiveState", "unknown"),
        sub=values.get("SubState", "unknown"),
        restarts=int(restarts) if restarts.isdigit() else 0,
        result=values.get("Result", ""),
    )


def diagnostics_script(settings: Settings, lines: int = 30) -> str:
    """The unit's journal and the worker log in one exec: what a failure report shows."""
    workerlog = f"{settings.log_dir.rstrip('/')}/workerlog.0"
    return "\n".join([
        shell.fmt("journalctl -u %s -n %s --no-pager 2>&1", settings.service_name, lines),
        shell.fmt("echo %s", DIAG_MARK),
        shell.fmt("tail -n %s %s 2>&1 || true", lines, workerlog),
    ])


def wait_healthy(
    endpoint: Endpoint,
    timeout: float,
    *,
    unit_state: Callable[[], UnitState] | None = None,
    progress: Callable[[str], None] = lambda _: None,
    unit_every: float = 15.0,
    progress_every: float = 10.0,
    weights_gb: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Check:
    """Poll GET /health until 200, with backoff, a deadline, and rare unit-state checks.

    The unit's poll may also carry the download's size and the loading line (poll_script);
    the progress text then says those (bytes, rate, ETA against `weights_gb`) instead of
    the bare "connection refused". No extra exec: it is the same rare poll."""
    start = clock()
    deadline = start + timeout
    delay, last, baseline, state = 0.25, "no answer yet", None, None
    meter = Meter()
    next_unit, next_progress = start + unit_every, start + progress_every
    while True:
        try:
            got = plain_http.get(f"{endpoint.api}/health", timeout=5)
            if got.status_code == 200:
                return Check("health", True, clock() - start, "200")
            last = f"HTTP {got.status_code} {got.text[:80]!r}"
        except plain_http.Timeout:  # before ConnectionError: ConnectTimeout is both
            last = "no answer within 5s"
        except plain_http.ConnectionError:
            last = "connection refused (loading)"
        now = clock()
        if unit_state is not None and (now >= next_unit or now >= deadline):
            state = unit_state()
            baseline = state.restarts if baseline is None else baseline
            if state.progress is not None and state.progress.download_bytes is not None:
                meter.feed(now, state.progress.download_bytes)
            if state.broken or state.restarts > baseline:
                return Check("health", False, now - start,
                             f"the service stopped while loading: unit {state}; last: {last}")
            next_unit = now + unit_every
        if now >= deadline:
            seen = f"; unit {state}" if state else ""
            return Check("health", False, now - start,
                         f"not healthy within {timeout:.0f}s: {last}{seen}. Fix: raise "
                         "health_timeout if the model is still downloading, else read the logs")
        if now >= next_progress:
            doing = health_text(state.progress, meter, weights_gb) if state else None
            if doing and state:
                progress(f"waiting {now - start:.0f}s/{timeout:.0f}s: {doing}; "
                         f"unit {state.active}/{state.sub}")
            else:
                progress(f"waiting {now - start:.0f}s/{timeout:.0f}s: {last}"
                         + (f", unit {state}" if state else ""))
            next_progress = now + progress_every
        sleep(min(delay, max(deadline - now, 0.0)))
        delay = min(delay * 1.5, 5.0)


def _timed(name: str, probe: Callable[[], tuple[bool, str]]) -> Check:
    start = time.monotonic()
    try:
        ok, detail = probe()
    except plain_http.RequestException as exc:
        ok, detail = False, f"{type(exc).__name__}: {exc}"
    return Check(name, ok, time.monotonic() - start, detail)


def check_models(endpoint: Endpoint) -> Check:
    def probe() -> tuple[bool, str]:
        got = plain_http.get(f"{endpoint.api}/v1/models", headers=endpoint.headers(), timeout=10)
        if got.status_code != 200:
            return False, f"GET /v1/models: HTTP {got.status_code} {got.text[:200]!r}"
        ids = [m.get("id") for m in got.json().get("data", [])]
        if endpoint.model not in ids:
            return False, f"/v1/models lists {ids}, not {endpoint.model!r}"
        return True, endpoint.model

    return _timed("models", probe)


def chat_body(endpoint: Endpoint, content: object, max_tokens: int) -> dict:
    """A chat request with the model's real switch for its reasoning (C6): enable_thinking
    false, VL-28B-Thinking's thinking_mode close, or none (21B-Thinking cannot stop; the
    caller allows it enough tokens for `content` to follow the reasoning)."""
    body: dict = {"model": endpoint.model, "messages": [{"role": "user", "content": content}],
                  "max_tokens": max(max_tokens, endpoint.checks.max_tokens), "temperature": 0,
                  "stream": False}
    if endpoint.checks.chat_template_kwargs is not None:
        body["chat_template_kwargs"] = endpoint.checks.chat_template_kwargs
    return body


def check_chat(endpoint: Endpoint, max_tokens: int = 32) -> Check:
    """One short completion; the reasoning is off (or allowed room) so `content` arrives."""

    def probe() -> tuple[bool, str]:
        body = chat_body(endpoint, CHAT_PROMPT, max_tokens)
        got = plain_http.post(f"{endpoint.api}/v1/chat/completions", json=body,
                            headers=endpoint.headers(), timeout=300)
        if got.status_code != 200:
            return False, f"POST /v1/chat/completions: HTTP {got.status_code} {got.text[:200]!r}"
        message = (got.json().get("choices") or [{}])[0].get("message") or {}
        content = (message.get("content") or "").strip()
        if not content:
            thought = (message.get("reasoning_content") or "").strip()
            why = "only reasoning_content came back" if thought else "the answer was empty"
            return False, f"chat completion: {why}: {message!r:.200}"
        return True, content[:200]

    return _timed("chat", probe)


def check_auth(endpoint: Endpoint) -> Check:
    """The key is enforced: the same request without it must get 401 (C3)."""

    def probe() -> tuple[bool, str]:
        if endpoint.checks.models_endpoint:
            got = plain_http.get(f"{endpoint.api}/v1/models", timeout=10)
        else:
            got = plain_http.post(f"{endpoint.api}/v1/chat/completions", timeout=60,
                                json=chat_body(endpoint, CHAT_PROMPT, 1))
        if got.status_code != 401:
            return False, (f"a request without the API key got HTTP {got.status_code}, not 401: "
                           "the API is open to anyone")
        return True, "401 without the key"

    return _timed("api-key", probe)


def check_key_hidden(endpoint: Endpoint) -> Check:
    """/config-info (which dumps FD_API_KEY) is not readable from the network (C3)."""

    def probe() -> tuple[bool, str]:
        if endpoint.outside_metrics is None:
            return True, "the metrics port is not reachable from here"
        try:
            got = plain_http.get(f"{endpoint.outside_metrics}/config-info", timeout=10)
        except plain_http.ConnectionError:
            return True, "the metrics port refuses connections from the network"
        if endpoint.api_key and endpoint.api_key in got.text:
            return False, (f"GET {endpoint.outside_metrics}/config-info returns the API key "
                           "to the network")
        return True, f"/config-info from the network: HTTP {got.status_code}, no key"

    return _timed("key-hidden", probe)


def check_metrics(endpoint: Endpoint) -> Check:
    def probe() -> tuple[bool, str]:
        got = plain_http.get(f"{endpoint.metrics}/metrics", timeout=10)
        if got.status_code != 200:
            return False, f"GET /metrics: HTTP {got.status_code}"
        samples = _SAMPLE.findall(got.text)
        if not samples:
            return False, f"/metrics is not Prometheus text: {got.text[:120]!r}"
        return True, f"{len(got.text.splitlines())} lines"

    return _timed("metrics", probe)


def verify(
    endpoint: Endpoint,
    timeout: float,
    *,
    unit_state: Callable[[], UnitState] | None = None,
    progress: Callable[[str], None] = lambda _: None,
    sleep: Callable[[float], None] = time.sleep,
    weights_gb: float | None = None,
) -> list[Check]:
    """Health first (after a failed wait the others would only repeat it), then the rest at
    once: none depends on another, so a far host costs one round trip for them, not five.
    Results keep their order whatever finishes first."""
    health = wait_healthy(endpoint, timeout, unit_state=unit_state, progress=progress,
                          sleep=sleep, weights_gb=weights_gb)
    if not health.ok:
        return [health]
    probes: list[Callable[[Endpoint], Check]] = []
    if endpoint.checks.models_endpoint:  # 2.0/2.1 have no /v1/models (C2)
        probes.append(check_models)
    if endpoint.checks.api_key:
        probes.append(check_auth)
    probes += [check_chat, check_metrics]
    if endpoint.checks.metrics_local_only:
        probes.append(check_key_hidden)
    return [health, *run_together(probes, endpoint)]


def run_together(probes: list[Callable[[Endpoint], Check]], endpoint: Endpoint) -> list[Check]:
    """Every probe in its own thread, results in the probes' order. Each check bounds its
    own requests with a timeout, so the joins end; an exception in one is its failed Check."""
    results: list[Check | None] = [None] * len(probes)

    def one(index: int) -> None:
        start = time.monotonic()
        try:
            results[index] = probes[index](endpoint)
        except Exception as exc:  # noqa: BLE001 - reported as that check's failure
            name = probes[index].__name__.removeprefix("check_")
            results[index] = Check(name, False, time.monotonic() - start,
                                   f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=one, args=(i,), daemon=True)
               for i in range(len(probes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [r for r in results if r is not None]
