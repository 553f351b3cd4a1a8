"""Becoming root with sudo, the password (if any) fed on stdin and never on a command line.

Without a password: `sudo -n /bin/sh -c SCRIPT` (fails at once, never hangs
on a prompt). With `ansible_become_password`: the first line of stdin is the
password; a small fixed sh program reads it with the `read` builtin, hands it
to `sudo -S -k -v` through the `printf` builtin (builtins run no program, so
the password is in no process's arguments), then runs the script with
`sudo -n` under the credentials just validated (same parent process, so sudo's
per-parent timestamp applies), its stdin being the rest of ours. Only the
script travels as an argument, as it does without become.
"""

from __future__ import annotations

BECOME_EXIT = 97  # the password was refused: distinct from any script's own status
_WRAPPER = (
    'IFS= read -r pw || exit 96; '
    'printf "%s\\n" "$pw" | sudo -S -k -p "" -v >/dev/null 2>&1 || '
    '{ echo "sudo refused the become password (ansible_become_password)" >&2; exit 97; }; '
    'pw=; sudo -n /bin/sh -c "$1"'
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
