"""Playbook files -> Plays: Ansible's syntax, checked in full before any connection.

Every task's module and argument names are checked here (and literal values typed),
so a typo stops the run with exit 2 naming the file, the line and what is supported,
before a host is contacted. Values with `{{ }}` are checked again once templated.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from provision.play.model import BuiltinRole, Play, PlaybookError, Task, Where
from provision.play.modules import MODULES, SUPPORTED
from provision.play.modules.base import ArgError, ModuleSpec, canonical, coerce, has_template
from provision.play.yamlsrc import Located, load, where

TASK_KEYWORDS = ("name", "when", "tags", "notify", "become", "register", "vars", "args")
HANDLER_KEYWORDS = (*TASK_KEYWORDS, "listen")
PLAY_KEYWORDS = ("name", "hosts", "vars", "pre_tasks", "roles", "tasks", "post_tasks",
                 "handlers", "become", "gather_facts", "serial", "max_fail_percentage",
                 "any_errors_fatal", "tags")
# provision's deployment, as roles whose logic is Python (provision/plan.py ROLE_STEPS)
BUILTIN_ROLES = ("fastdeploy_host_preparation", "fastdeploy_release", "fastdeploy_hosts_file",
                 "fastdeploy_service", "fastdeploy_web_page")


def _strings(value: object, what: str, at: Where) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, bool):
        return (str(value),)
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip()) if what == "tags" \
            else (value,)
    if isinstance(value, list) and all(isinstance(v, (str, bool, int)) for v in value):
        return tuple(str(v) for v in value)
    raise PlaybookError(str(at), f"{what} must be a string or a list of strings, not {value!r}")


def _mapping(value: object, what: str, at: Where) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PlaybookError(str(at), f"{what} must be a mapping, not {type(value).__name__}")
    return dict(value)


def module_args(spec: ModuleSpec, value: object, at: Where) -> dict:
    """A module's arguments from a mapping, a free-form string, or `k=v` words."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, str) and spec.free_form:
        return {spec.free_form: value}
    if isinstance(value, str):
        out = {}
        for word in shlex.split(value):
            key, sep, val = word.partition("=")
            if not sep:
                raise PlaybookError(str(at), f"{spec.name}: {word!r} is not key=value "
                                    f"({spec.name} takes no free-form text)")
            out[key] = val
        return out
    raise PlaybookError(str(at), f"{spec.name}: arguments must be a mapping or key=value text")


def check_args(spec: ModuleSpec, args: dict, label: str, at: Where) -> dict:
    """Names resolved and literal values typed; what is missing named with the fix."""
    try:
        args = canonical(spec, args)
        for key, value in args.items():
            if not has_template(value):
                coerce(spec, key, value)
    except ArgError as exc:
        raise PlaybookError(str(at), f"{label}: {exc}") from None
    missing = [name for name in spec.required if name not in args]
    if missing:
        raise PlaybookError(str(at), f"{label}: {spec.name} needs {', '.join(missing)}")
    for group in spec.one_of:
        if sum(name in args for name in group) != 1:
            raise PlaybookError(str(at), f"{label}: {spec.name} needs exactly one of "
                                f"{', '.join(group)}")
    return args


class _Scope:
    """What tasks inherit from where they are written: a role's dirs, tags, when, vars."""

    def __init__(self, base: Path, role: str | None = None, tags: tuple[str, ...] = (),
                 when: tuple[str, ...] = (), variables: dict | None = None,
                 defaults: dict | None = None) -> None:
        self.base, self.role, self.tags, self.when = base, role, tags, when
        self.vars, self.defaults = variables or {}, defaults or {}


