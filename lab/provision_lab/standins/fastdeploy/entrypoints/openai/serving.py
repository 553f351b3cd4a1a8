"""The HTTP side of the stand-in server: health, models, chat and completions, metrics.

Shapes follow upstream (api_server.py, serving_chat.py, serving_models.py, middleware.py):
- /health and /ping: 200 with an empty body;
- /v1/*: Bearer auth when keys are configured (401 {"error": "Unauthorized"});
- the request's model must be the served name or "default" when --served-model-name is set;
- streaming is server-sent events ending with `data: [DONE]`;
- over --max-concurrency: 429 {"detail": "Too many requests,current max concurrency is N"}.
Answers are deterministic: a canned answer from the lab's answers file, else a short reply.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import struct
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from fastdeploy import _lab
from fastdeploy.metrics.metrics import Metrics
from fastdeploy.utils import api_server_logger


class ServerState:
    """What every request handler needs: the parsed flags, keys, metrics and limits."""

    def __init__(self, args, api_keys: list) -> None:
        self.args = args
        self.model_path = args.model
        self.served = args.served_model_name or args.model
        self.verify_model = args.served_model_name is not None
        self.api_keys = api_keys
        self.metrics = Metrics(args.max_num_seqs)
        self.slots = threading.BoundedSemaphore(max(1, args.max_concurrency))
        self.created = int(time.time())


class LabHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, handler, state: ServerState) -> None:
        self.state = state
        super().__init__(address, handler)

    def handle_error(self, request, client_address) -> None:
        # A client that hangs up mid-stream is routine; keep it out of stderr, as uvicorn does.
        api_server_logger().warning(f"request from {client_address} ended early: "
                                    f"{sys.exc_info()[1]!r}")


def _last_user_text(messages: list) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


def images_received(messages: list) -> str:
    """What the last user message's images were, so the lab's tests can see them arrive.

    For each image_url part: "[image: TYPE, N bytes, WxH]" (N decoded bytes, TYPE from the
    data URL, PNG dimensions from its IHDR chunk); a URL that is not a data URL is named,
    not fetched (the lab has no internet). Empty when there is no image.
    """
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    parts = users[-1].get("content") if users else None
    seen = []
    for part in parts if isinstance(parts, list) else []:
        url = (part.get("image_url") or {}).get("url") if isinstance(part, dict) else None
        if not isinstance(url, str):
            continue
        head, _, data = url.partition(",")
        if not (head.startswith("data:") and head.endswith(";base64")):
            seen.append(f"[image: not a data URL: {url[:40]!r}]")
            continue
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            seen.append("[image: undecodable base64]")
            continue
        png = raw[:4] == b"\x89PNG" and len(raw) >= 24
        size = ", {}x{}".format(*struct.unpack(">II", raw[16:24])) if png else ""
        seen.append(f"[image: {head[5:-7]}, {len(raw)} bytes{size}]")
    return " ".join(seen)


def compose_answer(state: ServerState, question: str) -> tuple:
    """(answer text, delay seconds): the longest canned key found in the question wins."""
    lowered = question.lower()
    matches = [key for key in _lab.answers() if key and key in lowered]
    if matches:
        chosen = _lab.answers()[max(matches, key=len)]
        if chosen["text"]:
            return chosen["text"], chosen["delay_s"]
    return f"Hello from {state.served}, served by the provision lab's FastDeploy stand-in.", 0.0


def thinks(state: ServerState, body: dict) -> bool:
    """Whether the model thinks for this request, by its recorded rule (upstream's docs):
    21B-A3B-Thinking always; VL-28B-A3B-Thinking unless options.thinking_mode is "close";
    VL-28B-A3B unless enable_thinking is false. Other models never."""
    rule = _lab.model_rule("thinking", state.args.requested_model)
    kwargs = body.get("chat_template_kwargs") or {}
    if rule is None:
        return False
    if rule["mode"] == "always":
        return True
    if rule["mode"] == "close_with_options":
        return (kwargs.get("options") or {}).get("thinking_mode") != "close"
    return kwargs.get("enable_thinking") is not False


def _reasoning_text(question: str) -> str:
    return (f"The user asks: {question[:80]!r}. Let me think about what is really asked, "
            "check the facts I know, and then give a short, direct answer.")


def compose_reply(state: ServerState, body: dict, question: str, chat: bool,
                  max_tokens: int | None) -> tuple:
    """(content, reasoning or None, finish, tokens, delay): the thinking comes first and
    counts against max_tokens, so a small limit leaves `content` empty. Without a reasoning
    parser the thinking stays in `content`, ahead of "</think>"."""
    text, delay = compose_answer(state, question)
    thinking = _reasoning_text(question).split(" ") if chat and thinks(state, body) else []
    words = text.split(" ")
    finish = "stop"
    if max_tokens is not None and max_tokens < len(thinking) + len(words):
        finish = "length"
        thinking = thinking[:max_tokens]
        words = words[:max_tokens - len(thinking)]
    tokens = len(thinking) + len(words)
    content = " ".join(words)
    if thinking and not state.args.reasoning_parser:
        return " ".join(thinking) + "\n</think>\n\n" + content, None, finish, tokens, delay
    return content, " ".join(thinking) or None, finish, tokens, delay


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "uvicorn"
    sys_version = ""
    server: LabHTTPServer

    # ------------------------------------------------------------------ plumbing

    def log_message(self, format, *args):  # noqa: A002 - BaseHTTPRequestHandler's signature
        api_server_logger().info(f"{self.address_string()} - {format % args}")

    def _send(self, status: int, body: bytes = b"", content_type: str = "application/json"):
        self.send_response(status)
        if body:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data) -> None:
        self._send(status, json.dumps(data).encode())

    def _error(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        self._json(status, {"error": {"message": message, "type": kind, "param": None,
                                      "code": str(status)}})

    def _body(self) -> dict | None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            data = json.loads(raw or b"null")
        except ValueError:
            data = None
        if not isinstance(data, dict):
            self._error(400, "request body must be a JSON object")
            return None
        return data

    def _authorized(self) -> bool:
        keys = self.server.state.api_keys
        if not keys or not self.path.startswith("/v1"):
            return True
        header = self.headers.get("Authorization", "")
        if header.startswith("Bearer ") and header[len("Bearer "):] in keys:
            return True
        self._json(401, {"error": "Unauthorized"})
        return False

    # ------------------------------------------------------------------ routes

    def do_GET(self):  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        if not self._authorized():
            return
        if path in ("/health", "/ping"):
            self._send(200)
        elif path == "/v1/models" and _lab.has("models_endpoint"):
            self._json(200, self._models())
        else:
            self._json(404, {"detail": "Not Found"})

    def do_POST(self):  # noqa: N802
        path = self.path.split("?", 1)[0]
        if not self._authorized():
            return
        if path == "/ping":
            self._send(200)
        elif path in ("/v1/chat/completions", "/v1/completions"):
            self._generate(chat=path == "/v1/chat/completions")
        else:
            self._json(404, {"detail": "Not Found"})

    def _models(self) -> dict:
        state = self.server.state
        return {"object": "list", "data": [{
            "id": state.served, "object": "model", "created": state.created,
            "owned_by": "FastDeploy", "root": state.model_path, "parent": None,
            "max_model_len": state.args.max_model_len, "permission": [],
        }]}

    def _generate(self, chat: bool) -> None:
        state = self.server.state
        body = self._body()
        if body is None:
            return
        model = body.get("model") or "default"
        if state.verify_model and model not in (state.served, "default"):
            self._error(400, f"Unsupported model: [{model}], support [{state.served}] or default")
            return
        if chat:
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                self._error(400, "messages must be a non-empty list")
                return
            question = _last_user_text(messages)
            prompt_tokens = sum(len(json.dumps(m).split()) for m in messages)
        else:
            question = str(body.get("prompt") or "")
            prompt_tokens = len(question.split())
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        limit = state.args.max_model_len
        if max_tokens is not None and not (isinstance(max_tokens, int) and 1 <= max_tokens < limit):
            self._error(400, f"max_tokens can be defined [1, {limit}).")
            return
        if not state.slots.acquire(blocking=False):
            self._json(429, {"detail": "Too many requests,current max concurrency is "
                                       f"{state.args.max_concurrency}"})
            return
        state.metrics.request_started()
        started = time.monotonic()
        ok = False
        tokens = 0
        try:
            content, reasoning, finish, tokens, delay = compose_reply(
                state, body, question, chat, max_tokens)
            if chat and images_received(messages):  # the lab's proof that images arrive
                content = f"{images_received(messages)} {content}"
            words = content.split(" ") if content else []
            if delay:
                time.sleep(delay)
            reply = {"model": model, "text": content, "reasoning": reasoning,
                     "finish": finish, "prompt_tokens": prompt_tokens, "tokens": tokens,
                     "id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4()}",
                     "created": int(time.time())}
            if body.get("stream"):
                self._stream(chat, reply, words, bool((body.get("stream_options") or {})
                                                      .get("include_usage")))
            else:
                self._json(200, _full_response(chat, reply))
            ok = True
        finally:
            seconds = time.monotonic() - started
            state.metrics.request_finished(ok, prompt_tokens, tokens, seconds, seconds)
            state.slots.release()

    def _stream(self, chat: bool, reply: dict, words: list, include_usage: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for chunk in _chunks(chat, reply, words, include_usage):
            data = f"data: {json.dumps(chunk)}\n\n".encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
        done = b"data: [DONE]\n\n"
        self.wfile.write(f"{len(done):x}\r\n".encode() + done + b"\r\n0\r\n\r\n")
        self.wfile.flush()


def _usage(reply: dict) -> dict:
    return {"prompt_tokens": reply["prompt_tokens"], "completion_tokens": reply["tokens"],
            "total_tokens": reply["prompt_tokens"] + reply["tokens"],
            "prompt_tokens_details": {"cached_tokens": 0}}


def _full_response(chat: bool, reply: dict) -> dict:
    if chat:
        choice = {"index": 0, "message": {"role": "assistant", "content": reply["text"],
                                          "reasoning_content": reply["reasoning"],
                                          "tool_calls": None},
                  "logprobs": None, "finish_reason": reply["finish"]}
        kind = "chat.completion"
    else:
        choice = {"index": 0, "text": reply["text"], "logprobs": None,
                  "finish_reason": reply["finish"]}
        kind = "text_completion"
    return {"id": reply["id"], "object": kind, "created": reply["created"],
            "model": reply["model"], "choices": [choice], "usage": _usage(reply)}


def _chunks(chat: bool, reply: dict, words: list, include_usage: bool):
    base = {"id": reply["id"], "object": "chat.completion.chunk" if chat else "text_completion",
            "created": reply["created"], "model": reply["model"]}

    def chunk(delta_or_text, finish=None):
        if chat:
            choice = {"index": 0, "delta": delta_or_text, "logprobs": None, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": delta_or_text, "logprobs": None, "finish_reason": finish}
        return {**base, "choices": [choice]}

    if chat:
        yield chunk({"role": "assistant", "content": "", "reasoning_content": ""})
        if reply["reasoning"]:
            yield chunk({"content": "", "reasoning_content": reply["reasoning"]})
    for i, word in enumerate(words):
        piece = word if i == 0 else " " + word
        yield chunk({"content": piece, "reasoning_content": None} if chat else piece)
    yield chunk({"content": "", "reasoning_content": None} if chat else "", reply["finish"])
    if include_usage:
        yield {**base, "choices": [], "usage": _usage(reply)}


class MetricsHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: LabHTTPServer

    def log_message(self, format, *args):  # noqa: A002
        pass

    def do_GET(self):  # noqa: N802
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            body = self.server.state.metrics.render().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        elif path == "/config-info" and _lab.has("config_info"):
            body = json.dumps(config_info(self.server.state.args)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
        else:
            body = b'{"detail":"Not Found"}'
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def config_info(args) -> dict:
    """Upstream's /config-info (metrics app, 0.0.0.0, no auth): the engine's configuration and
    FastDeploy's environment variables, FD_API_KEY included."""
    env = {k: v for k, v in os.environ.items() if k.startswith(("FD_", "ENABLE_", "CUDA_"))}
    return {"args": {k: v for k, v in vars(args).items()}, "envs": env}
