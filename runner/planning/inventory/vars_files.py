"""group_vars/ and host_vars/ files beside an inventory, and reading inventory files.

Ansible's `host_group_vars` plugin: NAME, NAME.yml, NAME.yaml, NAME.json or a NAME/
directory under group_vars/ or host_vars/. Every such file for a known group or host is
read when the inventory loads, so a bad one is reported by `runner inventory` too, with
its file and line; merging variables stays lazy (`runner.planning.inventory.Inventory`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

import yaml

from runner.errors import InventoryError
from runner.planning import vault
from runner.planning.files import MAX_SOURCE, special
from runner.planning.inventory.hostnames import check_connection_var
from runner.planning.inventory.yaml_format import InventoryLoader, yaml_error
from runner.planning.yamlsource import check_depth

VARS_EXTENSIONS = ("", ".yml", ".yaml", ".json")


class VarsFiles:
    """group_vars/ and host_vars/ beside one inventory source, each file read once."""

    def __init__(self, basedir: str) -> None:
        self.basedir = basedir
        self._cache: dict[tuple[str, str], dict[str, Any]] = {}
        self._files: dict[tuple[str, str], list[str]] = {}

    def group(self, name: str) -> dict[str, Any]:
        return self._load("group_vars", name)

    def host(self, name: str) -> dict[str, Any]:
        return self._load("host_vars", name)

    def loaded(self) -> list[dict[str, Any]]:
        """The variables of every file read so far (all of them once `preload` ran)."""
        return list(self._cache.values())

    def settings(
        self, groups: Iterable[str], hosts: Iterable[str]
    ) -> Iterator[tuple[str, Any, str]]:
        """(variable, value, where) of the files read for these groups and hosts; where is
        the file (or, for a directory of files, the directory) that sets it."""
        for subdir, kind, names in (("group_vars", "group", groups), ("host_vars", "host", hosts)):
            for name in names:
                data = self._cache.get((subdir, name))
                paths = self._files.get((subdir, name), [])
                where = paths[0] if len(paths) == 1 else os.path.join(self.basedir, subdir, name)
                for key, value in (data or {}).items():
                    yield key, value, f"{where}: {kind} {name}"

    def preload(self, groups: Iterable[str], hosts: Iterable[str]) -> None:
        """Read now every file that belongs to one of `groups` or `hosts`: one listing of
        each directory, so 100,000 hosts without host_vars cost no file look-ups."""
        for subdir, names in (("group_vars", groups), ("host_vars", hosts)):
            directory = os.path.join(self.basedir, subdir)
            try:
                entries = os.listdir(directory)
            except OSError:
                continue
            present = {_stem(entry) for entry in entries} | set(entries)
            for name in names:
                if name in present:
                    self._load(subdir, name)

    def _load(self, subdir: str, name: str) -> dict[str, Any]:
        key = (subdir, name)
        if key not in self._cache:
            data: dict[str, Any] = {}
            if not name.startswith(os.sep):
                paths = find_vars_files(os.path.join(self.basedir, subdir), name)
                for path in paths:
                    data.update(load_vars_file(path))
                self._files[key] = paths
            self._cache[key] = data
        return self._cache[key]


def _stem(entry: str) -> str:
    for ext in VARS_EXTENSIONS[1:]:
        if entry.endswith(ext):
            return entry[: -len(ext)]
    return entry


def find_vars_files(directory: str, name: str) -> list[str]:
    """Ansible's `find_vars_files`: NAME, NAME.yml, NAME.yaml, NAME.json or NAME/ (first wins)."""
    base = os.path.join(directory, name)
    for ext in VARS_EXTENSIONS:
        path = base + ext
        if os.path.isdir(path):
            return _dir_vars_files(path)
        if os.path.exists(path):
            return [path]
    return []


def _dir_vars_files(path: str) -> list[str]:
    found: list[str] = []
    for entry in sorted(os.listdir(path)):
        if entry.startswith(".") or entry.endswith("~"):
            continue
        full = os.path.join(path, entry)
        ext = os.path.splitext(entry)[1]
        if os.path.isdir(full) and not ext:
            found.extend(_dir_vars_files(full))
        elif os.path.isfile(full) and ext in VARS_EXTENSIONS:
            found.append(full)
    return found


def load_vars_file(path: str) -> dict[str, Any]:
    """A YAML/JSON mapping of variables; an empty file is no variables. Connection
    variables (`ansible_host`, `ansible_port`...) are checked here, at their line. A
    wholly encrypted file's values are all secrets."""
    text, encrypted = read_source(path)
    try:
        check_depth(text, path, InventoryError)
        loader = InventoryLoader(text)
        try:
            root = loader.get_single_node()
            data = None if root is None else loader.construct_document(root)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise yaml_error(exc, path) from None
    if root is None or not data:
        return {}
    if not isinstance(data, dict):
        raise InventoryError(
            f"variables file must be a mapping, got {type(data).__name__}", file=path, line=1
        )
    for key_node, _value in root.value:
        try:
            check_connection_var(key_node.value, data.get(key_node.value))
        except ValueError as exc:
            line = key_node.start_mark.line + 1
            raise InventoryError(str(exc), file=path, line=line) from None
    if encrypted:
        vault.remember_data(data)
    return data


def read_text(path: str) -> str:
    """An inventory or variables file's text, decrypted if it is an ansible-vault file."""
    return read_source(path)[0]


def read_source(path: str) -> tuple[str, bool]:
    """An inventory or variables file's text, decrypted if it is an ansible-vault file, and
    whether it was; InventoryError if unreadable, not UTF-8, or it cannot be decrypted."""
    refused = special(path, MAX_SOURCE)  # a FIFO would wait for ever, /dev/zero fill memory
    if refused is not None:
        raise InventoryError(refused, file=path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        raise InventoryError("inventory file not found", file=path) from None
    except OSError as exc:
        raise InventoryError(f"cannot read: {exc.strerror}", file=path) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InventoryError("not valid UTF-8", file=path, line=line) from None
    if not vault.is_encrypted(text):
        return text, False
    return vault.reveal(text, InventoryError, path, 1, 1), True
