"""The chat client's pure parts and its HTTP streaming, against a real local HTTP server."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from provision.chat_client import (
    Answer,
    ChatError,
    Delta,
    collect,
    deltas,
    image_data_url,
    request_body,
    sse_events,
    stream_chat,
    thinking_switch,
    user_message,
)
from provision.verify import Endpoint

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x02\x00\x00\x00\x03"
       b"\x08\x02\x00\x00\x00")


def chunk(content: str | None = None, reasoning: str | None = None, finish=None) -> dict:
    return {"choices": [{"index": 0, "delta": {"content": content,
                                               "reasoning_content": reasoning},
                         "finish_reason": finish}]}


# --------------------------------------------------------------------------- SSE


def test_sse_events_stop_at_done_and_skip_comments() -> None:
    lines = [": keep-alive", "data: {\"a\": 1}", "", "event: x", "data: {\"b\": 2}", "",
             "data: [DONE]", "", "data: {\"c\": 3}", ""]
    assert list(sse_events(lines)) == [{"a": 1}, {"b": 2}]


def test_sse_multi_line_data_is_joined_and_crlf_tolerated() -> None:
    lines = [b"data: {\"a\":\r\n", b"data: 1}\r\n", b"\r\n"]
    assert list(sse_events(lines)) == [{"a": 1}]


def test_sse_last_event_without_blank_line_still_counts() -> None:
    assert list(sse_events(["data:{\"a\": 1}"])) == [{"a": 1}]


@pytest.mark.parametrize("payload", ["not json", "[1, 2]"])
def test_sse_bad_payload_is_a_chat_error(payload: str) -> None:
    with pytest.raises(ChatError, match="not"):
        list(sse_events([f"data: {payload}", ""]))


def test_deltas_split_reasoning_from_content_and_skip_empty() -> None:
    event = {"choices": [{"delta": {"content": "", "reasoning_content": "hmm"}},
                         {"delta": {"content": "Hi", "reasoning_content": None}}]}
    assert list(deltas(event)) == [Delta("reasoning", "hmm"), Delta("content", "Hi")]


def test_deltas_error_event_raises() -> None:
    with pytest.raises(ChatError, match="out of memory"):
        list(deltas({"error": {"message": "out of memory"}}))


def test_collect_times_the_first_token_and_counts_usage() -> None:
    ticks = iter([0.5, 2.5])
    events = [chunk(reasoning="let me see"), chunk(" yes"), chunk("!", finish="stop"),
              {"choices": [], "usage": {"completion_tokens": 8}}]
    seen: list[Delta] = []
    answer = collect(events, Answer(), 0.0, seen.append, clock=lambda: next(ticks))
    assert (answer.answer, answer.reasoning) == (" yes!", "let me see")
    assert answer.first_token_s == 0.5 and answer.seconds == 2.5
    assert answer.completion_tokens == 8 and answer.tokens_per_s == 4.0
    assert answer.finish_reason == "stop" and [d.kind for d in seen] == [
        "reasoning", "content", "content"]


def test_tokens_per_s_falls_back_to_pieces_and_is_none_without_tokens() -> None:
    assert Answer(first_token_s=1.0, seconds=2.0, pieces=3).tokens_per_s == 3.0
    assert Answer().tokens_per_s is None


# --------------------------------------------------------------------------- requests


def test_thinking_switch_per_model_follows_upstream_table() -> None:
    vl = thinking_switch("baidu/ERNIE-4.5-VL-28B-A3B-Paddle")
    assert vl.fields(False) == {"chat_template_kwargs": {"enable_thinking": False}}
    assert vl.fields(True) == {"chat_template_kwargs": {"enable_thinking": True}}
    vl_thinking = thinking_switch("baidu/ERNIE-4.5-VL-28B-A3B-Thinking")
    assert vl_thinking.fields(False) == {
        "chat_template_kwargs": {"options": {"thinking_mode": "close"}}}
    x1 = thinking_switch("baidu/ERNIE-4.5-21B-A3B-Thinking")
    assert not x1.can_turn_off and x1.fields(False) == {}
    plain = thinking_switch("baidu/ERNIE-4.5-0.3B-Paddle")
    assert not plain.reasons and plain.fields(False) == {} and plain.can_turn_off


def test_thinking_switch_follows_a_parser_setting_and_unknown_models() -> None:
    assert not thinking_switch("my/model", "ernie-x1").can_turn_off
    assert thinking_switch("my/model").fields(False) == {
        "chat_template_kwargs": {"enable_thinking": False}}


def test_image_data_url_sniffs_the_real_type(tmp_path) -> None:
    image = tmp_path / "photo.jpg"  # a PNG with the wrong suffix
    image.write_bytes(PNG)
    url = image_data_url(image)
    head, _, data = url.partition(",")
    assert head == "data:image/png;base64" and base64.b64decode(data) == PNG


def test_image_data_url_refuses_missing_and_non_images(tmp_path) -> None:
    with pytest.raises(ChatError, match="cannot read image"):
        image_data_url(tmp_path / "nope.png")
    text = tmp_path / "notes.png"
    text.write_text("hello")
    with pytest.raises(ChatError, match="not a PNG"):
        image_data_url(text)


def test_user_message_puts_images_before_the_text() -> None:
    assert user_message("hi") == {"role": "user", "content": "hi"}
    message = user_message("what is this?", ["data:image/png;base64,AA=="])
    assert [p["type"] for p in message["content"]] == ["image_url", "text"]


def test_request_body_streams_with_usage_and_the_switch() -> None:
    body = request_body("m", [user_message("hi")], thinking_switch("m"), think=False,
                        max_tokens=5)
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    assert body["max_tokens"] == 5 and body["model"] == "m"


# --------------------------------------------------------------------------- HTTP


class _Server(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    bodies: list = []

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).bodies.append((body, self.headers.get("Authorization")))
        if self.headers.get("Authorization") != "Bearer s3cret":
            data = b'{"error": "Unauthorized"}'
            self.send_response(401)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()  # no length: the stream ends when the connection closes
        events = [chunk(reasoning="thinking"), chunk("Hel"), chunk("lo", finish="stop")]
        for event in events:
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")
        self.close_connection = True


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _Server.bodies = []
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_stream_chat_sends_the_key_in_a_header_and_streams(server: str) -> None:
    endpoint = Endpoint(server, server, "m", "s3cret")
    seen: list[Delta] = []
    answer = stream_chat(endpoint, {"model": "m", "messages": []}, seen.append)
    assert answer.answer == "Hello" and answer.reasoning == "thinking"
    assert [d.text for d in seen] == ["thinking", "Hel", "lo"]
    assert _Server.bodies[0][1] == "Bearer s3cret"
    assert "s3cret" not in json.dumps(_Server.bodies[0][0])


def test_stream_chat_401_says_what_to_set_without_the_key(server: str) -> None:
    with pytest.raises(ChatError, match="api_key") as raised:
        stream_chat(Endpoint(server, server, "m", "wrong"), {"model": "m"}, lambda d: None)
    assert "wrong" not in str(raised.value)


def test_stream_chat_refused_connection_is_a_chat_error() -> None:
    with pytest.raises(ChatError, match="no answer from"):
        stream_chat(Endpoint("http://127.0.0.1:9", "", "m"), {}, lambda d: None)
