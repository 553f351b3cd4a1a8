"""One host through one play: facts and every task's state in ONE exec, then only the
tasks that must change, handlers once per flush, the built-in deployment in its place.

A PlayHostRun is the deployment's HostRun (connect, facts, plan, apply, verify) with
the play's tasks around it: pre_tasks, then the built-in roles (the deployment's own
plan and verification, reusing the same facts), then tasks and post_tasks. A converged
host costs the one facts exec; a task re-reads its state (one exec) only when its
arguments need facts or an earlier change made what it reads stale.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from provision.apply import FACTS_TIMEOUT, HostRun, Options
from provision.connection import RemoteTimeout
from provision.facts import facts_from_json, gather_command, unframe
from provision.model import Facts, HostResult, HostSpec, ProvisionError, Settings, StepResult
from provision.play import state as tasks_state
from provision.play.jinja import holds, render, render_file
from provision.play.model import Action, Play, Probe, Task
from provision.play.modules import MODULES
from provision.play.modules.base import ArgError, Context, finish, has_template
from provision.report import Reporter

TASK_TIMEOUT = 1800.0
# Modules whose side effects reach beyond what they name: after one runs, every later
# task reads its state again rather than trust the facts trip.
WIDE = ("command", "shell", "apt", "pip", "unarchive", "user")
UNIT_DIRS = ("file:/etc/systemd/", "file:/lib/systemd/", "file:/usr/lib/systemd/")


@dataclass(frozen=True)
class PlayOptions:
    """What `provision play` was asked, shared by every host of the run."""

    tags: frozenset[str] = frozenset()
    skip_tags: frozenset[str] = frozenset()
    extra_vars: dict = dataclasses.field(default_factory=dict, hash=False)


def selected(task: Task, options: PlayOptions) -> bool:
    """--tags/--skip-tags as Ansible applies them (`always` runs unless skipped by name)."""
    if task.tags & options.skip_tags:
        return False
    if not options.tags or "all" in options.tags:
        return "never" not in task.tags or bool(task.tags & options.tags)
    return bool(task.tags & (options.tags | {"always"}))


class PlayHostRun(HostRun):
    def __init__(self, spec: HostSpec, settings: Settings, options: Options, reporter: Reporter,
                 abort: threading.Event | None, play: Play, play_options: PlayOptions) -> None:
        super().__init__(spec, settings, options, reporter, abort)
        self.play, self.play_options = play, play_options
        self.facts: Facts | None = None
        self.state: dict[str, dict] = {}
        self.gen, self.wide_at, self.units_at = 0, 0, 0
        self.gathered_at: dict[str, int] = {}
        self.touched_at: dict[str, int] = {}
        self.registered: dict[str, dict] = {}
        self.notified: set[str] = set()
        self.changed_since_facts = False

    # ---------------------------------------------------------------- variables

    def variables(self, task: Task | None = None) -> dict:
        """Role defaults < inventory < facts < play vars < role/task vars < registered < -e."""
        facts = tasks_state.fact_vars(self.facts) if self.facts else {}
        magic = {"inventory_hostname": self.spec.name, "group_names": list(self.spec.groups),
                 "ansible_check_mode": self.options.check,
                 "playbook_dir": str(self.play.where.file.parent)}
        merged = {**(task.defaults if task else {}), **self.spec.vars, **facts, **magic,
                  **self.play.vars, **(task.vars if task else {}), **self.registered,
                  **self.play_options.extra_vars}
        for _ in range(3):  # values that refer to other variables, as Ansible resolves lazily
            for key in [k for k, v in merged.items() if has_template(v)]:
                try:
                    merged[key] = render(merged[key], merged)
                except ArgError:
                    pass
        return merged

    # ---------------------------------------------------------------- state

    def _probes(self, task: Task, args: dict) -> list[Probe]:
        spec = MODULES[task.module]
        content = spec.wants_content(args, self.options.diff)
        return [Probe(p.kind, p.key, p.content or (content and p.kind == "file"))
                for p in spec.probes(args)]

    def _early(self) -> list[Probe]:
        """Probes of every task whose arguments need no facts: they ride the facts trip."""
        out: list[Probe] = []
        plain = self.variables()
        for task in self._all_tasks():
            try:
                args = render(task.args, {**task.defaults, **plain, **task.vars})
                if has_template(args):  # a variable that itself needs facts
                    continue
                out += self._probes(task, finish(MODULES[task.module], args))
            except (ArgError, ProvisionError):
                continue  # needs facts, or is wrong: it is probed (or fails) when it runs
        return out

    def _all_tasks(self) -> list[Task]:
        return [t for t in (*self.play.all_tasks(), *self.play.handlers)
                if selected(t, self.play_options) or t in self.play.handlers]

    def _fresh(self, probe: Probe) -> bool:
        got = self.state.get(probe.id)
        if got is None:
            return False
        at = self.gathered_at.get(probe.id, -1)
        if self.touched_at.get(probe.id, -1) > at or self.wide_at > at:
            return False
        if probe.kind == "unit" and self.units_at > at:
            return False
        return not (probe.content and got.get("state") == "file" and "content" not in got
                    and int(got.get("size") or 0) <= 1024 * 1024)

    def _remember(self, found: dict) -> None:
        for key, value in found.items():
            self.state[key] = value
            self.gathered_at[key] = self.gen

    def gather(self) -> Facts:
        """The facts and the tasks' state in one exec; the deployment's roles reuse it."""
        if self.facts is not None and not self.changed_since_facts:
            return self.facts
        probes = self._early() if self.facts is None else []
        start = time.monotonic()
        command = gather_command(self.settings, tasks_state.spec(probes),
                                 tasks_state.script_text())
        got = self.facts_exec(command, self.deadline.cap(FACTS_TIMEOUT))
        if not got.ok:
            self.result.failed_at = "facts"
            raise ProvisionError(f"{self.spec.name}: gathering facts failed (exit {got.rc}): "
                                 f"{got.tail(10)}")
        data = unframe(self.spec.name, got.stdout)
        try:
            self.facts = facts_from_json(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise ProvisionError(f"{self.spec.name}: the facts JSON lacks or mangles {exc}") \
                from exc
        found = data.get("tasks_state")
        self._remember({str(k): v for k, v in found.items() if isinstance(v, dict)}
                       if isinstance(found, dict) else {})
        self.changed_since_facts = False
        self._record("facts", "ok", time.monotonic() - start)
        return self.facts

    def _reprobe(self, probes: list[Probe]) -> None:
        got = self.remote.run(tasks_state.probe_command(self.settings.python, probes),
                              self.deadline.cap(FACTS_TIMEOUT))
        if not got.ok:
            raise ArgError(f"reading the task's state failed (exit {got.rc}): {got.tail(5)}")
        self._remember(tasks_state.parse_probe_output(self.spec.name, got.stdout))

    # ---------------------------------------------------------------- tasks

    def _src(self, task: Task, name: str) -> Path:
        path = Path(name)
        if path.is_absolute():
            return path
        for base in task.search:
            if (base / name).is_file() or (base / name).is_dir():
                return base / name
        raise ArgError(f"src {name!r} not found in {', '.join(str(b) for b in task.search)}")

    def _plan(self, task: Task, variables: dict) -> Action | None:
        spec = MODULES[task.module]
        args = finish(spec, render(task.args, variables))
        need = [p for p in self._probes(task, args) if not self._fresh(p)]
        if need:
            self._reprobe(need)
        context = Context(self.spec.name, lambda text, **_: render_file(text, variables),
                          lambda name: self._src(task, name), self.options.diff,
                          self.options.check, lambda condition: holds(condition, variables))
        return spec.plan(args, self.state, context)

    def run_task(self, task: Task) -> bool:
        """One task: skipped, ok, changed (or would change) or failed; False stops the host."""
        self._check_abort()
        label = f"{task.role} : {task.name}" if task.role else task.name
        start = time.monotonic()
        try:
            variables = self.variables(task)
            false = [c for c in task.when if not holds(c, variables)]
            if false:
                self._record(label, "skipped", 0.0, f"when: {false[0]} is false")
                if task.register:
                    self.registered[task.register] = {"skipped": True, "changed": False}
                return True
            action = self._plan(task, variables)
        except (ArgError, OSError) as exc:
            text = f"{task.where}: task {task.name!r}: {exc}"
            self._record(label, "failed", time.monotonic() - start, text)
            self._fail(f"{self.spec.name}: {text}", "apply")
            return False
        if action is None:
            self._record(label, "ok", time.monotonic() - start)
            self._register(task, False, 0, "")
            return True
        if action.diff and self.options.diff:
            self.reporter.block(f"--- {self.spec.name}: {label}", [action.diff.rstrip("\n")])
        if self.options.check:
            self._record(label, "changed", time.monotonic() - start,
                         f"would change: {action.reason}")
            self._register(task, True, 0, "")
        elif not self._apply(task, label, action, start):
            return False
        self.result.status = "changed"
        self.notified.update(task.notify)
        return True

    def _apply(self, task: Task, label: str, action: Action, start: float) -> bool:
        try:
            got = self.remote.run(action.script, self.deadline.cap(TASK_TIMEOUT), action.stdin)
        except RemoteTimeout as exc:
            self._record(label, "failed", time.monotonic() - start, str(exc))
            self._fail(f"{self.spec.name}: task {task.name!r} timed out: {exc}", "apply")
            return False
        self.reporter.output(self.spec.name, got.stdout + got.stderr)
        self.gen += 1
        self.changed_since_facts = True
        for probe_id in action.touches:
            self.touched_at[probe_id] = self.gen
        if task.module in WIDE:
            self.wide_at = self.gen
        if any(t.startswith(UNIT_DIRS) for t in action.touches):
            self.units_at = self.gen  # systemd answers for a unit file anew after this
        if not got.ok:
            self._record(label, "failed", got.seconds, action.reason, got.tail(30))
            self.reporter.output(self.spec.name, got.tail(30), always=not self.reporter.verbose)
            self._fail(f"{self.spec.name}: {task.where}: task {task.name!r} failed "
                       f"(exit {got.rc}): {got.tail(5)}", "apply")
            return False
        self._record(label, "changed", got.seconds, action.reason)
        self._register(task, True, got.rc, got.stdout)
        return True

    def _register(self, task: Task, changed: bool, rc: int, stdout: str) -> None:
        if task.register:
            self.registered[task.register] = {"changed": changed, "skipped": False, "rc": rc,
                                              "stdout": stdout, "failed": False}

    def flush(self) -> bool:
        """Notified handlers, each once, in the order the play lists them (Ansible's rule)."""
        todo, self.notified = self.notified, set()
        for handler in self.play.handlers:
            if ({handler.name, *handler.listen} & todo) and not self.run_task(handler):
                return False
        return True

    def _tasks(self, tasks: tuple[Task, ...]) -> bool:
        for task in tasks:
            if selected(task, self.play_options) and not self.run_task(task):
                return False
        return self.flush()

    # ---------------------------------------------------------------- the play

    def _builtin_roles(self) -> tuple[str, ...]:
        variables = self.variables()
        try:
            return tuple(r.name.removeprefix("fastdeploy_") for r in self.play.builtin
                         if all(holds(c, {**variables, **r.vars}) for c in r.when))
        except ArgError as exc:
            raise ProvisionError(f"{self.play.where}: built-in role when: {exc}") from None

    def _converge(self) -> HostResult:
        self.gather()
        if not self._tasks(self.play.pre_tasks):
            return self.result
        roles = self._builtin_roles() if self.play.builtin else ()
        if roles:
            self.options = dataclasses.replace(self.options, roles=roles)
            super()._converge()
            if self.result.status == "failed":
                return self.result
        if not self._tasks(self.play.roles_tasks + self.play.tasks):
            return self.result
        self._tasks(self.play.post_tasks)
        return self.result


def converge_play(play: Play, play_options: PlayOptions):
    """The runner's per-host callable for one play."""
    def converge(spec: HostSpec, settings: Settings, options: Options, reporter: Reporter,
                 abort: threading.Event) -> HostResult:
        return PlayHostRun(spec, settings, options, reporter, abort, play, play_options).converge()
    return converge


__all__ = ["PlayHostRun", "PlayOptions", "StepResult", "converge_play"]
