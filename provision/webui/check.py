"""Prove the chat page works, from the control node: it answers 200, and one question sent
through the page's own API (Gradio's client, logged in like a person) comes back answered.

The page is reached like the API: directly when its port is reachable, else through an
SSH tunnel. Nothing here runs on the host, so a healthy page costs no exec request.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from provision import plain_http
from provision.connection import Remote, Tunnel
from provision.model import Settings
from provision.verify import CHAT_PROMPT, Check, UnitState, parse_unit_state

LOGIN_USER = "provision"  # the page accepts any user name; this one shows in its logs
PAGE_TIMEOUT = 240.0  # Gradio imports for many seconds on a small host


class WebRoute:
    """The page's base URL as reachable from here (direct, or an SSH tunnel)."""

    def __init__(self, remote: Remote, settings: Settings,
                 probe: Callable[[str, int], bool] | None = None) -> None:
        from provision.apply import _direct  # apply imports the plan, which imports us

        self._tunnel: Tunnel | None = None
        host, port = remote.hostname, settings.web_port
        if not remote.via_gateway and (probe or _direct)(host, port):
            self.url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        else:
            self._tunnel = remote.forward(port)
            self.url = f"http://127.0.0.1:{self._tunnel.local_port}"

    def __enter__(self) -> WebRoute:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._tunnel is not None:
            self._tunnel.close()


def wait_page(url: str, timeout: float = PAGE_TIMEOUT,
              unit: Callable[[], tuple[UnitState, str]] | None = None,
              unit_every: float = 15.0, sleep: Callable[[float], None] = time.sleep) -> Check:
    """GET / until 200 (the page, or its login form), with a deadline.

    Every `unit_every` seconds the unit is asked (one exec): a page whose unit fails or
    restarts will not come up by waiting, so the check ends there with its journal.
    """
    start = time.monotonic()
    last, next_unit, baseline = "no answer yet", start + unit_every, None
    while True:
        try:
            got = plain_http.get(f"{url}/", timeout=10)
            if got.status_code == 200:
                return Check("web page", True, time.monotonic() - start, "200")
            last = f"HTTP {got.status_code}"
        except plain_http.RequestException as exc:
            last = type(exc).__name__
        now = time.monotonic()
        if unit is not None and now >= next_unit:
            state, journal = unit()
            baseline = state.restarts if baseline is None else baseline
            if state.broken or state.restarts > baseline:
                return Check("web page", False, now - start,
                             f"the chat page's unit is {state}; last: {last}\n{journal}")
            next_unit = now + unit_every
        if now - start >= timeout:
            return Check("web page", False, now - start,
                         f"the chat page did not answer within {timeout:.0f}s: {last}")
        sleep(1.0)


def last_answer(messages: object) -> str:
    """The final answer in a Chatbot value (reasoning blocks carry a metadata title)."""
    for message in reversed(messages if isinstance(messages, list) else []):
        if not isinstance(message, dict) or message.get("role") != "assistant":
            continue
        if (message.get("metadata") or {}).get("title"):
            continue
        content = message.get("content")
        return content.strip() if isinstance(content, str) else ""
    return ""


def ask_page(url: str, password: str | None, question: str = CHAT_PROMPT,
             think: bool = False) -> str:
    """One question through the page's `/chat` API with Gradio's client; the answer text.

    Raises what the client raises (a refused login is a ValueError from gradio_client).
    """
    from gradio_client import Client  # heavy: only when a page is checked

    client = Client(url, auth=(LOGIN_USER, password) if password else None, verbose=False,
                    download_files=False, httpx_kwargs={"timeout": 120})
    try:
        result = client.predict({"text": question, "files": []}, think, api_name="/chat")
    finally:
        client.close()
    return last_answer(result[0] if isinstance(result, (list, tuple)) else result)


def check_web_chat(url: str, password: str | None) -> Check:
    start = time.monotonic()
    try:
        answer = ask_page(url, password)
    except Exception as exc:  # noqa: BLE001 - any client failure is this check's failure
        return Check("web chat", False, time.monotonic() - start,
                     f"a question through the page failed: {type(exc).__name__}: "
                     f"{str(exc)[:200]}")
    if not answer:
        return Check("web chat", False, time.monotonic() - start,
                     "the page returned no answer to a question")
    return Check("web chat", True, time.monotonic() - start, answer[:200])


def verify_web(url: str, settings: Settings, timeout: float = PAGE_TIMEOUT,
               unit: Callable[[], tuple[UnitState, str]] | None = None) -> list[Check]:
    page = wait_page(url, timeout, unit)
    if not page.ok:
        return [page]
    return [page, check_web_chat(url, settings.web_password)]


def parse_state(stdout: str) -> tuple[UnitState, str]:
    """state_script's output: the unit's state and its journal lines."""
    journal = [line[len("journal: "):] for line in stdout.splitlines()
               if line.startswith("journal: ")]
    return parse_unit_state(stdout), "\n".join(journal)
