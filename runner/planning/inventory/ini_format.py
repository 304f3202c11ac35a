"""Ansible's `ini` inventory format: sections, host lines with variables, `:vars`, `:children`.

`IniParser` reads lines into an `InventoryBuilder` (from `runner.planning.inventory`), which owns
the hosts and groups; errors name the file and line through the builder.
"""

from __future__ import annotations

import ast
import re
import shlex
import warnings
from typing import TYPE_CHECKING, Any

from runner.planning.inventory.hostnames import expand_host_pattern

if TYPE_CHECKING:
    from runner.planning.inventory.model import InventoryBuilder

_SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:\#.*)?$")
_GROUP_NAME = re.compile(r"^([^:\]\s]+)\s*(?:\#.*)?$")
_PLAIN_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DOTTED_NUMBERS = re.compile(r"\d+(?:\.\d+){2,}")


def parse_ini_value(text: str) -> Any:
    """An INI value as Ansible reads it: a Python literal if it is one, else the string."""
    if text.isdigit() and text.isascii() and (text[0] != "0" or len(text) == 1):
        try:
            return int(text)
        except ValueError:  # past Python's 4300 digits: Ansible keeps the text
            return text
    if _PLAIN_WORD.fullmatch(text) and text not in ("True", "False", "None"):
        return text
    if _DOTTED_NUMBERS.fullmatch(text):
        return text
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    return _coerce_literal(value)


def _coerce_literal(value: Any) -> Any:
    if isinstance(value, (list, tuple, set)):
        return [_coerce_literal(v) for v in value]
    if isinstance(value, dict):
        return {k: _coerce_literal(v) for k, v in value.items()}
    if value is ...:
        return "..."
    if isinstance(value, complex):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value


class IniParser:
    """Ansible's `ini` inventory plugin, line by line, with a pending-declaration check."""

    def __init__(self, builder: InventoryBuilder) -> None:
        self.b = builder
        self.pending: dict[str, dict[str, Any]] = {}

    def parse(self, lines: list[str]) -> None:
        group, state = "ungrouped", "hosts"
        for number, raw in enumerate(lines, 1):
            self.b.line = number
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            match = _SECTION.match(line)
            if match:
                group, state = self._section(match)
            elif line.startswith("[") and line.endswith("]"):
                raise self.b.error(f"invalid section {line!r}: no spaces or ':' allowed inside")
            elif state == "hosts":
                self._host_line(line, group)
            elif state == "vars":
                self._vars_line(line, group)
            else:
                self._child_line(line, group)
        self._check_pending()

    def _section(self, match: re.Match[str]) -> tuple[str, str]:
        # ansible-core's default (TRANSFORM_INVALID_GROUP_CHARS=never) keeps `a-b` as is,
        # in headers as in `:children` lines and patterns.
        name = match.group(1)
        state = match.group(2) or "hosts"
        if state not in ("hosts", "children", "vars"):
            raise self.b.error(f"section [{match.group(1)}:{state}] has unknown type {state!r}")
        if name not in self.b.groups:
            if state == "vars" and name not in self.pending:
                self.pending[name] = {"line": self.b.line, "state": state, "parents": []}
            self.b.add_group(name)
        if name in self.pending and state != "vars":
            if self.pending[name]["state"] == "children":
                self._add_pending_children(name)
            else:
                del self.pending[name]
        return name, state

    def _add_pending_children(self, group: str) -> None:
        for parent in self.pending[group]["parents"]:
            self.b.add_child(parent, group)
            if parent in self.pending and self.pending[parent]["state"] == "children":
                self._add_pending_children(parent)
        del self.pending[group]

    def _host_line(self, line: str, group: str) -> None:
        tokens = self._split(line)
        entry = tokens[0]
        if entry.endswith(":"):
            raise self.b.error(f"invalid host {entry!r}: a trailing ':' must give a port")
        try:
            names, port = expand_host_pattern(entry)
        except ValueError as exc:
            raise self.b.error(f"bad host range: {exc}", path=entry) from None
        if "---" in names:
            raise self.b.error("'---' is not a host: this looks like a YAML file")
        variables: dict[str, Any] = {}
        for token in tokens[1:]:
            key, sep, value = token.partition("=")
            if not sep:
                raise self.b.error(f"expected key=value host variable, got {token!r}", entry)
            variables[key] = parse_ini_value(value)
        self.b.add_hosts(names, group, port, variables)

    def _split(self, line: str) -> list[str]:
        if not any(c in line for c in "'\"\\#"):
            return line.split()
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError as exc:
            raise self.b.error(f"cannot parse host line: {exc}") from None
        if not tokens:
            raise self.b.error(f"expected a host, got {line!r}")
        return tokens

    def _vars_line(self, line: str, group: str) -> None:
        key, sep, value = line.partition("=")
        if not sep:
            raise self.b.error(f"expected key=value, got {line!r}", path=group)
        self.b.set_group_var(group, key.strip(), parse_ini_value(value.strip()))

    def _child_line(self, line: str, group: str) -> None:
        match = _GROUP_NAME.match(line)
        if not match:
            raise self.b.error(f"expected a group name, got {line!r}", path=group)
        child = match.group(1)
        if child in self.b.groups:
            self.b.add_child(group, child)
        elif child in self.pending:
            self.pending[child]["parents"].append(group)
        else:
            self.pending[child] = {"line": self.b.line, "state": "children", "parents": [group]}

    def _check_pending(self) -> None:
        for name, decl in self.pending.items():
            self.b.line = decl["line"]
            if decl["state"] == "vars":
                raise self.b.error(f"section [{name}:vars] is for a group defined nowhere", name)
            parent = decl["parents"][-1]
            raise self.b.error(f"section [{parent}:children] names undefined group {name!r}", name)
