"""Host names in inventories: `host:port` / `[v6]:port` addresses and `web[01:20]` ranges.

Follows ansible-core's `ansible.parsing.utils.addresses` and `expand_hostname_range`, so
an entry names the same hosts here as under Ansible. Pure string work; no inventory state.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from typing import Any

_NUM_RANGE = r"\[(?:[0-9]+:[0-9]+)(?::[0-9]+)?\]"
_HEX_RANGE = r"\[(?:[0-9a-f]+:[0-9a-f]+)(?::[0-9]+)?\]"
_ALNUM_RANGE = r"\[(?:[a-z]:[a-z]|[0-9]+:[0-9]+)(?::[0-9]+)?\]"
_I6 = rf"(?:[0-9a-f]{{1,4}}|{_HEX_RANGE})"
_I4 = rf"(?:[01]?[0-9]{{1,2}}|2[0-4][0-9]|25[0-5]|{_NUM_RANGE})"
_LABEL = rf"(?:[\w]|{_ALNUM_RANGE})(?:[\w_-]|{_ALNUM_RANGE})*(?<![_-])"
_BRACKETED_HOSTPORT = re.compile(r"^\[(.+)\]:([0-9]+)$")
_HOSTPORT = re.compile(r"^((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)$")
_ADDRESS_FORMS = (
    re.compile(rf"^(?:{_I4}\.){{3}}{_I4}$", re.IGNORECASE),
    re.compile(
        rf"^((?:{_I6}:){{7}}{_I6}|(?:{_I6}:){{1,6}}:|(?:{_I6}:)(?::{_I6}){{1,6}}|"
        rf"(?:{_I6}:){{2}}(?::{_I6}){{1,5}}|(?:{_I6}:){{3}}(?::{_I6}){{1,4}}|"
        rf"(?:{_I6}:){{4}}(?::{_I6}){{1,3}}|(?:{_I6}:){{5}}(?::{_I6}){{1,2}}|"
        rf"(?:{_I6}:){{6}}(?::{_I6})|:(?::{_I6}){{1,6}}|{_I6}?::|"
        rf"(?:0:){{6}}(?:{_I6}\.){{3}}{_I6}|::(?:ffff:)?(?:{_I6}\.){{3}}{_I6}|"
        rf"(?:0:){{5}}ffff:(?:{_I6}\.){{3}}{_I6})$",
        re.IGNORECASE,
    ),
    re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$", re.IGNORECASE),
)


def parse_address(address: str) -> tuple[str, int | None]:
    """Split `host:port` / `[v6]:port`; raises ValueError if it is not a host identifier."""
    port = None
    for form in (_BRACKETED_HOSTPORT, _HOSTPORT):
        match = form.match(address)
        if match:
            address, port_text = match.groups()
            port = int(port_text)
    if not any(form.match(address) for form in _ADDRESS_FORMS):
        raise ValueError(f"not a valid network hostname: {address}")
    return address, port


def expand_host_pattern(pattern: str) -> tuple[list[str], int | None]:
    """A host entry with optional `:port` and `[a:b(:step)]` ranges -> names and port."""
    try:
        name, port = parse_address(pattern)
    except ValueError:
        name, port = pattern, None
    if "[" in name:
        return expand_hostname_range(name), port
    return [name], port


def expand_hostname_range(line: str) -> list[str]:
    """Ansible's `expand_hostname_range`: `web[01:03]` -> web01 web02 web03, `db-[a:c]`...

    ValueError for an entry naming more than MAX_RANGE_HOSTS hosts, counted before any
    name is made (`h[1:9999][1:9999]` would be a hundred million)."""
    count = 1
    rest = line
    while "[" in rest:
        _head, sequence, _width, rest = _first_range(rest)
        try:
            count *= len(sequence)
        except OverflowError:  # more than a C ssize_t holds
            count = MAX_RANGE_HOSTS + 1
        if count > MAX_RANGE_HOSTS:
            raise ValueError(f"the range names more than {MAX_RANGE_HOSTS:,} hosts")
    return _expand(line)


def _expand(line: str) -> list[str]:
    head, sequence, width, tail = _first_range(line)
    names: list[str] = []
    for item in sequence:
        name = f"{head}{str(item).zfill(width)}{tail}"
        names.extend(_expand(name) if "[" in name else [name])
    return names


def _first_range(line: str) -> tuple[str, Sequence[Any], int, str]:
    """The text before the first `[a:b(:step)]`, its values, their zero-padded width, and
    the text after it."""
    parts = line.replace("[", "|", 1).replace("]", "|", 1).split("|")
    if len(parts) != 3:
        raise ValueError(f"unbalanced brackets in host range {line!r}")
    head, nrange, tail = parts
    bounds = nrange.split(":")
    if len(bounds) not in (2, 3):
        raise ValueError("host range must be begin:end or begin:end:step")
    beg, end = bounds[0] or "0", bounds[1]
    step = bounds[2] if len(bounds) == 3 else "1"
    if not end:
        raise ValueError("host range must specify end value")
    width = len(beg) if beg[0] == "0" and len(beg) > 1 else 0
    if width and width != len(end):
        raise ValueError("host range must specify equal-length begin and end formats")
    return head, _range_sequence(beg, end, step), width, tail


def _range_sequence(beg: str, end: str, step: str) -> Sequence[Any]:
    try:
        stride = int(step)
        if stride <= 0:
            raise ValueError
    except ValueError:
        raise ValueError(f"host range step must be a positive number, got {step!r}") from None
    if beg in string.ascii_letters and end in string.ascii_letters:
        first, last = string.ascii_letters.index(beg), string.ascii_letters.index(end)
        if first > last:
            raise ValueError("host range must have begin <= end")
        return string.ascii_letters[first : last + 1 : stride]
    try:
        return range(int(beg), int(end) + 1, stride)
    except ValueError:
        raise ValueError(f"host range bounds must be numbers or letters: [{beg}:{end}]") from None


# --------------------------------------------------------------------------- validity

MAX_RANGE_HOSTS = 100_000  # hosts one `[a:b]` entry may name; the 100,000-host bench uses one
# Refused in host names as OpenSSH 9.6's `valid_hostname` does (CVE-2023-51385): a name
# reaches `Match exec` commands of ~/.ssh/config through a shell as `%h`.
_BAD_HOST_CHAR = re.compile(r"['`\"$\\;&<>|(){},\s\x00-\x1f\x7f-\x9f]")
_BAD_USER_CHAR = re.compile(r"['`\";&<>|(){}\x00-\x1f\x7f]")  # OpenSSH's `valid_ruser`
CONNECTIONS = {
    "ssh": "ssh",
    "smart": "ssh",
    "paramiko": "ssh",
    "paramiko_ssh": "ssh",
    "local": "local",
    "ansible.builtin.ssh": "ssh",
    "ansible.builtin.paramiko_ssh": "ssh",
    "ansible.builtin.local": "local",
}


def check_hostname(name: Any) -> str:
    """`name` if it can be a host name, IP address or ssh alias, else ValueError saying why.

    Follows OpenSSH's `valid_hostname`: no leading '-', no whitespace or control
    characters, none of '`"$\\;&<>|(){}, — so no name can run a command on the controller."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a host name must be a non-empty string, not {_short(name)}")
    if name.startswith("-"):
        raise ValueError(f"host name {_short(name)} must not start with '-'")
    bad = _BAD_HOST_CHAR.search(name)
    if bad:
        raise ValueError(f"host name {_short(name)} must not hold {bad.group()!r}")
    return name


