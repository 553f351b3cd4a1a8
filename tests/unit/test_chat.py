"""`provision chat`'s session logic: commands, history, printing, the down-server line."""

from __future__ import annotations

import io
import json

import pytest

from provision.chat import DIM, RESET, Conversation, Printer, parse_command, run_command
from provision.chat_client import Answer, Delta, thinking_switch
from provision.commands.chat_cmd import ChatArgs, down_line, fix_command
from provision.verify import UnitState

VL = "baidu/ERNIE-4.5-VL-28B-A3B-Paddle"
PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x02\x00\x00\x00\x03"
       b"\x08\x02\x00\x00\x00")


def conversation(model: str = VL) -> Conversation:
    return Conversation(model, thinking_switch(model))


@pytest.mark.parametrize(("line", "parsed"), [
    ("/exit", ("exit", "")),
    ("  /THINK off ", ("think", "off")),
    ("/save my chat.json", ("save", "my chat.json")),
    ("hello /reset", None),
    ("//not a command", None),
])
def test_parse_command(line: str, parsed) -> None:
    assert parse_command(line) == parsed


def test_history_keeps_answers_without_reasoning() -> None:
    conv = conversation()
    body = conv.body("first?")
    assert body["chat_template_kwargs"] == {"enable_thinking": True}
    conv.answered("first?", Answer(answer="one", reasoning="secret thoughts"))
    body = conv.body("second?")
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert "secret thoughts" not in json.dumps(body)


def test_a_stopped_answer_with_nothing_is_dropped_from_history() -> None:
    conv = conversation()
    conv.body("slow?")
    conv.answered("slow?", Answer(stopped=True))
    assert conv.messages == [] and conv.turns[0]["stopped"] is True
    conv.body("part?")
    conv.answered("part?", Answer(answer="half", stopped=True))
    assert conv.messages[-1] == {"role": "assistant", "content": "half"}


def test_think_off_uses_the_switch_or_says_it_cannot() -> None:
    out = io.StringIO()
    conv = conversation()
    assert run_command(conv, "think", "off", out)
    assert conv.body("q")["chat_template_kwargs"] == {"enable_thinking": False}
    x1 = conversation("baidu/ERNIE-4.5-21B-A3B-Thinking")
    run_command(x1, "think", "off", out)
    assert "always thinks" in out.getvalue() and "chat_template_kwargs" not in x1.body("q")


def test_image_attaches_to_the_next_question_only(tmp_path) -> None:
    image = tmp_path / "cat.png"
    image.write_bytes(PNG)
    out = io.StringIO()
    conv = conversation()
    run_command(conv, "image", str(image), out)
    first = conv.body("what is it?")["messages"][-1]["content"]
    assert first[0]["image_url"]["url"].startswith("data:image/png;base64,")
    conv.answered("what is it?", Answer(answer="a cat"))
    assert conv.body("and now?")["messages"][-1]["content"] == "and now?"


def test_image_refused_for_a_text_model_and_for_a_bad_file(tmp_path) -> None:
    out = io.StringIO()
    text_model = conversation("baidu/ERNIE-4.5-0.3B-Paddle")
    run_command(text_model, "image", str(tmp_path / "x.png"), out)
    assert "not a vision model" in out.getvalue() and text_model.images == []
    conv = conversation()
    run_command(conv, "image", str(tmp_path / "missing.png"), out)
    assert "cannot read image" in out.getvalue() and conv.images == []


def test_save_and_reset(tmp_path) -> None:
    out = io.StringIO()
    conv = conversation()
    conv.body("hi")
    conv.answered("hi", Answer(answer="hello", first_token_s=0.1, seconds=0.2, pieces=1))
    target = tmp_path / "chat.json"
    run_command(conv, "save", str(target), out)
    saved = json.loads(target.read_text())
    assert saved["model"] == VL and saved["messages"][1]["content"] == "hello"
    assert saved["turns"][0]["latency_first_token_s"] == 0.1
    run_command(conv, "reset", "", out)
    assert conv.messages == [] and conv.turns == []
    assert not run_command(conv, "exit", "", out)
    run_command(conv, "nope", "", out)
    assert "unknown command /nope" in out.getvalue()


def test_printer_dims_reasoning_and_hides_it_when_asked() -> None:
    out = io.StringIO()
    printer = Printer(out, color=True)
    for delta in (Delta("reasoning", "hm"), Delta("reasoning", "m"), Delta("content", "Yes")):
        printer(delta)
    printer.end()
    assert out.getvalue() == f"{DIM}thinking: hmm{RESET}\nYes\n"
    hidden = io.StringIO()
    printer = Printer(hidden, color=False, show_reasoning=False)
    printer(Delta("reasoning", "secret"))
    printer(Delta("content", "Yes"))
    printer.end(" [stopped]")
    assert hidden.getvalue() == "Yes [stopped]\n"


def test_down_line_names_the_unit_state_and_the_fix() -> None:
    fix = fix_command(ChatArgs(inventory="my inv.yml", host="gpu1"), "fastdeploy")
    assert fix.startswith("provision up -i 'my inv.yml' --host gpu1")
    line = down_line("gpu1", "http://h:8180", "ConnectionError",
                     UnitState("failed", "failed", 3), "fastdeploy", fix)
    assert "unit fastdeploy is failed/failed, restarts=3" in line and "Fix: provision up" in line
    assert "\n" not in line
    loading = down_line("gpu1", "http://h:8180", "HTTP 503",
                        UnitState("active", "running", 0), "fastdeploy", fix)
    assert "still starting or loading" in loading and "journalctl -u fastdeploy -f" in loading
    unknown = down_line("gpu1", "http://h:8180", "ConnectTimeout", None, "fastdeploy", fix)
    assert "state of unit fastdeploy is unknown" in unknown
