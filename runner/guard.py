"""What variables may not do: leave a directory, or show a secret.

Paths. A destination written as a template (`results.path`, and the `dest` of `put`,
`get` and `template`) is confined to the directory its literal part names: in
``results/{{ job }}/{{ inventory_hostname }}.log`` the variables choose names inside
``results/``, and a host called ``../../etc`` (or a variable holding an absolute path)
is refused instead of writing elsewhere. A path that starts with a variable
(``{{ app_dir }}/app.conf``) lets that variable choose the directory, but no variable
may climb out with ``..``. A NUL byte is always refused. A path with no variable in it
is the author's own choice and is taken as written.

Secrets. Variables named in the playbook's `secrets:` list are secrets wherever their
value comes from (playbook, inventory, `-e`). A `Redactor` replaces each secret's value
with ``********`` in everything the runner writes: output records in the store, result
files, terminal lines, the JSON and JUnit reports, step errors and the plan.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from typing import Any

from runner.errors import LocatedError, StepError
from runner.model import Location

MASK = "********"
_MARKERS = ("{{", "{%")


class PathEscapeError(StepError):
    """A templated destination left the directory its literal part names."""


def confine(template: str, rendered: str, what: str) -> str:
    """`rendered` if the variables in `template` kept it inside its literal directory."""
    if "\0" in rendered:
        raise PathEscapeError(f"{what} {rendered!r} holds a NUL byte")
    cut = min((template.find(m) for m in _MARKERS if m in template), default=-1)
    if cut < 0:
        return rendered  # no variable: written as the author meant it
    literal = template[:cut]
    base = literal[: literal.rfind("/") + 1]
    if not base and cut == 0:  # the variable chooses the directory, but may not climb
        if ".." not in rendered.split("/"):
            return rendered
        base = "."
    if not _inside(posixpath.normpath(rendered), posixpath.normpath(base or ".")):
        raise PathEscapeError(
            f"{what} {rendered!r} leaves {base or '.'!r}: a variable in {template!r} holds '..' or "
            "an absolute path"
        )
    return rendered


def _inside(path: str, base: str) -> bool:
    if base == ".":
        return not posixpath.isabs(path) and path != ".." and not path.startswith("../")
    return path == base or path.startswith(base.rstrip("/") + "/")


def confine_located(template: str, rendered: str, what: str, where: Location) -> str:
    """`confine` for a path checked before anything runs: the error points at the file."""
    try:
        return confine(template, rendered, what)
    except PathEscapeError as error:
        raise LocatedError(str(error), where.file, where.line, where.col, where.path) from None


class Redactor:
    """Masks secret values in text. Empty (a no-op) when the playbook names no secrets."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        found = sorted({v for v in values if v}, key=len, reverse=True)  # longest first
        self._pattern = re.compile("|".join(re.escape(v) for v in found)) if found else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def __call__(self, text: Any) -> Any:
        if self._pattern is None or not isinstance(text, str):
            return text
        return self._pattern.sub(MASK, text)


def secret_values(value: Any) -> list[str]:
    """The strings a secret variable's value holds (a password, or a list or dict of them)."""
    if isinstance(value, dict):
        return [s for v in value.values() for s in secret_values(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in secret_values(v)]
    if value is None or isinstance(value, bool):
        return []
    text = str(value)
    return [text] if len(text) >= 3 else []  # masking "1" or "no" would mask everything
