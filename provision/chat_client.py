"""Talk to a served model over /v1/chat/completions: requests, streamed answers, images.

The pure parts (server-sent events to deltas, the thinking switch per model, image data
URLs, request bodies) are separate functions so they are unit-tested without a server;
`stream_chat` is the only function that does HTTP. Everything the server sends is
untrusted text: it is parsed as JSON and printed, never evaluated.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from provision import matrix
from provision.verify import Endpoint

if TYPE_CHECKING:
    import requests

MAX_IMAGE_BYTES = 20 * 1024 * 1024
_IMAGE_MAGIC = (  # (prefix, media type): sniffed, so a misnamed file still gets its real type
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
)


class ChatError(Exception):
    """The server refused or broke off a request; the text says what came back."""


# --------------------------------------------------------------------------- thinking


@dataclass(frozen=True)
class ThinkingSwitch:
    """How one model's reasoning is turned on and off, per FastDeploy's reasoning docs.

    Source: docs/features/reasoning_output.md (its "Thinking switch parameters" column) and
    fastdeploy-facts.md §0 C6. `off` is None when the model cannot stop thinking (then the
    client only hides the reasoning).
    """

    reasons: bool  # the model has a reasoning parser: reasoning_content may come back
    on: dict = field(default_factory=dict)
    off: dict | None = None

    def fields(self, think: bool) -> dict:
        """Extra request fields for this turn."""
        if think or not self.reasons:
            return dict(self.on)
        return dict(self.off or {})

    @property
    def can_turn_off(self) -> bool:
        return not self.reasons or self.off is not None


_ENABLE_THINKING = ThinkingSwitch(
    True, {"chat_template_kwargs": {"enable_thinking": True}},
    {"chat_template_kwargs": {"enable_thinking": False}})
_SWITCH_BY_PARSER = {  # the catalogue's reasoning parser names which switch its model has
    "ernie-45-vl": _ENABLE_THINKING,
    "ernie-x1": ThinkingSwitch(True, {}, None),  # 21B-A3B-Thinking: "cannot turn it off"
    "ernie_x1": ThinkingSwitch(True, {}, None),
    "ernie-45-vl-thinking": ThinkingSwitch(
        True, {}, {"chat_template_kwargs": {"options": {"thinking_mode": "close"}}}),
}


def thinking_switch(model: str, reasoning_parser: str | None = None) -> ThinkingSwitch:
    """The switch for a served model: from the catalogue's parser, else the setting's.

    A model outside the catalogue with no parser setting gets `enable_thinking`, the switch
    every ERNIE-4.5 chat template understands.

    >>> thinking_switch("baidu/ERNIE-4.5-21B-A3B-Thinking").can_turn_off
    False
    """
    info = matrix.model_info(model)
    parser = reasoning_parser or (info.reasoning_parser if info else None)
    if parser is None and info is not None:
        return ThinkingSwitch(False)
    return _SWITCH_BY_PARSER.get(parser or "", _ENABLE_THINKING)


def is_vision(model: str) -> bool | None:
    """True/False from the catalogue; None for a model it does not know."""
    info = matrix.model_info(model)
    return info.multimodal if info else None


# --------------------------------------------------------------------------- messages


def image_media_type(data: bytes) -> str | None:
    for magic, media in _IMAGE_MAGIC:
        if data.startswith(magic):
            return media
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def image_data_url(path: str | Path) -> str:
    """A local image as a data URL: a path on this machine means nothing to the server."""
    file = Path(path).expanduser()
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise ChatError(f"cannot read image {str(file)!r}: {exc.strerror or exc}") from None
    if len(data) > MAX_IMAGE_BYTES:
        raise ChatError(f"image {str(file)!r} is {len(data)} bytes; the limit is "
                        f"{MAX_IMAGE_BYTES} (send a smaller or compressed image)")
    media = image_media_type(data)
    if media is None:
        raise ChatError(f"{str(file)!r} is not a PNG, JPEG, GIF, BMP or WebP image")
    return f"data:{media};base64,{base64.b64encode(data).decode()}"


def user_message(text: str, images: Iterable[str] = ()) -> dict:
    """An OpenAI user message: plain text, or text plus image_url parts (data URLs)."""
    urls = list(images)
    if not urls:
        return {"role": "user", "content": text}
    parts: list[dict] = [{"type": "image_url", "image_url": {"url": u}} for u in urls]
    parts.append({"type": "text", "text": text})
    return {"role": "user", "content": parts}


def request_body(model: str, messages: list[dict], switch: ThinkingSwitch, think: bool,
                 max_tokens: int | None = None) -> dict:
    body = {"model": model, "messages": messages, "stream": True,
            "stream_options": {"include_usage": True}, **switch.fields(think)}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return body


# --------------------------------------------------------------------------- streaming


def sse_events(lines: Iterable[bytes | str]) -> Iterator[dict]:
    """Server-sent event lines to JSON payloads, up to `data: [DONE]`.

    Multi-line `data:` fields are joined as the SSE spec says; comments (`:`) and other
    fields are skipped; a payload that is not a JSON object raises ChatError.

    >>> list(sse_events([b'data: {"a": 1}', b'', b'data: [DONE]', b'']))
    [{'a': 1}]
    """
    data: list[str] = []

    def flush() -> dict | None:
        payload = "\n".join(data)
        data.clear()
        if not payload:
            return None
        try:
            event = json.loads(payload)
        except ValueError:
            raise ChatError(f"the server sent an event that is not JSON: {payload[:120]!r}") \
                from None
        if not isinstance(event, dict):
            raise ChatError(f"the server sent an event that is not an object: {payload[:120]!r}")
        return event

    for raw in lines:
        line = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        line = line.rstrip("\r\n")
        if not line:
            event = flush()
            if event is not None:
                yield event
            continue
        name, _, value = line.partition(":")
        if name != "data":
            continue
        value = value[1:] if value.startswith(" ") else value
        if value == "[DONE]" and not data:
            return
        data.append(value)
    event = flush()
    if event is not None:
        yield event


@dataclass(frozen=True)
class Delta:
    kind: str  # "reasoning" or "content"
    text: str


def deltas(event: dict) -> Iterator[Delta]:
    """The text pieces of one chunk; an error object from the server raises ChatError."""
    if "error" in event:
        error = event["error"]
        message = error.get("message") if isinstance(error, dict) else error
        raise ChatError(f"the server reported an error mid-answer: {str(message)[:300]}")
    for choice in event.get("choices") or []:
        delta = (choice or {}).get("delta") or {}
        reasoning, content = delta.get("reasoning_content"), delta.get("content")
        if isinstance(reasoning, str) and reasoning:
            yield Delta("reasoning", reasoning)
        if isinstance(content, str) and content:
            yield Delta("content", content)


@dataclass
class Answer:
    """One model turn, with the timing a user or a CI job asks about."""

    answer: str = ""
    reasoning: str = ""
    first_token_s: float | None = None  # from sending the request to the first text piece
    seconds: float = 0.0  # the whole request
    completion_tokens: int | None = None  # the server's usage, when it sends one
    pieces: int = 0  # text pieces received (one per token on FastDeploy)
    finish_reason: str | None = None
    stopped: bool = False  # the user interrupted it

    @property
    def tokens_per_s(self) -> float | None:
        tokens = self.completion_tokens if self.completion_tokens is not None else self.pieces
        if self.first_token_s is None or not tokens:
            return None
        generating = self.seconds - self.first_token_s
        return round(tokens / generating, 1) if generating > 0 else None

    def as_dict(self) -> dict:
        return {"answer": self.answer, "reasoning": self.reasoning,
                "latency_first_token_s": (round(self.first_token_s, 3)
                                          if self.first_token_s is not None else None),
                "tokens_per_s": self.tokens_per_s, "completion_tokens": self.completion_tokens,
                "finish_reason": self.finish_reason, "seconds": round(self.seconds, 3)}


def collect(events: Iterable[dict], answer: Answer, started: float,
            on_delta: Callable[[Delta], None], clock: Callable[[], float] = time.monotonic,
            ) -> Answer:
    """Fold streamed chunks into `answer`, calling `on_delta` for each piece as it lands."""
    for event in events:
        usage = event.get("usage")
        if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
            answer.completion_tokens = usage["completion_tokens"]
        for choice in event.get("choices") or []:
            answer.finish_reason = (choice or {}).get("finish_reason") or answer.finish_reason
        for delta in deltas(event):
            if answer.first_token_s is None:
                answer.first_token_s = clock() - started
            answer.pieces += 1
            if delta.kind == "reasoning":
                answer.reasoning += delta.text
            else:
                answer.answer += delta.text
            on_delta(delta)
    answer.seconds = clock() - started
    return answer


def _http_error(got: requests.Response) -> ChatError:
    text = got.text[:300]
    if got.status_code == 401:
        return ChatError("HTTP 401: the server wants an API key (set api_key in the "
                         "inventory, as `up` does)")
    return ChatError(f"HTTP {got.status_code}: {text!r}")


def stream_chat(endpoint: Endpoint, body: dict, on_delta: Callable[[Delta], None],
                answer: Answer | None = None, read_timeout: float = 600.0) -> Answer:
    """POST a streamed chat completion; pieces go to `on_delta` as they arrive.

    `answer` may be passed in so that a caller interrupted mid-stream (KeyboardInterrupt)
    keeps what had arrived. The connection is always closed on the way out.
    """
    import requests  # here: `up` loads this module for its pure helpers, never streams

    answer = answer if answer is not None else Answer()
    started = time.monotonic()
    try:
        got = requests.post(f"{endpoint.api}/v1/chat/completions", json=body,
                            headers=endpoint.headers(), stream=True, timeout=(10, read_timeout))
    except requests.RequestException as exc:
        raise ChatError(f"no answer from {endpoint.api}: {type(exc).__name__}") from None
    try:
        if got.status_code != 200:
            raise _http_error(got)
        return collect(sse_events(got.iter_lines()), answer, started, on_delta)
    except requests.RequestException as exc:
        raise ChatError(f"the answer broke off: {type(exc).__name__}") from None
    finally:
        answer.seconds = time.monotonic() - started
        got.close()
