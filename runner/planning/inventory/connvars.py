"""Connection variables: what an inventory's `ansible_*` variables say about reaching a host.

`HostConnection` is how to reach one host: address, port, user, key, password, become
(sudo, to root or another user, with a password when given) and jump hosts. Jump hosts
come from `ansible_ssh_common_args` / `ansible_ssh_extra_args` as ansible's ssh plugin
passes them to `ssh`: `-J` / `-o ProxyJump=` and `-o ProxyCommand=` are honoured, any
other option is named in a warning. So is every other `ansible_*` variable runner does
not use (`inventory_warnings`), once per name: never silence. Pure; no I/O.
"""

from __future__ import annotations

import contextlib
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from runner.planning.inventory.hostnames import check_hostname, check_port, check_user

SECRET_VARS = (
    "ansible_password",
    "ansible_ssh_pass",
    "ansible_become_password",
    "ansible_become_pass",
)
SSH_ARGS_VARS = ("ansible_ssh_common_args", "ansible_ssh_extra_args")
USED_VARS = frozenset(
    {
        "ansible_host",
        "ansible_ssh_host",
        "ansible_port",
        "ansible_ssh_port",
        "ansible_user",
        "ansible_ssh_user",
        "ansible_connection",
        "ansible_ssh_private_key_file",
        "ansible_private_key_file",
        "ansible_become",
        "ansible_become_user",
        "ansible_become_method",
        "ansible_group_priority",
        *SECRET_VARS,
        *SSH_ARGS_VARS,
    }
)
_JUMP_OPTION = re.compile(r"^proxyjump[=\s]\s*(.*)$", re.IGNORECASE | re.DOTALL)
_COMMAND_OPTION = re.compile(r"^proxycommand[=\s]\s*(.*)$", re.IGNORECASE | re.DOTALL)
_YES = ("true", "yes", "on", "1")
_NO = ("false", "no", "off", "0")


@dataclass(frozen=True)
class Hop:
    """One jump host of `-J [user@]host[:port]`: port and user None when not written."""

    address: str
    port: int | None = None
    user: str | None = None


@dataclass(frozen=True)
class HostConnection:
    """How to reach a host, from its ansible_* connection variables (values unrendered)."""

    name: str
    address: str
    port: int
    user: str | None
    key_file: str | None
    connection: str
    step_shell: bool = True  # `runner_step_shell`: steps in one shell per connection
    password: str | None = field(default=None, repr=False)
    become: bool = False
    become_user: str | None = None
    become_password: str | None = field(default=None, repr=False)
    jump: tuple[Hop, ...] = ()
    proxy_command: str | None = None


