"""Host keys as Ansible reads them in either format: `name:port`, `[v6]:port`, ranges.

`gpu[01:04]` (numeric, zero-padded when the start is), `node-[a:f]`, a stride
`[0:10:2]`, several ranges in one name, `10.0.0.[1:3]:2222` (a port after a
range), `[2001:db8::5]:2222` (an IPv6 address with a port is bracketed; a bare
IPv6 address has none). One deliberate difference: a range whose start is after
its end is an error here, where Ansible silently defines no host at all.
"""

from __future__ import annotations

import re
import string

from provision.model import ConfigError

_BRACKETED_PORT = re.compile(r"^\[(.+)\]:([0-9]+)$")
_NAME_PORT = re.compile(r"^((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)$")
_RANGE = r"\[[^\]]*\]"
_LABEL = rf"(?:\w|{_RANGE})(?:[\w-]|{_RANGE})*"
_HOSTNAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$", re.UNICODE)
_IPV6ISH = re.compile(r"^[0-9a-f:.\[\]]*:[0-9a-f:.\[\]]*$", re.I)


def parse_address(text: str) -> tuple[str, int | None] | None:
    """`name`, `name:port` or `[addr]:port` -> (name, port); None if it is not an address."""
    address, port = text, None
    for pattern in (_BRACKETED_PORT, _NAME_PORT):
        match = pattern.match(address)
        if match:
            address, port = match.group(1), int(match.group(2))
    valid = _IPV6ISH.match(address) or (
        _HOSTNAME.match(address) and not re.search(r"[_-]$", address))
    return (address, port) if valid else None


def split_port(text: str) -> tuple[str, int | None]:
    """A hosts key -> (name, port); a key that is no address stays whole, as Ansible."""
    return parse_address(text) or (text, None)


def expand_ranges(name: str, where: str) -> list[str]:
    """Every name a key with `[start:end(:step)]` ranges stands for, in order."""
    if "[" not in name:
        return [name]
    head, _, rest = name.partition("[")
    inner, close, tail = rest.partition("]")
    bounds = inner.split(":")
    if not close or len(bounds) not in (2, 3) or not bounds[1]:
        raise ConfigError(where, "hosts", name,
                          "a host range is [01:10] or [a:f], optionally with :step")
    start, end = bounds[0] or "0", bounds[1]
    try:
        step = int(bounds[2]) if len(bounds) == 3 else 1
        items = _range_items(start, end, step)
    except ValueError:
        raise ConfigError(where, "hosts", name,
                          "a host range is [01:10] or [a:f], optionally with :step "
                          "(numbers of equal width when zero-padded)") from None
    if not items:
        raise ConfigError(where, "hosts", name,
                          "the range's start is after its end, so it names no host "
                          "(Ansible would silently skip it)")
    out: list[str] = []
    for item in items:
        out += expand_ranges(f"{head}{item}{tail}", where)
    return out


def _range_items(start: str, end: str, step: int) -> list[str]:
    if step < 1:
        raise ValueError(step)
    letters = string.ascii_letters
    if start in letters and end in letters and len(start) == len(end) == 1:
        first, last = letters.index(start), letters.index(end)
        return list(letters[first:last + 1:step])
    if start.startswith("0") and len(start) > 1:
        if len(start) != len(end):
            raise ValueError(end)
        return [str(i).zfill(len(start)) for i in range(int(start), int(end) + 1, step)]
    return [str(i) for i in range(int(start), int(end) + 1, step)]


def expand_host_key(key: object, where: str) -> tuple[list[str], int | None]:
    """A hosts key of either format -> (host names, port for all of them or None)."""
    if not isinstance(key, str):
        raise ConfigError(where, "hosts", key,
                          "a host name must be text; quote numbers (Ansible refuses them too)")
    name, port = split_port(key)
    if port is not None and not 1 <= port <= 65535:
        raise ConfigError(where, f"{key} (port)", port,
                          "a TCP port is a whole number from 1 to 65535")
    return expand_ranges(name, where), port
