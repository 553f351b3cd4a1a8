"""Acceptance prompts: the five things people judge a deployed model on.

A server that answers `/health` and one chat can still be useless (wrong weights, a broken
tokenizer, a quantization that lost too much). These prompts have answers that can be
checked by a machine, so a smoke deploy fails on a model that talks nonsense. The prompts
and their expected answers are data (provision/data/acceptance/prompts.yaml); the checker
kinds are here. Latency is recorded per prompt, since a slow answer is also a finding.
"""

from __future__ import annotations

import base64
import functools
import json
import re
import struct
import time
import zlib
from dataclasses import dataclass
from fractions import Fraction
from importlib import resources

import yaml

from provision import plain_http
from provision.sandbox import Sandbox
from provision.verify import Check, Endpoint, chat_body

ANSWER_TOKENS = 512  # a thinking model that cannot stop gets the model's own, larger budget
TOLERANCE = 0.005  # how far a decimal answer may be from the exact fraction (0.18 for 2/11)


@dataclass(frozen=True)
class Prompt:
    name: str
    key: str
    prompt: str
    kind: str
    expected: object
    image: str | None = None
    vision_only: bool = False
    source: str = ""  # where the expected answer comes from (every data entry has one)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str


@functools.cache
def load_prompts() -> tuple[Prompt, ...]:
    text = resources.files("provision").joinpath("data/acceptance/prompts.yaml").read_text()
    return tuple(Prompt(**entry) for entry in yaml.safe_load(text)["prompts"])


# --------------------------------------------------------------------------- checkers