def yes_no(value: Any, key: str, default: bool) -> bool:
    """A yes/no variable; an INI file gives it as a string. ValueError naming `key`."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _YES or text in _NO:
        return text in _YES
    raise ValueError(f"{key} must be true or false, not {value!r}")


def first(values: dict[str, Any], *keys: str) -> Any:
    """The first of `keys` with a value in `values` (ansible's aliases: ansible_ssh_user...)."""
    for key in keys:
        if values.get(key) is not None:
            return values[key]
    return None


def login_and_become(merged: dict[str, Any]) -> dict[str, Any]:
    """The password, become and jump fields of a `HostConnection`; ValueError if a value
    cannot be used (a become method other than sudo, a bad jump host)."""
    become = yes_no(merged.get("ansible_become"), "ansible_become", False)
    method = merged.get("ansible_become_method") or "sudo"
    if become and method not in ("sudo", "ansible.builtin.sudo"):
        raise ValueError(f"ansible_become_method {method!r}: runner becomes with sudo only")
    become_user = merged.get("ansible_become_user")
    jump, proxy_command, _ignored = ssh_args(merged)
    return {
        "password": _text(first(merged, "ansible_password", "ansible_ssh_pass")),
        "become": become,
        "become_user": None if become_user is None else check_user(str(become_user)),
        "become_password": _text(first(merged, "ansible_become_password", "ansible_become_pass")),
        "jump": jump,
        "proxy_command": proxy_command,
    }


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def ssh_args(merged: dict[str, Any]) -> tuple[tuple[Hop, ...], str | None, list[str]]:
    """Jump hosts, a ProxyCommand and the options runner ignores, from the host's
    `ansible_ssh_common_args` and `ansible_ssh_extra_args` (as ssh reads them: the first
    ProxyJump / ProxyCommand given wins)."""
    jump: tuple[Hop, ...] | None = None
    command: str | None = None
    ignored: list[str] = []
    for key in SSH_ARGS_VARS:
        text = merged.get(key)
        if not text:
            continue
        try:
            words = shlex.split(str(text))
        except ValueError as exc:
            raise ValueError(f"{key}: cannot split {str(text)!r}: {exc}") from None
        for kind, value in _options(words):
            if kind == "jump" and jump is None and command is None:
                jump = () if value.lower() == "none" else parse_jump(value)
            elif kind == "command" and jump is None and command is None:
                command = None if value.lower() == "none" else value
            elif kind == "other":
                ignored.append(value)
    return jump or (), command, ignored


def _options(words: list[str]) -> Iterable[tuple[str, str]]:
    """(kind, value) for each option of an ssh command line: jump, command or other."""
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if word in ("-J", "-o") and i < len(words):
            word, i = word + words[i], i + 1
        if word.startswith("-J"):
            yield "jump", word[2:]
            continue
        if word.startswith("-o"):
            option = word[2:].strip()
            for kind, pattern in (("jump", _JUMP_OPTION), ("command", _COMMAND_OPTION)):
                match = pattern.match(option)
                if match:
                    yield kind, match.group(1).strip()
                    break
            else:
                yield "other", f"-o {option}"
            continue
        yield "other", word


def parse_jump(spec: str) -> tuple[Hop, ...]:
    """`[user@]host[:port]` hops, comma-separated, or `ssh://[user@]host[:port]` (ssh -J)."""
    hops = []
    for part in spec.split(","):
        text = part.strip().removeprefix("ssh://")
        user, at, hostport = text.rpartition("@")
        port: int | None = None
        host = hostport
        if hostport.startswith("[") and "]" in hostport:
            host, _, rest = hostport[1:].partition("]")
            port = check_port(rest[1:]) if rest.startswith(":") else None
        elif hostport.count(":") == 1:
            host, _, port_text = hostport.partition(":")
            port = check_port(port_text)
        try:
            hops.append(Hop(check_hostname(host), port, check_user(user) if at else None))
        except ValueError as exc:
            raise ValueError(f"jump host {part.strip()!r}: {exc}") from None
    return tuple(hops)


def inventory_warnings(settings: Iterable[tuple[str, Any, str]]) -> list[str]:
    """One warning per `ansible_*` variable runner does not use and per ssh option it
    ignores, from (variable, value, where it is set) over an inventory's hosts, groups and
    vars files: each said once, at the first place that sets it."""
    unused: dict[str, str] = {}
    ignored: dict[str, str] = {}
    args_seen: set[str] = set()
    for key, value, where in settings:
        if not isinstance(key, str) or not key.startswith("ansible_"):
            continue
        if key not in USED_VARS:
            unused.setdefault(key, where)
        elif key in SSH_ARGS_VARS and value and str(value) not in args_seen:
            args_seen.add(str(value))
            with contextlib.suppress(ValueError):  # an error when the host connects
                for option in ssh_args({key: value})[2]:
                    ignored.setdefault(option, f"{where}: {key}")
    warnings = [
        f"{where}: inventory variable {name} is not used by runner: ignored"
        for name, where in unused.items()
    ]
    warnings += [
        f"{where}: {option!r} is ignored "
        "(runner honours only -J, -o ProxyJump= and -o ProxyCommand=)"
        for option, where in ignored.items()
    ]
    return warnings
