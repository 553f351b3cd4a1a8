"""Console lines, Ansible-style recap and JSON, all rendered from the same HostResults.

Nothing here decides anything: apply and runner produce StepResult/HostResult
values, this module only shows them (live while running, in full at the end).
Every string that leaves this module goes through `redact`, so a secret that
slipped into remote output (an API key echoed by a failing script) is masked.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import TextIO

from provision.model import HostResult, Problem

MASK = "********"


def redact(text: str, secrets: Iterable[str]) -> str:
    """Mask each secret where it stands as a whole value, not inside a longer word.

    Substring masking reveals a short key: with key "an", "change" would print as
    "ch********ge" everywhere, spelling the key out. A whole value is bounded by anything
    that is not a letter, digit, _ or - (quotes, spaces, =, /, the ends of the text).

    >>> redact("FD_API_KEY='an' and an answer", ["an"])
    "FD_API_KEY='********' and ******** answer"
    """
    for secret in secrets:
        if secret:
            text = re.sub(rf"(?<![A-Za-z0-9_-]){re.escape(secret)}(?![A-Za-z0-9_-])",
                          MASK, text)
    return text


def redact_data(value: object, secrets: tuple[str, ...]) -> object:
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {k: redact_data(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_data(v, secrets) for v in value]
    return value


def counts(result: HostResult) -> dict[str, int]:
    """Ansible's recap numbers: ok counts every successful step, changed ones included."""
    statuses = [s.status for s in result.steps]
    failed = statuses.count("failed")
    if result.status == "failed" and not failed:
        failed = 1  # refused at pre-flight, or failed outside a step
    return {
        "ok": sum(s in ("ok", "changed") for s in statuses),
        "changed": statuses.count("changed"),
        "failed": failed,
        "unreachable": int(result.status == "unreachable"),
        "skipped": statuses.count("skipped"),
    }


def recap_line(result: HostResult, width: int = 0) -> str:
    c = counts(result)
    return (f"{result.host.ljust(width)} : ok={c['ok']} changed={c['changed']} "
            f"failed={c['failed']} unreachable={c['unreachable']} skipped={c['skipped']}")


def problem_lines(results: Iterable[HostResult]) -> list[str]:
    """Every problem and error, each naming its host and fix: what to do next."""
    lines = []
    for r in results:
        for p in r.problems:
            lines.append(f"{p.severity.upper()}: {p}")
        if r.error:
            lines.append(f"ERROR: {r.error}")
    return lines


def summary(results: list[HostResult], exit_code: int, check: bool = False) -> dict:
    return {
        "check": check,
        "exit_code": exit_code,
        "ok": exit_code == 0,
        "recap": {r.host: counts(r) for r in results},
        "hosts": [dataclasses.asdict(r) for r in results],
    }


def to_json(results: list[HostResult], exit_code: int, *, check: bool = False,
            secrets: Iterable[str] = ()) -> str:
    data = redact_data(summary(results, exit_code, check), tuple(secrets))
    return json.dumps(data, indent=2, sort_keys=False)


class Reporter:
    """Live, thread-safe progress lines: `gpu1 | release | changed | 12.3s`.

    With --json the live lines go to stderr so stdout stays one JSON document.

    Progress on a long wait (`progress`) is shown two ways. On a terminal each busy host
    has one line at the bottom that is rewritten in place (a block of one line per host,
    redrawn under every ordinary line, so hosts that interleave stay readable). In logs
    and CI (not a terminal, or --json's stderr) it is an ordinary line, at most one per
    host every PLAIN_EVERY seconds, so a log is not flooded.
    """

    PLAIN_EVERY = 10.0

    def __init__(self, stream: TextIO | None = None, *, verbose: bool = False,
                 secrets: Iterable[str] = (), live: bool | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream or sys.stdout
        self.verbose = verbose
        self.secrets = tuple(s for s in secrets if s)
        self._lock = threading.Lock()
        if live is None:  # --json sends the lines to stderr: those are plain, for logs
            live = self.stream is not sys.stderr and _is_tty(self.stream)
        self.live = live
        self._clock = clock
        self._busy: dict[str, str] = {}  # host -> its progress line (terminal only)
        self._drawn = 0  # how many progress lines are on the screen below the text
        self._shown: dict[str, float] = {}  # host -> when its last plain progress line went

    def progress(self, host: str, name: str, text: str) -> None:
        """A long wait's state: `gpu1 | health | waiting 43s/1800s: loading weights 75%`."""
        line = redact(f"{host} | {name} | {text}", self.secrets)
        with self._lock:
            if self.live:
                self._busy[host] = line
                self._clear()
                self._draw()
            else:
                now = self._clock()
                if now - self._shown.get(host, float("-inf")) < self.PLAIN_EVERY - 0.5:
                    return
                self._shown[host] = now
                self.stream.write(line + "\n")
            self.stream.flush()

    def _clear(self) -> None:
        """Erase the progress block: up to its first line, then clear to the screen's end."""
        if self._drawn:
            self.stream.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def _draw(self) -> None:
        """One line per busy host, cut to the terminal's width so none wraps (a wrapped
        line would throw off the count that _clear moves up by)."""
        width = _width(self.stream)
        for line in self._busy.values():
            self.stream.write(line[:max(width - 1, 1)] + "\n")
        self._drawn = len(self._busy)

    def add_secret(self, secret: str | None) -> None:
        if secret and secret not in self.secrets:
            self.secrets += (secret,)

    def _write(self, text: str, done: str | None = None) -> None:
        """An ordinary line, above the progress block; `done` ends that host's progress."""
        with self._lock:
            if self.live:
                self._clear()
            if done is not None:
                self._busy.pop(done, None)
                self._shown.pop(done, None)
            self.stream.write(redact(text, self.secrets) + "\n")
            if self.live:
                self._draw()
            self.stream.flush()

    def line(self, host: str, name: str, status: str, seconds: float | None = None,
             detail: str = "") -> None:
        parts = [host, name, status] + ([f"{seconds:.1f}s"] if seconds is not None else [])
        self._write(" | ".join(parts) + (f" | {detail}" if detail else ""), done=host)

    def output(self, host: str, text: str, *, always: bool = False) -> None:
        """Remote output: shown with -v, or always for failures."""
        if text.strip() and (self.verbose or always):
            self._write("\n".join(f"{host} >   {ln}" for ln in text.rstrip().splitlines()))

    def say(self, text: str) -> None:
        """One line of the run's own (a rollout's fleet progress)."""
        self._write(text)

    def block(self, title: str, lines: Iterable[str]) -> None:
        lines = list(lines)
        if lines:
            self._write("\n".join([title, *lines]))

    def problem(self, problem: Problem) -> None:
        self._write(f"{problem.host} | {problem.severity.upper()}: {problem.message} "
                    f"({problem.key}={problem.value}). Fix: {problem.fix}")

    def recap(self, results: list[HostResult]) -> None:
        width = max((len(r.host) for r in results), default=0)
        self.block("\nRECAP", [recap_line(r, width) for r in results])
        self.block("\nPROBLEMS", problem_lines(results))


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or file-less stream
        return False


def _width(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns or 80  # 0: size not set
    except (AttributeError, OSError, ValueError):
        return 80


def table(rows: list[tuple[str, ...]]) -> list[str]:
    """Left-aligned columns as wide as their widest cell; the first row is the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in rows]
