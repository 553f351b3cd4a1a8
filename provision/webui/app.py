"""The web chat page `up` deploys with `web_ui: true`: Gradio, in its own venv on the host.

Run as `python app.py CONFIG.json` by its systemd unit (as an unprivileged dynamic user).
CONFIG (no secrets, world-readable) names the API, the model, its thinking switch and the
port; the API key and the page's password come from the environment (the unit's root-only
EnvironmentFile): PROVISION_WEB_API_KEY, PROVISION_WEB_PASSWORD.

This file is copied to the host as is and imports only the standard library and what the
pinned Gradio brings (httpx). Model answers are untrusted text: shown by Gradio's
sanitising Markdown renderer, never evaluated.
"""

from __future__ import annotations

import base64
import hmac
import json
import mimetypes
import os
import sys
from collections.abc import Iterator

import gradio as gr
import httpx

MAX_IMAGE_BYTES = 20 * 1024 * 1024


def load_config(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def data_url(path: str) -> str:
    """An uploaded file (on this host) as a data URL: the API server never sees our paths."""
    with open(path, "rb") as f:
        data = f.read(MAX_IMAGE_BYTES + 1)
    if len(data) > MAX_IMAGE_BYTES:
        raise gr.Error(f"{os.path.basename(path)} is over {MAX_IMAGE_BYTES} bytes")
    media = mimetypes.guess_type(path)[0] or "application/octet-stream"
    return f"data:{media};base64,{base64.b64encode(data).decode()}"


def sse_json(lines: Iterator[str]) -> Iterator[dict]:
    """`data:` payloads of a server-sent event stream, up to [DONE]."""
    for line in lines:
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            return
        try:
            event = json.loads(payload)
        except ValueError:
            continue
        if isinstance(event, dict):
            yield event


class Chat:
    """One page's behaviour: the OpenAI history in a per-session state, the view beside it."""

    def __init__(self, config: dict, api_key: str | None) -> None:
        self.config = config
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def body(self, messages: list, think: bool) -> dict:
        switch = self.config["think_on"] if think else self.config["think_off"]
        return {"model": self.config["model"], "messages": messages, "stream": True,
                **(switch or {})}

    def stream(self, messages: list, think: bool) -> Iterator[tuple[str, str]]:
        """(reasoning so far, answer so far) after each streamed piece."""
        reasoning = answer = ""
        url = f"{self.config['api']}/v1/chat/completions"
        timeout = httpx.Timeout(10.0, read=float(self.config.get("read_timeout", 600)))
        with httpx.stream("POST", url, json=self.body(messages, think), headers=self.headers,
                          timeout=timeout) as got:
            if got.status_code != 200:
                got.read()
                raise gr.Error(f"the API server answered HTTP {got.status_code}: "
                               f"{got.text[:200]}")
            for event in sse_json(got.iter_lines()):
                if "error" in event:
                    raise gr.Error(f"the API server reported: {str(event['error'])[:200]}")
                for choice in event.get("choices") or []:
                    delta = (choice or {}).get("delta") or {}
                    reasoning += delta.get("reasoning_content") or ""
                    answer += delta.get("content") or ""
                yield reasoning, answer

    def respond(self, message: dict, state: dict, think: bool):
        """The page's submit handler (also its API, `/chat`): stream into the chat view."""
        state = state or {"api": [], "shown": []}
        text = (message or {}).get("text") or ""
        files = [f if isinstance(f, str) else f.get("path") for f in
                 (message or {}).get("files") or []]
        if not text.strip() and not files:
            yield state["shown"], None, state
            return
        parts = [{"type": "image_url", "image_url": {"url": data_url(p)}} for p in files]
        question = [*parts, {"type": "text", "text": text}] if parts else text
        api = [*state["api"], {"role": "user", "content": question}]
        shown = [*state["shown"], *({"role": "user", "content": {"path": p}} for p in files),
                 {"role": "user", "content": text}]
        reasoning = answer = ""
        try:
            for reasoning, answer in self.stream(api, think):
                yield self.view(shown, reasoning, answer, done=False), None, state
        except httpx.HTTPError as exc:
            raise gr.Error(f"the API server did not answer: {type(exc).__name__}") from None
        shown = self.view(shown, reasoning, answer, done=True)
        state = {"api": [*api, {"role": "assistant", "content": answer}], "shown": shown}
        yield shown, None, state

    @staticmethod
    def view(shown: list, reasoning: str, answer: str, done: bool) -> list:
        """The reasoning as a collapsible "Thinking" block, then the answer."""
        extra = []
        if reasoning:
            extra.append({"role": "assistant", "content": reasoning,
                          "metadata": {"title": "Thinking", "status": "done" if done
                                       else "pending"}})
        if answer or done:
            extra.append({"role": "assistant", "content": answer})
        return [*shown, *extra]


def build(config: dict, api_key: str | None) -> gr.Blocks:
    chat = Chat(config, api_key)
    model = config["model"]
    vision = bool(config.get("vision"))
    with gr.Blocks(title=f"{model} chat", analytics_enabled=False) as page:
        gr.Markdown(f"# {model}")
        state = gr.State({"api": [], "shown": []})
        view = gr.Chatbot(type="messages", label=model, elem_id="chat", height=520,
                          allow_tags=False)
        box = gr.MultimodalTextbox(
            placeholder="Ask a question" + (", or attach an image" if vision else ""),
            file_types=["image"] if vision else [], file_count="multiple",
            sources=["upload"] if vision else [], show_label=False, elem_id="question")
        with gr.Row():
            think = gr.Checkbox(value=bool(config.get("think_default", True)),
                                label="Reason first (shown in a collapsible block)",
                                elem_id="think")
            clear = gr.Button("Clear chat", elem_id="clear")
        box.submit(chat.respond, [box, state, think], [view, box, state], api_name="chat")
        clear.click(lambda: ([], None, {"api": [], "shown": []}), None, [view, box, state],
                    api_name=False, queue=False)
    return page


def main(argv: list[str]) -> int:
    config = load_config(argv[1])
    password = os.environ.get("PROVISION_WEB_PASSWORD") or None
    page = build(config, os.environ.get("PROVISION_WEB_API_KEY") or None)
    auth = None
    if password:  # any user name; the password compared in constant time
        def auth(_user: str, given: str) -> bool:
            return hmac.compare_digest(given.encode(), password.encode())
    page.queue(default_concurrency_limit=int(config.get("concurrency", 8)))
    page.launch(server_name=config.get("bind", "0.0.0.0"), server_port=int(config["port"]),
                auth=auth, auth_message=f"Sign in to chat with {config['model']}",
                share=False, show_api=True, quiet=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
