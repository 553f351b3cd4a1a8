"""From a host's (templated) variables to how to reach it, with Ansible's precedence.

Several spellings name one setting, and as in Ansible's `ssh` connection and
`sudo` become plugins the LAST spelling in each list below that is set wins,
whichever file set it (so `ansible_ssh_host` beats `ansible_host`, even from
a group file). A setting no spelling gives is left to `~/.ssh/config` (User,
Port, IdentityFile, ProxyJump), then to the defaults (port 22, user root).

`ansible_ssh_common_args` and `ansible_ssh_extra_args` are read, not passed
to a program: `-J` / `-o ProxyJump=` become jump hops; a `ProxyCommand` of
the usual `ssh -W %h:%p [user@]bastion` (or `... nc %h %p`) shape becomes a
hop too, so that every hop's host key is verified as strictly as the host's;
any other ProxyCommand would run an inventory string as a command on this
machine and is refused. Options that only tune OpenSSH's client (ControlMaster,
ServerAliveInterval, ...) are ignored, options that would weaken host key
checks are refused.
"""

from __future__ import annotations

import re
import shlex

from provision.model import ConfigError, Hop, HostSpec

ADDRESS_VARS = ("ansible_host", "ansible_ssh_host")
PORT_VARS = ("ansible_port", "ansible_ssh_port")
USER_VARS = ("ansible_user", "ansible_ssh_user")
KEY_VARS = ("ansible_private_key_file", "ansible_ssh_private_key_file")
PASSWORD_VARS = ("ansible_password", "ansible_ssh_pass", "ansible_ssh_password")
SSH_ARG_VARS = ("ansible_ssh_common_args", "ansible_ssh_extra_args")
BECOME_USER_VARS = ("ansible_become_user", "ansible_sudo_user")
BECOME_PASS_VARS = ("ansible_become_password", "ansible_become_pass", "ansible_sudo_pass")
CONNECTION_VARS = ("ansible_connection",)
SSH_CONNECTIONS = ("ssh", "smart", "paramiko", "paramiko_ssh", "ansible.builtin.ssh",
                   "ansible.builtin.paramiko_ssh")
LOCAL_CONNECTIONS = ("local", "ansible.builtin.local")
TRUE = ("y", "yes", "on", "1", "true", "t", 1, 1.0, True)
FALSE = ("n", "no", "off", "0", "false", "f", 0, 0.0, False)
# -o options that only tune OpenSSH's own client: meaningless here, harmless to ignore
IGNORED_OPTIONS = frozenset(o.lower() for o in (
    "ControlMaster", "ControlPersist", "ControlPath", "ServerAliveInterval",
    "ServerAliveCountMax", "TCPKeepAlive", "Compression", "ConnectTimeout", "ConnectionAttempts",
    "LogLevel", "IdentitiesOnly", "ForwardAgent", "PreferredAuthentications",
    "PubkeyAuthentication", "PasswordAuthentication", "KbdInteractiveAuthentication",
    "GSSAPIAuthentication", "AddKeysToAgent", "BatchMode", "HashKnownHosts", "CheckHostIP",
    "VisualHostKey", "RequestTTY", "AddressFamily"))
IGNORED_FLAGS = frozenset(("-q", "-C", "-4", "-6", "-A", "-a", "-T", "-t", "-tt", "-v", "-vv",
                           "-vvv", "-x", "-X", "-Y", "-n", "-N"))

_SAFE_ADDRESS = re.compile(r"^[A-Za-z0-9._:%\[\]-]+$")
_SAFE_USER = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._-]*\$?$")


def winner(values: dict, names: tuple[str, ...]) -> tuple[str | None, object]:
    """(name, value) of the last spelling that is set (not null), as Ansible's plugins pick."""
    found: tuple[str | None, object] = (None, None)
    for name in names:
        if values.get(name) is not None:
            found = (name, values[name])
    return found


