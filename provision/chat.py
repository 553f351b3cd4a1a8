"""`provision chat`'s conversation: history, slash commands, and how answers are shown.

Pure session logic (no connection): the history sent with every question, the images
waiting for the next one, the thinking choice, `/think`, `/image`, `/reset`, `/save`, and a
printer that streams reasoning dimmed apart from the answer. The command that connects and
runs it is provision/commands/chat_cmd.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from provision.chat_client import (
    Answer,
    ChatError,
    Delta,
    ThinkingSwitch,
    image_data_url,
    is_vision,
    request_body,
    user_message,
)

DIM, RESET = "\x1b[2m", "\x1b[0m"
HELP = ("/think on|off  show or hide (and, where the model allows, skip) its reasoning\n"
        "/image PATH    attach an image to the next question (sent as a data URL)\n"
        "/reset         forget the conversation\n"
        "/save FILE     write the conversation as JSON\n"
        "/exit          leave (or Ctrl-D); Ctrl-C stops an answer, not the session")


# --------------------------------------------------------------------------- the conversation


@dataclass
class Conversation:
    """The history sent with every question (answers without their reasoning, as upstream
    recommends), the images waiting for the next question, and the thinking choice."""

    model: str
    switch: ThinkingSwitch
    think: bool = True
    messages: list[dict] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    turns: list[dict] = field(default_factory=list)

    def body(self, question: str, max_tokens: int | None = None) -> dict:
        self.messages.append(user_message(question, self.images))
        self.images = []
        return request_body(self.model, self.messages, self.switch, self.think, max_tokens)

    def answered(self, question: str, answer: Answer) -> None:
        """Keep the turn; an interrupted answer stays only if some of it arrived."""
        if answer.answer:
            self.messages.append({"role": "assistant", "content": answer.answer})
        else:
            self.messages.pop()
        self.turns.append({"question": question, "stopped": answer.stopped, **answer.as_dict()})

    def failed(self) -> None:
        self.messages.pop()

    def reset(self) -> None:
        self.messages, self.images, self.turns = [], [], []

    def as_dict(self) -> dict:
        return {"model": self.model, "messages": self.messages, "turns": self.turns}


def parse_command(line: str) -> tuple[str, str] | None:
    """`/name arg` to (name, arg); None for a question.

    >>> parse_command("/image  cat.png ")
    ('image', 'cat.png')
    >>> parse_command("what is 2+2?") is None
    True
    """
    text = line.strip()
    if not text.startswith("/") or text.startswith("//"):
        return None
    name, _, arg = text[1:].partition(" ")
    return name.lower(), arg.strip()


class Printer:
    """Streams pieces to the terminal: reasoning dimmed (or hidden), the answer plain."""

    def __init__(self, out: TextIO, color: bool, show_reasoning: bool = True) -> None:
        self.out, self.color, self.show_reasoning = out, color, show_reasoning
        self.last: str | None = None

    def __call__(self, delta: Delta) -> None:
        if delta.kind == "reasoning":
            if not self.show_reasoning:
                return
            if self.last != "reasoning":
                self.out.write((DIM if self.color else "") + "thinking: ")
            self.out.write(delta.text)
        else:
            if self.last == "reasoning":
                self.out.write((RESET if self.color else "") + "\n")
            self.out.write(delta.text)
        self.last = delta.kind
        self.out.flush()

    def end(self, note: str = "") -> None:
        if self.last == "reasoning" and self.color:
            self.out.write(RESET)
        self.out.write(note + "\n")
        self.out.flush()
        self.last = None


# --------------------------------------------------------------------------- commands


def run_command(conv: Conversation, name: str, arg: str, out: TextIO) -> bool:
    """Run one slash command; False means leave."""
    if name in ("exit", "quit"):
        return False
    if name == "reset":
        conv.reset()
        out.write("(conversation cleared)\n")
    elif name == "think":
        if arg not in ("on", "off"):
            out.write(f"thinking is {'on' if conv.think else 'off'}; use /think on|off\n")
            return True
        conv.think = arg == "on"
        if not conv.switch.reasons:
            out.write(f"({conv.model} does not reason; nothing to show or hide)\n")
        elif not conv.think and not conv.switch.can_turn_off:
            out.write(f"({conv.model} always thinks; FastDeploy has no switch for it: "
                      "its reasoning is now hidden)\n")
        else:
            out.write(f"(thinking {arg})\n")
    elif name == "image":
        _attach(conv, arg, out)
    elif name == "save":
        _save(conv, arg, out)
    else:
        out.write(f"unknown command /{name}\n{HELP}\n")
    return True


def _attach(conv: Conversation, path: str, out: TextIO) -> None:
    if not path:
        out.write("usage: /image PATH\n")
        return
    if is_vision(conv.model) is False:
        out.write(f"({conv.model} is not a vision model: it cannot read images)\n")
        return
    try:
        conv.images.append(image_data_url(path))
    except ChatError as exc:
        out.write(f"error: {exc}\n")
        return
    out.write(f"(image {Path(path).name} attached to your next question)\n")


def _save(conv: Conversation, path: str, out: TextIO) -> None:
    if not path:
        out.write("usage: /save FILE\n")
        return
    try:
        Path(path).expanduser().write_text(json.dumps(conv.as_dict(), indent=2) + "\n")
    except OSError as exc:
        out.write(f"error: cannot write {path!r}: {exc.strerror or exc}\n")
        return
    out.write(f"(saved {len(conv.messages)} messages to {path})\n")
