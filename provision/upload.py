"""A file put on the host from bytes sent on stdin: never through argv, never half-written.

Content in a command line is visible to every user of the host (`/proc/*/cmdline`) and is
limited in size and encoding; content on stdin is neither. The bytes go to a temporary file
in the target's own directory, their count is checked (a connection lost mid-transfer must
not install a truncated file), then one rename puts them in place. A secret upload is
written under umask 077 and only ever described, never shown.
"""

from __future__ import annotations

from dataclasses import dataclass

from provision import shell

MASK = "********"


@dataclass(frozen=True)
class Upload:
    """One file to write on the host: its path, exact bytes, mode, and whether it is secret.

    `mode=None` keeps the mode and owner of the file it replaces (0644 for a new one).
    `follow_symlink` writes through a link to its target (/etc/hosts may be a link).
    """

    path: str
    data: bytes
    mode: str | None = "0644"
    secret: bool = False
    follow_symlink: bool = False

    def script_lines(self) -> list[str]:
        """Shell lines reading exactly len(data) bytes from stdin into `path`, atomically."""
        target = (shell.fmt('t="$(readlink -f %s)"', self.path) if self.follow_symlink
                  else shell.fmt("t=%s", self.path))
        keep = ('if [ -e "$t" ]; then chmod --reference="$t" "$t.provision-tmp" && '
                'chown --reference="$t" "$t.provision-tmp"; '
                'else chmod 0644 "$t.provision-tmp"; fi')
        mode = keep if self.mode is None else shell.fmt('chmod %s "$t.provision-tmp"', self.mode)
        return [
            target,
            'mkdir -p "$(dirname "$t")"',
            '(umask 077; cat > "$t.provision-tmp")',
            shell.fmt('if [ "$(wc -c < "$t.provision-tmp")" -ne %s ]; then '
                      'rm -f "$t.provision-tmp"; echo "provision: $t: the upload arrived '
                      'incomplete; the file was not changed" >&2; exit 1; fi', len(self.data)),
            mode,
            'mv -f "$t.provision-tmp" "$t"',
        ]

    def describe(self) -> str:
        """What --check prints: where, how, never a secret's bytes."""
        how = "mode kept" if self.mode is None else f"mode {self.mode}"
        what = "secret, contents not shown" if self.secret else f"{len(self.data)} bytes"
        link = ", through a symlink to its target" if self.follow_symlink else ""
        return f"upload {self.path} ({how}, {what}{link}) sent on stdin, never in argv"