def check_port(value: Any) -> int:
    """A port number 1-65535 from an int or a string of digits, else ValueError."""
    number = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 6:
        number = int(value)
    if number is None or not 1 <= number <= 65535:
        raise ValueError(f"must be a port number from 1 to 65535, not {_short(value)}")
    return number


def check_connection(value: Any) -> str:
    """`ssh` or `local` for an `ansible_connection` runner has; ValueError for another
    (winrm, docker...), which would otherwise be tried as ssh."""
    kind = CONNECTIONS.get(value) if isinstance(value, str) else None
    if kind is None:
        raise ValueError(
            f"connection {_short(value)} is not one runner has (ssh, paramiko, smart, local)"
        )
    return kind


def check_user(value: Any) -> str:
    """A remote user name OpenSSH's `valid_ruser` accepts, else ValueError."""
    if not isinstance(value, str) or not value or value.startswith("-"):
        raise ValueError(f"a user name must be a string not starting with '-': {_short(value)}")
    bad = _BAD_USER_CHAR.search(value)
    if bad:
        raise ValueError(f"user name {_short(value)} must not hold {bad.group()!r}")
    if value.endswith("\\") or re.search(r"\s-", value):
        raise ValueError(f"user name {_short(value)} must not end in '\\' or hold ' -'")
    return value


BECOME_METHODS = ("sudo", "ansible.builtin.sudo")


def check_become_method(value: Any) -> str:
    """`sudo`, the only way runner becomes another user; ValueError for another (su, doas...),
    refused where the inventory sets it rather than when a step would need it."""
    if value not in BECOME_METHODS:
        raise ValueError(f"{_short(value)}: runner becomes with sudo only")
    return str(value)


QUEUE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")  # as the playbook schema's job `queue`


def check_queue_name(value: Any) -> str:
    """A worker queue's name (`queue:`, `runner_queue`): 1-100 letters, digits, `_.-`.
    An INI inventory reads `runner_queue=2024` as a number: it names queue '2024'."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        value = str(value)
    if not isinstance(value, str) or not QUEUE_NAME.fullmatch(value):
        raise ValueError(
            f"queue name {_short(value)} must be 1 to 100 letters, digits, '_', '.' or '-'"
        )
    return value


CONNECTION_VARS = {
    "ansible_host": check_hostname,
    "ansible_ssh_host": check_hostname,
    "ansible_port": check_port,
    "ansible_ssh_port": check_port,
    "ansible_connection": check_connection,
    "ansible_user": check_user,
    "ansible_ssh_user": check_user,
    "ansible_become_method": check_become_method,
    "runner_queue": check_queue_name,
}


def check_connection_var(key: Any, value: Any) -> None:
    """ValueError naming `key` if it is a connection variable with a value runner refuses
    (an unset one, None, is left to the next source)."""
    check = CONNECTION_VARS.get(key) if isinstance(key, str) else None
    if check is None or value is None:
        return
    try:
        check(value)
    except ValueError as exc:
        raise ValueError(f"{key}: {exc}") from None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:50] + f"... ({len(text)} characters)"