def is_set(values: dict, names: tuple[str, ...]) -> bool:
    """Whether any spelling is set: then it beats ~/.ssh/config."""
    return winner(values, names)[0] is not None


def boolean(value: object, where: str, key: str) -> bool:
    """Ansible's boolean(): yes/no, true/false, on/off, 1/0 (any case)."""
    probe = value.lower().strip() if isinstance(value, str) else value
    if probe in TRUE:
        return True
    if probe in FALSE or value is None:
        return False
    raise ConfigError(where, key, value, "give true or false (yes/no, on/off, 1/0 also work)")


def parse_port(value: object, where: str, key: str) -> int:
    """An int 1-65535 (YAML int or digit string); anything else names the key and the range."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) or (
            isinstance(value, str) and not value.strip().isdigit()):
        raise ConfigError(where, key, value, "a TCP port is a whole number from 1 to 65535")
    port = int(value)
    if not 1 <= port <= 65535:
        raise ConfigError(where, key, value, "a TCP port is a whole number from 1 to 65535")
    return port


def check_address(value: object, where: str, key: str) -> str:
    """A host name or IP: a leading '-' would read as an ssh option, spaces have no place."""
    if not isinstance(value, str) or not value or value.startswith("-") \
            or not _SAFE_ADDRESS.match(value):
        raise ConfigError(where, key, value,
                          "give a host name or IP address (letters, digits, '.', '-', ':'), "
                          "not starting with '-'")
    return value


def check_user(value: object, where: str, key: str) -> str:
    """A login name, never starting with '-'."""
    if not isinstance(value, str) or not _SAFE_USER.match(value):
        raise ConfigError(where, key, value,
                          "give a login name (letters, digits, '.', '_', '-'), "
                          "not starting with '-'")
    return value


def split_target(text: str, where: str, key: str) -> tuple[str | None, str, int | None]:
    """`[user@]host[:port]`, `[v6]:port`, a bare IPv6 address, `ssh://user@host:port`.

    For `--host` (key "host") errors name the part ("host", "port") and the
    user is left for connection_spec to check as ansible_user.
    """
    port_key = "port" if key == "host" else key
    text = text.removeprefix("ssh://")
    user, at, rest = text.rpartition("@")
    if rest.startswith("["):
        inside, close, after = rest[1:].partition("]")
        if not close or (after and not after.startswith(":")):
            raise ConfigError(where, key, text, "write an IPv6 address with a port as [::1]:2222")
        address, port = inside, (parse_port(after[1:], where, port_key) if after else None)
    elif rest.count(":") == 1:
        address, _, port_text = rest.partition(":")
        port = parse_port(port_text, where, port_key)
    else:
        address, port = rest, None
    if at and key != "host":
        check_user(user, where, key)
    return (user if at else None), check_address(address, where, key), port


# --------------------------------------------------------------------------- ssh arguments


def _refuse(where: str, key: str, value: object, fix: str) -> ConfigError:
    return ConfigError(where, key, value, fix)


def _jump_hops(text: str, where: str, key: str) -> list[Hop]:
    if text.strip().lower() == "none":
        return []
    hops = []
    for part in text.split(","):
        user, address, port = split_target(part.strip(), where, key)
        hops.append(Hop(address=address, port=port, user=user))
    return hops


def _proxy_command_hops(text: str, where: str, key: str) -> list[Hop]:
    """The usual ProxyCommand shapes, as hops; anything else is refused (never run)."""
    refuse = _refuse(where, key, text,
                     "a ProxyCommand would run an inventory string on this machine; provision "
                     "only reads the shape `ssh [-p PORT] [-i KEY] [-l USER] -W %h:%p "
                     "[user@]bastion` (or `... bastion nc %h %p`): write it as "
                     "-o ProxyJump=user@bastion:port")
    if text.strip().lower() == "none":
        return []
    words = shlex.split(text)
    if not words or words[0].rsplit("/", 1)[-1] != "ssh":
        raise refuse
    words = words[1:]
    if len(words) >= 3 and words[-3] in ("nc", "netcat") and words[-2:] == ["%h", "%p"]:
        words = words[:-3] + ["-W", "%h:%p"]
    hops: list[Hop] = []
    user = key_file = None
    port = None
    dest: list[str] = []
    forwarded = False
    i = 0
    while i < len(words):
        word = words[i]
        value = words[i + 1] if i + 1 < len(words) else None
        if word == "-W" and value in ("%h:%p", "[%h]:%p"):
            forwarded, i = True, i + 2
        elif word in ("-p", "-l", "-i", "-J", "-o") and value is not None:
            if word == "-p":
                port = parse_port(value, where, key)
            elif word == "-l":
                user = check_user(value, where, key)
            elif word == "-i":
                key_file = value
            elif word == "-J":
                hops += _jump_hops(value, where, key)
            else:
                hops += _option(value, where, key)
            i += 2
        elif word in IGNORED_FLAGS:
            i += 1
        elif not word.startswith("-"):
            dest.append(word)
            i += 1
        else:
            raise refuse
    if not forwarded or len(dest) != 1:
        raise refuse
    dest_user, address, dest_port = split_target(dest[0], where, key)
    return hops + [Hop(address=address, port=dest_port or port, user=dest_user or user,
                       key_file=key_file)]


def _option(text: str, where: str, key: str) -> list[Hop]:
    """One `-o Name=value` (or `Name value`): hops, nothing (ignored), or a refusal."""
    match = re.match(r"^\s*([A-Za-z]+)\s*(?:=\s*|\s+)(.*)$", text)
    if not match:
        raise _refuse(where, key, text, "write ssh options as -o Name=value")
    name, value = match.group(1).lower(), match.group(2).strip()
    if name == "proxyjump":
        return _jump_hops(value, where, key)
    if name == "proxycommand":
        return _proxy_command_hops(value, where, key)
    if name == "stricthostkeychecking" and value.lower() in ("yes", "true", "ask"):
        return []
    if name in ("stricthostkeychecking", "userknownhostsfile", "globalknownhostsfile"):
        raise _refuse(where, key, text,
                      "provision always verifies host keys, on every hop; to trust a new "
                      "host once, rerun with --accept-new-host-key (and set known_hosts_file "
                      "for a known_hosts of your own)")
    if name in IGNORED_OPTIONS:
        return []
    raise _refuse(where, key, text,
                  f"ssh option {match.group(1)} is not supported here; supported: ProxyJump, "
                  "ProxyCommand (ssh -W form), and client tuning options that are ignored "
                  "(ControlMaster, ServerAliveInterval, ...). Use ansible_user, ansible_port, "
                  "ansible_ssh_private_key_file for those settings")


def _proxy_words(words: list[str], where: str, var: str, text: str):
    """Each (is-a-proxy-setting, hops) of one ssh argument list, in order."""
    i = 0
    while i < len(words):
        word = words[i]
        if word in ("-o", "-J") and i + 1 < len(words):
            flag, arg, i = word, words[i + 1], i + 2
        elif word.startswith(("-o", "-J")) and len(word) > 2:
            flag, arg, i = word[:2], word[2:], i + 1
        elif word in IGNORED_FLAGS:
            i += 1
            continue
        else:
            raise _refuse(where, var, text,
                          f"ssh argument {word!r} is not supported here; supported: "
                          "-o ProxyJump=..., -J ..., -o ProxyCommand='ssh -W %h:%p ...' "
                          "and client tuning options, which are ignored")
        if flag == "-J":
            yield True, _jump_hops(arg, where, var)
        else:
            yield arg.strip().lower().startswith("proxy"), _option(arg, where, var)


def jump_hops(values: dict, sources: dict) -> tuple[Hop, ...]:
    """Jump hops from ansible_ssh_common_args, then _extra_args: the FIRST proxy setting wins.

    Ansible puts the common arguments before the extra ones on ssh's command
    line, and ssh keeps the first value it sees of ProxyJump/ProxyCommand.
    """
    chosen: tuple[Hop, ...] | None = None
    for var in SSH_ARG_VARS:
        text = values.get(var)
        if text in (None, ""):
            continue
        where = sources.get(var, var)
        if not isinstance(text, str):
            raise ConfigError(where, var, text, "give ssh arguments as one line of text")
        try:
            words = shlex.split(text)
        except ValueError as exc:
            raise ConfigError(where, var, text, f"unbalanced quotes ({exc})") from None
        for is_proxy, hops in _proxy_words(words, where, var, text):
            if is_proxy and chosen is None:
                chosen = tuple(hops)
    return chosen or ()


# --------------------------------------------------------------------------- the spec


def _value_where(sources: dict, name: str, var: str | None) -> str:
    return sources.get(var, name) if var else name


def connection_spec(name: str, default_address: str, values: dict, sources: dict,
                    groups: tuple[str, ...] = ()) -> HostSpec:
    """A HostSpec whose connection fields come from the merged variables (else defaults)."""
    var, raw = winner(values, ADDRESS_VARS)
    where = _value_where(sources, name, var)
    address = check_address(raw, where, var) if var else default_address
    var, raw = winner(values, PORT_VARS)
    port = parse_port(raw, _value_where(sources, name, var), var) if var else 22
    kwargs: dict = {}
    var, raw = winner(values, USER_VARS)
    if var:
        kwargs["user"] = check_user(raw, _value_where(sources, name, var), var)
    var, raw = winner(values, KEY_VARS)
    if var and raw != "":
        if not isinstance(raw, str):
            raise ConfigError(_value_where(sources, name, var), var, raw,
                              "give the private key file's path as text")
        kwargs["key_file"] = raw
    var, raw = winner(values, PASSWORD_VARS)
    if var:
        kwargs["password"] = str(raw)
    kwargs["connection"] = _connection_kind(values, sources, name)
    kwargs["become_password"] = _become(values, sources, name)
    return HostSpec(name=name, address=address, port=port, groups=groups,
                    vars=dict(values), sources=dict(sources),
                    jump=jump_hops(values, sources), **kwargs)


def _connection_kind(values: dict, sources: dict, name: str) -> str:
    var, raw = winner(values, CONNECTION_VARS)
    if var is None or raw in SSH_CONNECTIONS:
        return "ssh"
    if raw in LOCAL_CONNECTIONS:
        return "local"
    raise ConfigError(_value_where(sources, name, var), var, raw,
                      "provision connects with ssh or runs locally: use ansible_connection: "
                      "ssh (or paramiko) or local")


def _become(values: dict, sources: dict, name: str) -> str | None:
    """The sudo password, if any; become settings provision cannot honour are errors."""
    var, raw = winner(values, ("ansible_become_method",))
    if var and raw not in ("sudo", "ansible.builtin.sudo"):
        raise ConfigError(_value_where(sources, name, var), var, raw,
                          "provision becomes root with sudo only; remove it or set sudo")
    var, raw = winner(values, BECOME_USER_VARS)
    if var and raw != "root":
        raise ConfigError(_value_where(sources, name, var), var, raw,
                          "provision installs system services and must become root; "
                          "remove it or set root")
    var, raw = winner(values, ("ansible_become",))
    if var:
        boolean(raw, _value_where(sources, name, var), var)
    var, raw = winner(values, BECOME_PASS_VARS)
    return None if var is None else str(raw)


def become_enabled(values: dict) -> bool:
    """Ansible's `become` for the host (already checked by connection_spec)."""
    var, raw = winner(values, ("ansible_become",))
    return bool(var) and boolean(raw, var or "", var or "")
