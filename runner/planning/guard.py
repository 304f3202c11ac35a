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

import json
import posixpath
import re
import shlex
import threading
from collections.abc import Iterable
from typing import Any

from runner.errors import LocatedError, StepError
from runner.planning.model import Location

MASK = "********"
MIN_SECRET = 3  # characters; a shorter value is not masked
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
    """Masks secret values in text, in the forms runner itself derives from them too.

    Empty (a no-op) when the playbook names no secrets. A secret registered while the
    run goes on (`secrets:` naming a `register:`ed variable) is added with `add`, and is
    masked from then on by every holder of this redactor.
    """

    def __init__(self, values: Iterable[str] = (), active: bool = False) -> None:
        self._active = active
        self._values: set[str] = set()
        self._lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None
        self._longest = 0
        self.add(values)

    def add(self, values: Iterable[str]) -> None:
        """Mask these values (and their shell-quoted and JSON-escaped forms) from now on."""
        forms = {form for value in values if value for form in _derived_forms(value)}
        with self._lock:
            if forms <= self._values:
                return
            self._values |= forms
            found = sorted(self._values, key=len, reverse=True)  # longest first
            self._pattern = re.compile("|".join(re.escape(v) for v in found))
            self._longest = len(found[0])

    def __bool__(self) -> bool:
        return self._active or self._pattern is not None

    def __call__(self, text: Any) -> Any:
        pattern = self._pattern
        if pattern is None or not isinstance(text, str):
            return text
        return pattern.sub(MASK, text)

    def partial_tail(self, text: str) -> int:
        """How many characters at the end of `text` could begin a secret: what a stream
        must hold back, so that no secret is cut in two records and escapes its mask."""
        pattern, values = self._pattern, self._values
        if pattern is None:
            return 0
        for size in range(min(len(text), self._longest - 1), 0, -1):
            tail = text[-size:]
            if any(value.startswith(tail) for value in values):
                return size
        return 0


def _derived_forms(value: str) -> set[str]:
    """A secret and the forms runner writes it in: `| quote`'s shell quoting, and the
    JSON string escaping of `plan --format json` and the reports."""
    quoted = shlex.quote(value)
    forms = {value, quoted}
    forms |= {json.dumps(form, ensure_ascii=False)[1:-1] for form in (value, quoted)}
    forms |= {json.dumps(form)[1:-1] for form in (value, quoted)}
    return {form for form in forms if len(form) >= MIN_SECRET}


def secret_values(value: Any) -> list[str]:
    """The strings a secret variable's value holds (a password, or a list or dict of them)."""
    if isinstance(value, dict):
        return [s for v in value.values() for s in secret_values(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in secret_values(v)]
    if value is None or isinstance(value, bool):
        return []
    text = str(value)
    return [text] if len(text) >= MIN_SECRET else []  # masking "1" or "no" would mask everything