def parse_task(path: Path, raw: object, scope: _Scope, handler: bool = False) -> Task:
    at = where(path, raw)
    if not isinstance(raw, dict):
        raise PlaybookError(str(at), f"a task must be a mapping, not {raw!r}")
    keywords = HANDLER_KEYWORDS if handler else TASK_KEYWORDS
    rest = [k for k in raw if k not in keywords]
    label = f"task {raw.get('name')!r}" if raw.get("name") else "task"
    unknown = [k for k in rest if k not in MODULES]
    if unknown or len(rest) != 1:
        what = (f"unknown module or keyword {', '.join(map(repr, unknown))}" if unknown
                else "no module" if not rest else f"more than one module: {', '.join(rest)}")
        raise PlaybookError(str(at), f"{label}: {what}. Supported modules: "
                            f"{', '.join(SUPPORTED)}; task keywords: {', '.join(keywords)}")
    spec = MODULES[rest[0]]
    args = module_args(spec, raw[rest[0]], at)
    extra = _mapping(raw.get("args"), "args", at)
    args = check_args(spec, {**extra, **args}, label, at)
    become = raw.get("become")
    if become is not None and not isinstance(become, bool):
        raise PlaybookError(str(at), f"{label}: become must be true or false")
    return Task(
        name=str(raw.get("name") or f"{spec.name}"), module=spec.name, args=args, where=at,
        when=scope.when + _strings(raw.get("when"), "when", at),
        tags=frozenset(scope.tags + _strings(raw.get("tags"), "tags", at)),
        notify=_strings(raw.get("notify"), "notify", at), become=become,
        register=raw.get("register"), base_dir=scope.base, role=scope.role,
        search=_search(path, scope), vars={**scope.vars, **_mapping(raw.get("vars"), "vars", at)},
        defaults=scope.defaults, listen=_strings(raw.get("listen"), "listen", at))


def _search(path: Path, scope: _Scope) -> tuple[Path, ...]:
    """Where `src:` is looked for: the role's files/ and templates/, then the playbook's dir."""
    role = (scope.base / "files", scope.base / "templates", scope.base) if scope.role else ()
    return (*role, path.parent, path.parent / "files", path.parent / "templates")


def parse_tasks(path: Path, raw: object, scope: _Scope, handler: bool = False
                ) -> tuple[Task, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise PlaybookError(str(where(path, raw, 1)), "a task list must be a YAML list")
    return tuple(parse_task(path, item, scope, handler) for item in raw)


def _role_file(base: Path, sub: str) -> Path | None:
    for name in ("main.yml", "main.yaml"):
        if (base / sub / name).is_file():
            return base / sub / name
    return None


def parse_role(path: Path, entry: object, play_tags: tuple[str, ...]
               ) -> tuple[tuple[Task, ...], tuple[Task, ...]] | BuiltinRole:
    """A role's tasks and handlers from roles/NAME/, or a built-in (Python) role."""
    at = where(path, entry)
    if isinstance(entry, str):
        entry = {"role": entry}
    if not isinstance(entry, dict) or not isinstance(entry.get("role") or entry.get("name"), str):
        raise PlaybookError(str(at), f"a role is a name or a mapping with role: NAME, not "
                            f"{entry!r}")
    name = entry.get("role") or entry.get("name")
    params = {k: v for k, v in entry.items() if k not in ("role", "name", "when", "tags", "vars")}
    variables = {**params, **_mapping(entry.get("vars"), "vars", at)}
    when = _strings(entry.get("when"), "when", at)
    if name in BUILTIN_ROLES:
        return BuiltinRole(name, at, when, variables)
    base = path.parent / "roles" / name
    if not base.is_dir():
        raise PlaybookError(str(at), f"role {name!r} not found: no directory {base}; "
                            f"built-in roles: {', '.join(BUILTIN_ROLES)}")
    loaded = {}
    for sub in ("defaults", "vars"):
        file = _role_file(base, sub)
        loaded[sub] = _mapping(load(file), f"{file}", where(file, None, 1)) if file else {}
    scope = _Scope(base, name, play_tags + _strings(entry.get("tags"), "tags", at), when,
                   {**loaded["vars"], **variables}, loaded["defaults"])
    tasks_file, handlers_file = _role_file(base, "tasks"), _role_file(base, "handlers")
    tasks = parse_tasks(tasks_file, load(tasks_file), scope) if tasks_file else ()
    handlers = (parse_tasks(handlers_file, load(handlers_file), scope, handler=True)
                if handlers_file else ())
    return tasks, handlers


def _serial(value: object, at: Where) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value] if value is not None else []
    out = []
    for item in items:
        text = str(item).strip()
        number = text[:-1] if text.endswith("%") else text
        if not number.isdigit() or int(number) == 0:
            raise PlaybookError(str(at), f"serial {item!r}: use a count (2) or a percentage "
                                "(25%), or a list of them")
        out.append(text)
    return tuple(out)


