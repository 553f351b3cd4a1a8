"""Becoming root with sudo, the password (if any) fed on stdin and never on a command line.

Without a password: `sudo -n /bin/sh -c SCRIPT` (fails at once, never hangs
on a prompt). With `ansible_become_password`, the first line of stdin is the
password. A small fixed sh program reads it with the `read` builtin into an
exported variable (visible to the same user and root only, never in any argv,
and dropped by sudo's env_reset before the script runs), writes a two-line
askpass helper that prints that variable (the helper file holds no secret),
checks the password with `sudo -A -k -v` (exit 97 with a clear message when
refused), then runs the script with `sudo -A -k`; the script's stdin is the
rest of ours. `-k` makes sudo ask every time (a cached credential never lets
the password line leak into the script), and a NOPASSWD rule simply never
runs the helper. Only the script travels as an argument, as it does without
become.
"""

from __future__ import annotations

BECOME_EXIT = 97  # the password was refused: distinct from any script's own status
_WRAPPER = (
    'IFS= read -r pw || exit 96\n'
    'PROVISION_BECOME_PW=$pw; export PROVISION_BECOME_PW; pw=\n'
    'askpass=$(mktemp) || exit 96\n'
    'trap \'rm -f "$askpass"\' EXIT\n'
    'printf \'#!/bin/sh\\nprintf "%%s\\\\n" "$PROVISION_BECOME_PW"\\n\' > "$askpass"\n'
    'chmod 700 "$askpass"\n'
    'SUDO_ASKPASS=$askpass sudo -A -k -p "" -v >/dev/null 2>&1 || '
    '{ echo "sudo refused the become password (ansible_become_password)" >&2; exit 97; }\n'
    'SUDO_ASKPASS=$askpass sudo -A -k -p "" /bin/sh -c "$1"\n'
)


def become_argv(script: str, with_password: bool) -> list[str]:
    """The argv that runs `script` as root through sudo (password or not)."""
    if not with_password:
        return ["sudo", "-n", "/bin/sh", "-c", script]
    return ["/bin/sh", "-c", _WRAPPER, "provision-become", script]


def become_stdin(password: str | None, stdin: bytes | None) -> bytes | None:
    """What to feed: the password line first when there is one, then the script's stdin."""
    if password is None:
        return stdin
    if "\n" in password:
        raise ValueError("a become password cannot contain a newline")
    return password.encode() + b"\n" + (stdin or b"")
