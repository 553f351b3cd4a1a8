"""`provision chat`: talk to the model a host serves, in a terminal or from a script.

The endpoint, served model name and API key come from the inventory exactly as `up`
reaches them (direct, or through an SSH tunnel when the port is not reachable). A server
that does not answer gets one line naming its unit's state and the fix. The API key is only
ever sent in the Authorization header: never printed, never on a command line.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from dataclasses import dataclass
from typing import TextIO

import requests

from provision.apply import Route
from provision.chat import HELP, Conversation, Printer, parse_command, run_command
from provision.chat_client import Answer, ChatError, image_data_url, stream_chat, thinking_switch
from provision.commands.targets import ConfigErrors, InventoryArgs, resolve_targets
from provision.connection import Remote
from provision.model import HostSpec, ProvisionError, Settings, UnreachableError
from provision.report import redact
from provision.runner import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE
from provision.verify import Endpoint, UnitState, parse_unit_state, unit_state_script

# --------------------------------------------------------------------------- the server


def down_line(host: str, api: str, seen: str, state: UnitState | None, service: str,
              fix: str) -> str:
    """One line for a server that does not answer: what was seen, the unit's state, the fix."""
    unit = f"unit {service} is {state}" if state else f"the state of unit {service} is unknown"
    if state is not None and not state.broken and state.active in ("activating", "active"):
        unit += ": still starting or loading the model"
        fix = f"wait and retry; follow it with journalctl -u {service} -f on the host"
    return f"{host}: the API server at {api} does not answer ({seen}); {unit}. Fix: {fix}"


class Link:
    """The SSH connection and HTTP route to one host's server, open for a whole session."""

    def __init__(self, spec: HostSpec, settings: Settings, accept_new_host_key: bool,
                 fix: str) -> None:
        self.spec, self.settings, self.fix = spec, settings, fix
        self.remote = Remote(spec, settings, accept_new_host_key=accept_new_host_key)
        self.route: Route | None = None

    def open(self) -> Endpoint:
        self.route = Route(self.remote, self.settings)
        return Endpoint(self.route.api, self.route.metrics, self.settings.model,
                        self.settings.api_key)

    def health(self, endpoint: Endpoint) -> str | None:
        """None when /health answers 200, else what was seen."""
        try:
            got = requests.get(f"{endpoint.api}/health", timeout=10)
        except requests.RequestException as exc:
            return f"{type(exc).__name__}"
        return None if got.status_code == 200 else f"HTTP {got.status_code}"

    def unit_state(self) -> UnitState | None:
        try:
            got = self.remote.run(unit_state_script(self.settings), 30)
        except ProvisionError:
            return None
        return parse_unit_state(got.stdout) if got.ok else None

    def down(self, endpoint: Endpoint) -> str | None:
        """The one line for a server that does not answer; None when it does."""
        seen = self.health(endpoint)
        if seen is None:
            return None
        return down_line(self.spec.name, endpoint.api, seen, self.unit_state(),
                         self.settings.service_name, self.fix)

    def close(self) -> None:
        if self.route is not None:
            self.route.__exit__(None, None, None)
        self.remote.close()


# --------------------------------------------------------------------------- the two modes


def ask(link: Link, endpoint: Endpoint, conv: Conversation, question: str,
        printer: Printer) -> Answer | None:
    """One turn: stream the answer; Ctrl-C stops it (what arrived is kept), errors print."""
    body = conv.body(question)
    answer = Answer()
    try:
        stream_chat(endpoint, body, printer, answer)
    except KeyboardInterrupt:
        answer.stopped = True
        printer.end(" [stopped]")
        conv.answered(question, answer)
        return answer
    except ChatError as exc:
        conv.failed()
        printer.end()
        line = link.down(endpoint) or f"{link.spec.name}: error: {exc}"
        printer.out.write(redact(line, (endpoint.api_key or "",)) + "\n")
        return None
    printer.end()
    conv.answered(question, answer)
    return answer


