"""What every module declares: its arguments (Ansible's names), probes and plan.

A module is two pure functions over data, as a pyinfra operation is: `probes(args)`
says what the facts trip must read, `plan(args, state, ctx)` returns the one Action
that closes the gap, or None when the host is already right ("ok").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from provision.play.model import Action, Probe

TRUE = ("yes", "true", "on", "1", "y")
FALSE = ("no", "false", "off", "0", "n")


class ArgError(ValueError):
    """An argument value a module cannot use; the caller adds file:line and the task."""


@dataclass(frozen=True)
class Arg:
    kind: str = "str"  # str, bool, int, list, mode, raw
    choices: tuple = ()
    default: object = None
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Context:
    """What a plan may use beyond its arguments: templating and `src:` lookup."""

    host: str
    render: Callable[..., str] = lambda text, **_: text
    find_src: Callable[[str], Path] = Path
    diff: bool = False
    check: bool = False  # --check: an earlier task that would create a unit has not run
    holds: Callable[[str], bool] = lambda condition: True  # a Jinja test on the task's vars


State = dict  # probe id -> the data state_script.py returned for it


@dataclass(frozen=True)
class ModuleSpec:
    name: str
    args: dict[str, Arg]
    probes: Callable[[dict], list[Probe]]
    plan: Callable[[dict, State, Context], Action | None]
    required: tuple[str, ...] = ()
    one_of: tuple[tuple[str, ...], ...] = ()  # exactly one of each group must be given
    free_form: str | None = None  # `command: ls -l` puts the string under this argument
    wants_content: Callable[[dict, bool], bool] = field(default=lambda args, diff: False)


def to_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise ArgError(f"{value!r} is not a boolean (use true or false)")


def to_mode(value: object) -> str:
    """'0644', 644 as written in YAML (which reads 0644 as the integer 420), '1777' -> '0644'..."""
    if isinstance(value, bool):
        raise ArgError(f"{value!r} is not a file mode")
    if isinstance(value, int):  # YAML 1.1 read 0644 as octal already: Ansible uses it as is
        return f"{value:04o}"
    text = str(value).strip()
    if text.isdigit() and len(text) <= 5 and all(c in "01234567" for c in text):
        return f"{int(text, 8):04o}"
    raise ArgError(f"mode {value!r} is not an octal mode such as '0644' (symbolic modes "
                   "like u+rwx are not supported)")


def coerce(spec: ModuleSpec, name: str, value: object) -> object:
    """One argument's value in the type the module expects (after templating)."""
    arg = spec.args[name]
    if value is None:
        return None
    if arg.kind == "bool":
        value = to_bool(value)
    elif arg.kind == "int":
        try:
            value = int(value)
        except (TypeError, ValueError):
            raise ArgError(f"{name}={value!r} is not an integer") from None
    elif arg.kind == "mode":
        value = to_mode(value)
    elif arg.kind == "list":
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        elif not isinstance(value, list):
            raise ArgError(f"{name}={value!r} is not a list")
        value = [str(v) for v in value]
    elif arg.kind == "str":
        if isinstance(value, (dict, list)):
            raise ArgError(f"{name} must be a string, not {type(value).__name__}")
        value = str(value)
    if arg.choices and value not in arg.choices:
        raise ArgError(f"{name}={value!r} is not one of: {', '.join(map(str, arg.choices))}")
    return value


def canonical(spec: ModuleSpec, raw: dict) -> dict:
    """Aliases resolved, unknown names refused; values left as written (templated later)."""
    names = {alias: name for name, arg in spec.args.items() for alias in (name, *arg.aliases)}
    out: dict = {}
    for key, value in raw.items():
        if key not in names:
            raise ArgError(f"unsupported argument {key!r} for {spec.name}; supported: "
                           + ", ".join(sorted(spec.args)))
        out[names[key]] = value
    return out


def finish(spec: ModuleSpec, args: dict) -> dict:
    """Coerced values, defaults filled, required and exclusive groups checked."""
    out = {name: arg.default for name, arg in spec.args.items()}
    for key, value in args.items():
        out[key] = coerce(spec, key, value)
    missing = [name for name in spec.required if out.get(name) in (None, "")]
    if missing:
        raise ArgError(f"{spec.name} needs {', '.join(missing)}")
    for group in spec.one_of:
        given = [name for name in group if args.get(name) is not None]
        if len(given) != 1:
            raise ArgError(f"{spec.name} needs exactly one of {', '.join(group)}"
                           + (f" (got {', '.join(given)})" if given else ""))
    return out


def has_template(value: object) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, list):
        return any(has_template(v) for v in value)
    if isinstance(value, dict):
        return any(has_template(v) for v in value.values())
    return False
