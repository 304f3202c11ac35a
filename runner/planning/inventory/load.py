"""Loading inventories: a file, a directory of them, or a comma list of hosts."""

from __future__ import annotations

import os
import re
from typing import Any

import yaml

from runner.errors import InventoryError
from runner.planning import vault
from runner.planning.inventory.hostnames import (
    parse_address,
)
from runner.planning.inventory.ini_format import IniParser
from runner.planning.inventory.model import Inventory, InventoryBuilder
from runner.planning.inventory.vars_files import read_source
from runner.planning.inventory.yaml_format import InventoryLoader, YamlParser, yaml_error
from runner.planning.yamlsource import check_depth

YAML_EXTENSIONS = (".yml", ".yaml", ".json")
_IGNORED_IN_DIR = re.compile(
    r"^\.|^host_vars$|^group_vars$|^vars_plugins$"
    r"|(\.pyc|\.pyo|\.swp|\.bak|~|\.rpm|\.md|\.txt|\.rst|\.orig|\.cfg|\.retry)$"
)


# --------------------------------------------------------------------------- loading


def load_inventory(path: str | os.PathLike[str]) -> Inventory:
    """Read an INI or YAML inventory file, or a directory of them, as ansible-core does;
    a string with a comma that is no existing path is a list of hosts (`-i 'a,b:2222,'`)."""
    source = os.path.abspath(os.fspath(path))
    builder = InventoryBuilder()
    if os.path.isdir(source):
        _load_dir(builder, source)
        builder.vars_dirs.append(source)
    elif os.path.exists(source):
        _load_file(builder, source)
        builder.vars_dirs.append(os.path.dirname(source))
    elif "," in os.fspath(path):
        source = os.fspath(path)
        _load_host_list(builder, source)
    else:
        raise InventoryError("inventory file not found", file=os.fspath(path))
    builder.source, builder.line = source, None
    inventory = builder.finish()
    for files in inventory._vars_files:
        files.preload(inventory.groups, inventory.hosts)
    return inventory


def implicit_localhost() -> Inventory:
    """The inventory Ansible uses when none is given: only `localhost`, connected locally."""
    builder = InventoryBuilder()
    builder.add_host("localhost", None).vars.update(
        {"ansible_connection": "local", "inventory_file": None, "inventory_dir": None}
    )
    return builder.finish()


def _load_host_list(builder: InventoryBuilder, host_list: str) -> None:
    """Ansible's `host_list` plugin: comma-separated hosts, each with an optional `:port`
    (no ranges), all in `ungrouped`; no group_vars/ or host_vars/ beside it."""
    builder.source = host_list
    for entry in host_list.split(","):
        entry = entry.strip()
        if not entry:
            continue
        try:
            name, port = parse_address(entry)
        except ValueError:
            name, port = entry, None
        if name not in builder.hosts:
            builder.add_host(name, "ungrouped", port)


def _load_dir(builder: InventoryBuilder, directory: str) -> None:
    for entry in sorted(os.listdir(directory)):
        if _IGNORED_IN_DIR.search(entry):
            continue
        full = os.path.join(directory, entry)
        if os.path.isdir(full):
            _load_dir(builder, full)
        else:
            _load_file(builder, full)


def _load_file(builder: InventoryBuilder, path: str) -> None:
    """YAML first for .yml/.yaml/.json or no extension (as Ansible's plugin order), else INI."""
    builder.source, builder.line = path, None
    text, encrypted = read_source(path)
    if not encrypted:
        _parse_file(builder, path, text)
        return
    before = _values(builder)
    _parse_file(builder, path, text)
    vault.remember_data([{k[2]: v} for k, v in _values(builder).items() if before.get(k) is not v])


def _values(builder: InventoryBuilder) -> dict[tuple[str, str, str], Any]:
    """Every variable the inventory holds so far, by (kind, name, key): what a wholly
    encrypted inventory file sets is told from what came before it (its values are secrets,
    its host and group names are not; nor are the names of the file and its directory)."""
    found: dict[tuple[str, str, str], Any] = {}
    for kind, table in (("host", builder.hosts), ("group", builder.groups)):
        for name, entry in table.items():
            for key, value in entry.vars.items():
                if key not in ("inventory_file", "inventory_dir"):
                    found[(kind, name, key)] = value
    return found


def _parse_file(builder: InventoryBuilder, path: str, text: str) -> None:
    ext = os.path.splitext(path)[1]
    if ext == ".toml":
        raise InventoryError("TOML inventories are not supported", file=path)
    if ext and ext not in YAML_EXTENSIONS:
        IniParser(builder).parse(text.splitlines())
        return
    root, loader, yaml_problem = _compose(text, path)
    if isinstance(root, yaml.MappingNode):
        _parse_yaml(builder, loader, root, path)
        return
    try:
        IniParser(builder).parse(text.splitlines())
    except InventoryError:
        if ext and yaml_problem is not None:
            raise yaml_problem from None
        if ext and root is not None:
            _parse_yaml(builder, loader, root, path)
        raise


def _parse_yaml(builder: InventoryBuilder, loader: Any, root: yaml.Node, path: str) -> None:
    try:
        YamlParser(builder, loader).parse(root)
    except yaml.YAMLError as exc:  # a value that cannot be built: a bad tag, a 13th month
        raise yaml_error(exc, path) from None


def _compose(text: str, path: str) -> tuple[yaml.Node | None, Any, InventoryError | None]:
    """The YAML node tree (None for an empty file) and its loader, or the error to show
    if it did not parse."""
    try:
        check_depth(text, path, InventoryError)  # the composer recurses once per level
        loader = InventoryLoader(text)  # refuses control characters already
        return loader.get_single_node(), loader, None
    except yaml.YAMLError as exc:
        return None, None, yaml_error(exc, path)
    except InventoryError as exc:
        return None, None, exc