def parse_play(path: Path, raw: object) -> Play:
    at = where(path, raw)
    if not isinstance(raw, dict):
        raise PlaybookError(str(at), "a play must be a mapping with hosts:")
    if "import_playbook" in raw:
        raise PlaybookError(str(at), "import_playbook is not supported; give the files in order")
    unknown = [k for k in raw if k not in PLAY_KEYWORDS]
    if unknown:
        raise PlaybookError(str(at), f"unsupported play keyword(s) {', '.join(unknown)}; "
                            f"supported: {', '.join(PLAY_KEYWORDS)}")
    if not isinstance(raw.get("hosts"), str) or not raw["hosts"].strip():
        raise PlaybookError(str(at), "a play needs hosts: PATTERN (a name, group or 'all')")
    tags = _strings(raw.get("tags"), "tags", at)
    scope = _Scope(path.parent, tags=tags)
    roles_tasks: list[Task] = []
    handlers: list[Task] = []
    builtin: list[BuiltinRole] = []
    roles = raw.get("roles") or []
    if not isinstance(roles, list):
        raise PlaybookError(str(at), "roles must be a list")
    for entry in roles:
        got = parse_role(path, entry, tags)
        if isinstance(got, BuiltinRole):
            builtin.append(got)
        else:
            roles_tasks += got[0]
            handlers += got[1]
    if builtin and roles_tasks:
        raise PlaybookError(str(at), "built-in roles and roles from roles/ cannot share a play; "
                            "put your role's tasks in pre_tasks/tasks or in a play of its own")
    fail = raw.get("max_fail_percentage")
    if fail is not None and (isinstance(fail, bool) or not isinstance(fail, (int, float))
                             or not 0 <= fail <= 100):
        raise PlaybookError(str(at), f"max_fail_percentage {fail!r}: a number from 0 to 100")
    for key in ("become", "any_errors_fatal", "gather_facts"):
        if key in raw and not isinstance(raw[key], bool):
            raise PlaybookError(str(at), f"{key} must be true or false")
    return Play(
        name=str(raw.get("name") or raw["hosts"]), hosts=raw["hosts"], where=at,
        vars=_mapping(raw.get("vars"), "vars", at),
        pre_tasks=parse_tasks(path, raw.get("pre_tasks"), scope),
        roles_tasks=tuple(roles_tasks), builtin=tuple(builtin),
        tasks=parse_tasks(path, raw.get("tasks"), scope),
        post_tasks=parse_tasks(path, raw.get("post_tasks"), scope),
        handlers=tuple(handlers) + parse_tasks(path, raw.get("handlers"), scope, handler=True),
        become=bool(raw.get("become", False)), serial=_serial(raw.get("serial"), at),
        max_fail_percentage=fail, any_errors_fatal=bool(raw.get("any_errors_fatal", False)))


def parse_playbook(path: str | Path) -> tuple[Play, ...]:
    """Every play of the file, fully checked; PlaybookError (exit 2) at the first problem."""
    path = Path(path)
    raw = load(path)
    if not isinstance(raw, list) or not raw:
        raise PlaybookError(f"{path}:1", "a playbook is a YAML list of plays")
    plays = tuple(parse_play(path, item) for item in raw)
    for play in plays:
        _check_notify(play)
    return plays


def _check_notify(play: Play) -> None:
    names = {h.name for h in play.handlers} | {n for h in play.handlers for n in h.listen}
    for task in play.all_tasks():
        for name in task.notify:
            if name not in names:
                raise PlaybookError(str(task.where), f"task {task.name!r} notifies {name!r}, "
                                    "which no handler of this play has (name or listen)")


__all__ = ["BUILTIN_ROLES", "Located", "parse_playbook"]