def _trim(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


_NUMBER = re.compile(r"(-?\d+(?:\.\d+)?)\s*(/\s*(\d+)|%)?")


def last_number(text: str) -> Fraction | None:
    """The final answer a model gives is its last number: "1/6? no: 2/11" -> 2/11.

    >>> last_number("so the answer is 18.2%")
    Fraction(91, 500)
    """
    found = None
    for match in _NUMBER.finditer(text):
        value = Fraction(match.group(1))
        if match.group(3):
            if int(match.group(3)) == 0:
                continue
            value /= int(match.group(3))
        elif match.group(2):
            value /= 100
        found = value
    return found


def judge_fraction(expected: str, answer: str) -> Verdict:
    want = Fraction(expected)
    got = last_number(answer)
    if got is None:
        return Verdict(False, f"no number in the answer; expected {expected}: {_trim(answer)!r}")
    if got == want or abs(float(got) - float(want)) <= TOLERANCE:
        return Verdict(True, f"answered {got} (expected {expected})")
    return Verdict(False, f"wrong answer {got}, expected {expected}: {_trim(answer)!r}")


def judge_contains_word(expected: list[str], answer: str) -> Verdict:
    words = set(re.findall(r"[a-z0-9]+", answer.lower()))
    if any(w.lower() in words for w in expected):
        return Verdict(True, _trim(answer, 60))
    return Verdict(False, f"expected one of {expected}, got {_trim(answer)!r}")


def extract_code(answer: str) -> str:
    """The first fenced code block, or the whole answer when there is none."""
    match = re.search(r"```(?:python|py)?\s*\n(.*?)```", answer, re.S)
    return match.group(1) if match else answer


def judge_python_function(expected: dict, answer: str, sandbox: Sandbox | None,
                          timeout_s: float = 5.0) -> Verdict:
    """Run the answer's function on known inputs in a sandbox on the GPU host, with a deadline.

    The code comes from a model: untrusted. It runs only in `sandbox` (provision.sandbox: a
    throwaway systemd unit on the host under test), never on this machine; without a
    sandbox the check is not run at all and fails saying so.
    """
    name, cases = expected["function"], expected["cases"]
    code = extract_code(answer)
    if not re.search(rf"^\s*def\s+{re.escape(name)}\s*\(", code, re.M):
        return Verdict(False, f"no function {name}() in the answer: {_trim(answer)!r}")
    if sandbox is None:
        return Verdict(False, f"{name}() not run: no sandbox on the host to run a model's "
                              "code in (it never runs on this machine)")
    harness = (
        code + "\nimport json, sys\n"
        + f"print(json.dumps([{name}(*args) for args, _ in json.loads(sys.argv[1])]))\n"
    )
    run = sandbox(harness, [json.dumps(cases)], timeout_s)
    if run.timed_out:
        return Verdict(False, f"{name}() did not return within {timeout_s:.0f}s")
    if run.rc != 0:
        last = (run.stderr.strip().splitlines() or [f"exit status {run.rc}"])[-1]
        return Verdict(False, f"{name}() failed: {_trim(last)}")
    try:
        results = json.loads(run.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return Verdict(False, f"{name}() printed no result: {_trim(run.stdout)!r}")
    if not isinstance(results, list) or len(results) != len(cases):
        return Verdict(False, f"{name}() printed an unexpected result: {_trim(run.stdout)!r}")
    for (args, want), got in zip(cases, results, strict=True):
        if got != want:
            return Verdict(False, f"{name}({', '.join(map(repr, args))}) returned {got!r}, "
                                  f"expected {want!r}")
    return Verdict(True, f"{name}() right on {len(cases)} inputs")


_JUDGES = {
    "fraction": judge_fraction,
    "contains_word": judge_contains_word,
}


def judge(kind: str, expected: object, answer: str, sandbox: Sandbox | None = None) -> Verdict:
    if not answer.strip():
        return Verdict(False, "the answer was empty")
    if kind == "python_function":
        return judge_python_function(expected, answer, sandbox)  # type: ignore[arg-type]
    return _JUDGES[kind](expected, answer)


# --------------------------------------------------------------------------- images


def png_square(rgb: tuple[int, int, int], size: int = 16) -> bytes:
    """A solid-colour PNG, made here so the tool ships no binary file."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    row = b"\x00" + bytes(rgb) * size
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(row * size)) + chunk(b"IEND", b""))


IMAGES = {"red_square": lambda: png_square((220, 20, 20))}


def _content(prompt: Prompt) -> object:
    if not prompt.image:
        return prompt.prompt
    data = base64.b64encode(IMAGES[prompt.image]()).decode()
    return [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}},
        {"type": "text", "text": prompt.prompt},
    ]


# --------------------------------------------------------------------------- running


def ask(endpoint: Endpoint, prompt: Prompt, timeout_s: float) -> tuple[str | None, str]:
    """(answer, error): the model's `content`, or why there is none."""
    body = chat_body(endpoint, _content(prompt), ANSWER_TOKENS)
    try:
        got = plain_http.post(f"{endpoint.api}/v1/chat/completions", json=body,
                            headers=endpoint.headers(), timeout=timeout_s)
    except plain_http.Timeout:
        return None, f"no answer within {timeout_s:.0f}s"
    except plain_http.RequestException as exc:
        return None, f"{type(exc).__name__}: {exc}"
    if got.status_code != 200:
        return None, f"HTTP {got.status_code}: {_trim(got.text)}"
    try:
        message = (got.json().get("choices") or [{}])[0].get("message") or {}
    except ValueError:
        return None, f"not JSON: {_trim(got.text)}"
    return (message.get("content") or ""), ""


def run_acceptance(endpoint: Endpoint, vision: bool, timeout_s: float = 120.0,
                   sandbox: Sandbox | None = None) -> list[Check]:
    """Every prompt in order; vision prompts only for vision models. Never raises.

    `sandbox` runs the program prompt's code on the GPU host (None: that check fails unrun).
    """
    checks = []
    for prompt in load_prompts():
        if prompt.vision_only and not vision:
            continue
        start = time.monotonic()
        answer, error = ask(endpoint, prompt, timeout_s)
        if answer is None:
            verdict = Verdict(False, error)
        else:
            verdict = judge(prompt.kind, prompt.expected, answer, sandbox)
        checks.append(Check(f"acceptance:{prompt.name}", verdict.ok,
                            time.monotonic() - start, verdict.reason))
    return checks
