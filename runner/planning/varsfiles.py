"""`vars_files:` of a playbook or a job: YAML mappings read as the playbook loads.

Each name is relative to the file that lists it; a later file overrides an earlier one.
A name that is a template, a missing file and a file that is not a mapping of names are
each one located line (exit 4), like any other error of the playbook.
"""

from __future__ import annotations

import os.path
from typing import Any

from runner.errors import LocatedError, PlaybookError
from runner.planning.files import unreadable
from runner.planning.yamlsource import Document, KeyPath, load_yaml

_MARKERS = ("{{", "{%", "{#")
EMPTY_VARS_FILE = "file is empty; a vars file is a mapping of variable names to values"


def read_vars_files(
    document: Document, path: KeyPath, names: Any
) -> tuple[dict[str, Any], list[LocatedError]]:
    """The variables of the files `names`, the `vars_files` list at `path` of `document`
    (merged, the last file winning), and the problems found."""
    merged: dict[str, Any] = {}
    problems: list[LocatedError] = []
    if not isinstance(names, list):
        return merged, problems
    for index, name in enumerate(names):
        try:
            merged.update(_read_one(document, path + (index,), name))
        except LocatedError as error:
            problems.extend(error.every or [error])
    return merged, problems


def _read_one(document: Document, at: KeyPath, name: Any) -> dict[str, Any]:
    if not isinstance(name, str):
        return {}  # the schema names it
    if any(marker in name for marker in _MARKERS):
        raise document.error(
            "a vars_files name cannot be a template: the files are read as the playbook "
            "loads, before any variable is known",
            at,
        )
    base = os.path.dirname(document.location(at).file)
    file = os.path.normpath(os.path.join(base, name))
    refused = unreadable(file)
    if refused is not None:
        raise document.error(f"vars file {file} {refused}", at)
    loaded = load_yaml(file, PlaybookError, EMPTY_VARS_FILE)
    data = loaded.data
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"the value {str(data)[:40]!r}"
        raise loaded.error(f"a vars file is a mapping of variable names, not {kind}", ())
    for key in data:
        if not isinstance(key, str):
            raise loaded.error(f"variable names are strings, not {key!r}", (key,))
    return data
