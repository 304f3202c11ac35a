"""Host names in inventories: `host:port` / `[v6]:port` addresses and `web[01:20]` ranges.

Follows ansible-core's `ansible.parsing.utils.addresses` and `expand_hostname_range`, so
an entry names the same hosts here as under Ansible. Pure string work; no inventory state.
"""

from __future__ import annotations

import re
import string
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
    """Ansible's `expand_hostname_range`: `web[01:03]` -> web01 web02 web03, `db-[a:c]`..."""
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
    sequence = _range_sequence(beg, end, step)
    names: list[str] = []
    for item in sequence:
        name = f"{head}{str(item).zfill(width)}{tail}"
        names.extend(expand_hostname_range(name) if "[" in name else [name])
    return names


def _range_sequence(beg: str, end: str, step: str) -> list[Any]:
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
        return list(string.ascii_letters[first : last + 1 : stride])
    try:
        return list(range(int(beg), int(end) + 1, stride))
    except ValueError:
        raise ValueError(f"host range bounds must be numbers or letters: [{beg}:{end}]") from None
