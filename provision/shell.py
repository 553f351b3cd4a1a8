"""The one place where values become shell text.

Every remote command is built here from quoted arguments (testinfra's choke point):
nothing else in provision formats a value into a shell string.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable


def cmd(*argv: object) -> str:
    """One command line from arguments, each quoted: cmd("echo", "a b") -> "echo 'a b'"."""
    return " ".join(shlex.quote(str(a)) for a in argv)


def fmt(template: str, *args: object) -> str:
    """A command with shell syntax of our own (pipes, redirects) and quoted values.

    fmt("cat %s > %s", src, dst): the template is ours, the values are quoted.
    """
    return template % tuple(shlex.quote(str(a)) for a in args)


def script(lines: Iterable[str]) -> str:
    """A POSIX sh script that stops at the first failing line."""
    return "set -eu\n" + "\n".join(lines) + "\n"

