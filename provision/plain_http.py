"""The few HTTP requests `up` makes to prove a server works, on the standard library alone.

Why not `requests`: verification is a handful of small GETs and one POST to a host we
name ourselves, and importing requests (urllib3, charset detection, idna, cookies) costs
more wall time than a converged host's whole HTTP check (`bench/noop_bench.py` shows
it). The interface is the part of requests these checks used: `get`/`post` with a
timeout, `status_code`, `text`, `json()`, and exceptions ordered as requests orders
them (a connect timeout is both a Timeout and a ConnectionError).
"""

from __future__ import annotations

import http.client
import json as jsonlib
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_BODY = 16 << 20  # a check never needs more; a runaway answer must not fill memory


class RequestException(Exception):
    """Any failure to get an HTTP answer (or a usable one)."""


class ConnectionError(RequestException):  # noqa: A001 - the name callers know from requests
    """Nothing answered: refused, reset, unreachable, or no connection within the timeout."""


class Timeout(RequestException):
    """No answer within the timeout."""


class ConnectTimeout(ConnectionError, Timeout):
    """The connection itself was not made within the timeout (both kinds, as in requests)."""


class InvalidJSON(RequestException, ValueError):
    """The body is not the JSON the caller asked for."""


@dataclass(frozen=True)
class Response:
    status_code: int
    text: str

    def json(self) -> object:
        try:
            return jsonlib.loads(self.text)
        except ValueError as exc:
            raise InvalidJSON(f"not JSON: {exc}") from None


def request(method: str, url: str, *, timeout: float, json: object = None,
            headers: dict[str, str] | None = None) -> Response:
    """One request on a fresh connection; the whole body read (up to MAX_BODY)."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise RequestException(f"only http:// URLs are checked here, not {url!r}")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    body = None if json is None else jsonlib.dumps(json).encode()
    sent = {"Accept": "*/*", **(headers or {})}
    if body is not None:
        sent["Content-Type"] = "application/json"
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    try:
        try:
            conn.connect()
        except TimeoutError:
            raise ConnectTimeout(f"no connection to {parts.netloc} within {timeout:g}s") from None
        except OSError as exc:
            raise ConnectionError(f"{parts.netloc}: {exc}") from None
        try:
            conn.request(method, path, body=body, headers=sent)
            got = conn.getresponse()
            data = got.read(MAX_BODY)
        except TimeoutError:
            raise Timeout(f"{method} {url}: no answer within {timeout:g}s") from None
        except (OSError, http.client.HTTPException) as exc:
            raise ConnectionError(f"{method} {url}: {type(exc).__name__}: {exc}") from None
        return Response(got.status, data.decode(_charset(got), "replace"))
    finally:
        conn.close()


def _charset(response: http.client.HTTPResponse) -> str:
    charset = response.headers.get_content_charset() or "utf-8"
    try:
        "".encode(charset)
    except LookupError:
        return "utf-8"
    return charset


def get(url: str, *, timeout: float, headers: dict[str, str] | None = None) -> Response:
    return request("GET", url, timeout=timeout, headers=headers)


def post(url: str, *, timeout: float, json: object = None,
         headers: dict[str, str] | None = None) -> Response:
    return request("POST", url, timeout=timeout, json=json, headers=headers)
