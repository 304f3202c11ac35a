"""Ansible's `yaml` inventory format: nested groups with `hosts`, `children` and `vars`.

`YamlParser` walks composed YAML nodes (not plain data) so every error carries the line
of the offending key; it fills an `InventoryBuilder` from `runner.planning.inventory`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import yaml
from yaml.constructor import ConstructorError

from runner.errors import InventoryError
from runner.planning import vault
from runner.planning.inventory.hostnames import expand_host_pattern

if TYPE_CHECKING:
    from runner.planning.inventory.model import InventoryBuilder


class InventoryLoader(yaml.SafeLoader):
    """PyYAML's safe loader, whose value errors (a 5000-digit number, a 13th month) carry
    the node's position as its own errors do, instead of escaping as a bare ValueError."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:
            why = str(exc).split(";")[0]
            problem = f"cannot read the value {str(node.value)[:40]!r}: {why}"
            raise ConstructorError(None, None, problem, node.start_mark) from None


class VaultRefused(ConstructorError):
    """An inline `!vault` value that cannot be decrypted: its reason is the whole message."""


def _construct_vault(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    """An inline `!vault` value, decrypted and remembered as a secret."""
    if not isinstance(node, yaml.ScalarNode):
        problem = f"{vault.TAG} takes an encrypted string, not a list or mapping"
        raise VaultRefused(None, None, problem, node.start_mark)
    try:
        plain = vault.decrypt_bytes(node.value).decode("utf-8")
    except (vault.VaultError, UnicodeDecodeError) as exc:
        raise VaultRefused(None, None, str(exc), node.start_mark) from None
    vault.remember([plain])
    return plain


InventoryLoader.add_constructor(vault.TAG, _construct_vault)


def yaml_error(exc: yaml.YAMLError, path: str) -> InventoryError:
    """One located line for a YAML error in an inventory or variables file."""
    if isinstance(exc, yaml.reader.ReaderError):  # its text spans two lines
        return InventoryError(
            f"invalid YAML: character U+{exc.character:04X} not allowed: {exc.reason}",
            file=path,
        )
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    message = problem if isinstance(exc, VaultRefused) else f"invalid YAML: {problem}"
    if mark is None:
        return InventoryError(message, file=path)
    return InventoryError(message, file=path, line=mark.line + 1, col=mark.column + 1)


class YamlParser:
    """Ansible's `yaml` inventory plugin over composed nodes, so errors carry a line."""

    def __init__(self, builder: InventoryBuilder, loader: yaml.SafeLoader) -> None:
        self.b = builder
        self.loader = loader

    def parse(self, root: yaml.Node) -> None:
        if not isinstance(root, yaml.MappingNode):
            self.b.line = root.start_mark.line + 1
            raise self.b.error("not a YAML inventory: the top level must be a mapping of groups")
        entries = self._mapping(root)
        if "plugin" in entries:
            self.b.line = entries["plugin"][0].start_mark.line + 1
            raise self.b.error("inventory plugin configurations are not supported", "plugin")
        for name, (key_node, value_node) in entries.items():
            self._group(name, key_node, value_node)

    def _mapping(self, node: yaml.MappingNode) -> dict[Any, tuple[yaml.Node, yaml.Node]]:
        """Keys to (key node, value node); a repeated key keeps its first place, last value."""
        entries: dict[Any, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = self.loader.construct_object(key_node, deep=True)
            try:
                entries[key] = (key_node, value_node)
            except TypeError:
                self.b.line = key_node.start_mark.line + 1
                raise self.b.error("a mapping key must be a string") from None
        return entries

    def _group(self, name: Any, key_node: yaml.Node, node: yaml.Node | None) -> str:
        self.b.line = key_node.start_mark.line + 1
        if not isinstance(name, str) or not name:
            raise self.b.error(f"group name must be a non-empty string, got {name!r}")
        if not self._is_null(node) and not isinstance(node, yaml.MappingNode):
            raise self.b.error("a group must be a mapping of hosts/children/vars", path=name)
        self.b.add_group(name)
        if isinstance(node, yaml.MappingNode):
            for key, (section_key, section) in self._mapping(node).items():
                self._section(name, key, section_key, section)
        return name

    def _section(self, group: str, key: Any, key_node: yaml.Node, node: yaml.Node) -> None:
        self.b.line = key_node.start_mark.line + 1
        where = f"{group}.{key}"
        if key not in ("hosts", "children", "vars"):
            raise self.b.error("unexpected key: a group has only hosts, children, vars", where)
        if self._is_null(node):
            return
        pairs: Mapping[Any, tuple[yaml.Node, yaml.Node | None]]
        scalar = self.loader.construct_object(node) if isinstance(node, yaml.ScalarNode) else None
        if isinstance(scalar, str):  # as Ansible does: `hosts: web1` is `hosts: {web1: }`
            pairs = {scalar: (node, None)}
        elif isinstance(node, yaml.MappingNode):
            pairs = self._mapping(node)
        else:
            raise self.b.error(f"{key} must be a mapping", path=where)
        for item, (item_key, item_value) in pairs.items():
            self.b.line = item_key.start_mark.line + 1
            if key == "vars":
                self.b.set_group_var(group, item, self._value(item_value))
            elif key == "children":
                child = self._group(item, item_key, item_value)
                self.b.line = item_key.start_mark.line + 1
                self.b.add_child(group, child)
            else:
                self._hosts(group, item, item_value)

    def _hosts(self, group: str, entry: Any, node: yaml.Node | None) -> None:
        if not isinstance(entry, str):
            raise self.b.error(f"host {entry!r} must be a string: quote it", path=group)
        variables = self._value(node) if node is not None else None
        if variables is None:
            variables = {}
        if not isinstance(variables, dict):
            raise self.b.error("host variables must be a mapping", path=entry)
        try:
            names, port = expand_host_pattern(entry)
        except ValueError as exc:
            raise self.b.error(f"bad host range: {exc}", path=entry) from None
        lines = {}
        if isinstance(node, yaml.MappingNode):
            lines = {key.value: key.start_mark.line + 1 for key, _value in node.value}
        self.b.add_hosts(names, group, port, variables, lines)

    def _value(self, node: yaml.Node | None) -> Any:
        return None if node is None else self.loader.construct_object(node, deep=True)

    @staticmethod
    def _is_null(node: yaml.Node | None) -> bool:
        return node is None or (node.tag == "tag:yaml.org,2002:null")
