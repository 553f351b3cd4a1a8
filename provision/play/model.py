"""The playbook's values: plays, tasks, what a task must learn (Probe) and do (Action).

Everything here is plain data: the parser builds it, the modules read it, the runner
carries it out. Nothing in it touches a host.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from provision.model import ProvisionError


class PlaybookError(ProvisionError):
    """A playbook that cannot run: names the file, the line, the value and the fix (exit 2)."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Where:
    """A place in a YAML file, so every error points at the line to fix."""

    file: Path
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Task:
    """One task: a module with its (still untemplated) arguments and Ansible's keywords."""

    name: str
    module: str
    args: dict
    where: Where
    when: tuple[str, ...] = ()
    tags: frozenset[str] = frozenset()
    notify: tuple[str, ...] = ()
    become: bool | None = None
    register: str | None = None
    base_dir: Path = Path(".")  # where `src:` files are looked up (a role's files/ first)
    search: tuple[Path, ...] = ()  # every directory `src:` may come from, in order
    role: str | None = None
    vars: dict = field(default_factory=dict, hash=False, compare=False)
    defaults: dict = field(default_factory=dict, hash=False, compare=False)  # a role's defaults
    listen: tuple[str, ...] = ()  # handlers only


@dataclass(frozen=True)
class BuiltinRole:
    """A role whose logic is provision's Python (the deployment), named by the playbook."""

    name: str
    where: Where
    when: tuple[str, ...] = ()
    vars: dict = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class Play:
    """One play: the hosts pattern, variables and the ordered task lists."""

    name: str
    hosts: str
    where: Where
    vars: dict = field(default_factory=dict, hash=False, compare=False)
    pre_tasks: tuple[Task, ...] = ()
    roles_tasks: tuple[Task, ...] = ()
    builtin: tuple[BuiltinRole, ...] = ()
    tasks: tuple[Task, ...] = ()
    post_tasks: tuple[Task, ...] = ()
    handlers: tuple[Task, ...] = ()
    become: bool = False
    serial: tuple[str, ...] = ()  # "2", "50%": batch sizes, the last one repeats
    max_fail_percentage: float | None = None
    any_errors_fatal: bool = False

    def all_tasks(self) -> tuple[Task, ...]:
        return self.pre_tasks + self.roles_tasks + self.tasks + self.post_tasks


@dataclass(frozen=True)
class Probe:
    """A read-only question the facts trip answers for a task (state_script.py's kinds)."""

    kind: str  # file, package, unit, sysctl, mount, user, pip, path
    key: str
    content: bool = False  # a file's text is needed (lineinfile, blockinfile, --diff)

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.key}"


@dataclass(frozen=True)
class Action:
    """What a task must do, and why: the recap's reason, one POSIX sh script, its stdin."""

    reason: str
    script: str
    stdin: bytes | None = None
    diff: str = ""
    touches: tuple[str, ...] = ()  # probe ids whose gathered state is stale after this runs