def interactive(link: Link, endpoint: Endpoint, conv: Conversation, out: TextIO) -> int:
    try:
        import readline  # noqa: F401 - line editing and history for input()
    except ImportError:
        pass
    color = out.isatty() and not os.environ.get("NO_COLOR")
    printer = Printer(out, color)
    out.write(f"Chatting with {conv.model} on {link.spec.name} ({endpoint.api}).\n{HELP}\n")
    while True:
        try:
            line = input("you> ")
        except EOFError:
            out.write("\n")
            return EXIT_OK
        except KeyboardInterrupt:
            out.write("\n(type /exit to leave)\n")
            continue
        command = parse_command(line)
        if command is not None:
            if not run_command(conv, *command, out):
                return EXIT_OK
        elif line.strip():
            printer.show_reasoning = conv.think
            ask(link, endpoint, conv, line.strip(), printer)


def one_shot(link: Link, endpoint: Endpoint, conv: Conversation, question: str,
             images: tuple[str, ...], as_json: bool, out: TextIO) -> int:
    try:
        conv.images = [image_data_url(path) for path in images]
    except ChatError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return EXIT_USAGE
    printer = Printer(sys.stderr if as_json else out, color=False, show_reasoning=False)
    body = conv.body(question)
    try:
        answer = stream_chat(endpoint, body, lambda d: None if as_json else printer(d))
    except ChatError as exc:
        line = link.down(endpoint) or f"{link.spec.name}: error: {exc}"
        print("ERROR: " + redact(line, (endpoint.api_key or "",)), file=sys.stderr)
        return EXIT_FAILED
    if as_json:
        out.write(json.dumps({"host": link.spec.name, "model": conv.model,
                              **answer.as_dict()}, indent=2) + "\n")
    else:
        printer.end()
    if not answer.answer:
        print(f"ERROR: {link.spec.name}: the model returned no answer "
              f"(finish_reason={answer.finish_reason})", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


@dataclass(frozen=True)
class ChatArgs:
    inventory: InventoryArgs | str | None
    host: str
    extra: tuple[str, ...] = ()
    message: str | None = None
    images: tuple[str, ...] = ()
    as_json: bool = False
    think: bool = True
    accept_new_host_key: bool = False


def fix_command(args: ChatArgs, service: str) -> str:
    paths = getattr(args.inventory, "paths", None) or ([args.inventory] if args.inventory else [])
    inventory = "".join(f" -i {shlex.quote(str(path))}" for path in paths)
    return (f"provision up{inventory} --host {shlex.quote(args.host)} redeploys it; "
            f"journalctl -u {shlex.quote(service)} on the host says why it stopped")


def run_chat(args: ChatArgs, spec: HostSpec, settings: Settings) -> int:
    """Open the route, check the server once, then chat; always closes the connection."""
    link = Link(spec, settings, args.accept_new_host_key, fix_command(args, settings.service_name))
    conv = Conversation(settings.model, thinking_switch(settings.model, settings.reasoning_parser),
                        think=args.think)
    try:
        endpoint = link.open()
        down = link.down(endpoint)
        if down:
            print(f"ERROR: {down}", file=sys.stderr)
            return EXIT_FAILED
        if args.message is not None:
            return one_shot(link, endpoint, conv, args.message, args.images, args.as_json,
                            sys.stdout)
        return interactive(link, endpoint, conv, sys.stdout)
    except UnreachableError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    finally:
        link.close()


def run_chat_command(args: ChatArgs) -> int:
    """`provision chat`: resolve the one host (config errors exit 2 before any connection)."""
    try:
        [(spec, settings)] = resolve_targets(args.inventory, args.host, None, args.extra)
    except ConfigErrors as exc:
        for error in exc.errors:
            print(f"ERROR: {error}", file=sys.stderr)
        return EXIT_USAGE
    return run_chat(args, spec, settings)
