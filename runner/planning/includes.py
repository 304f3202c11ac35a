"""`include:` in `steps:` and `jobs:`, resolved when the playbook loads (static, as
Ansible's `import_tasks` / `import_playbook`).

Each included file is read as YAML with positions and checked against the schema as a
list of steps or jobs. The playbook's data is then rebuilt with the files' content in
place: a step include becomes a block of the file's steps (its `vars`, `when`, `tags`...
apply to them as a block's do); a job include is replaced by the file's jobs, the
include's `vars` under each job's own. The result is a `Composite` document, which maps
every key path of the rebuilt data back to the file, line and key path a user wrote, so
every later check (and a template error at run time) names the included file.
"""

from __future__ import annotations

import os.path
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from runner.errors import LocatedError, PlaybookError, gathered
from runner.planning.files import unreadable
from runner.planning.model import Location
from runner.planning.yamlsource import Document, KeyPath, format_path, load_yaml

MAX_INCLUDE_DEPTH = 32  # files including files; a cycle is refused long before
_MARKERS = ("{{", "{%", "{#")


@dataclass(frozen=True)
class Included(Document):
    """An included file: its data is a list whose key paths are shown under `root`
    (`steps[1].run`), as a playbook's own would be."""

    root: KeyPath = ()

    def location(self, path: Iterable[Any]) -> Location:
        key = tuple(path)
        line, col = self.locate(key)
        return Location(self.file, line, col, format_path(self.root + key))

    def error(
        self, message: str, path: Iterable[Any], at: Iterable[Any] | None = None
    ) -> LocatedError:
        shown = tuple(path)
        line, col = self.locate(shown if at is None else at)
        return self.error_class(message, self.file, line, col, format_path(self.root + shown))


@dataclass(frozen=True)
class _Origin:
    """Where a subtree of the rebuilt data was written: a document and the path there."""

    document: Document
    local: KeyPath


@dataclass(frozen=True)
class Composite(Document):
    """The playbook with its includes in place. `origins` maps a key path of `data` to
    where that subtree was written (the longest matching path wins); `included` maps the
    path of each block an include became to the file's name as written."""

    origins: dict[KeyPath, _Origin] = field(default_factory=dict, repr=False)
    included: dict[KeyPath, str] = field(default_factory=dict, repr=False)

    def _resolve(self, path: Iterable[Any]) -> tuple[Document, KeyPath]:
        key = tuple(path)
        probe = key
        while probe and probe not in self.origins:
            probe = probe[:-1]
        origin = self.origins[probe]  # () is always there: the playbook itself
        return origin.document, origin.local + key[len(probe) :]

    def locate(self, path: Iterable[Any]) -> tuple[int, int]:
        document, local = self._resolve(path)
        return document.locate(local)

    def location(self, path: Iterable[Any]) -> Location:
        document, local = self._resolve(path)
        return document.location(local)

    def error(
        self, message: str, path: Iterable[Any], at: Iterable[Any] | None = None
    ) -> LocatedError:
        document, local = self._resolve(path)
        error = document.error(message, local)
        if at is not None:
            error.line, error.col = self.locate(at)
        return error


def has_includes(data: Any) -> bool:
    """Whether a playbook's data has an `include:` item (in `jobs:` or any `steps:`)."""
    jobs = data.get("jobs") if isinstance(data, dict) else None
    return any(_includes_in(job, top=True) for job in jobs or [])


def _includes_in(item: Any, top: bool = False) -> bool:
    if not isinstance(item, dict):
        return False
    if "include" in item:
        return True
    keys = ("steps",) if top else ("block", "rescue", "always")
    return any(_includes_in(step) for key in keys for step in item.get(key) or [])


def expand(document: Document) -> Document:
    """The playbook with every include resolved (see the module's docstring); the
    document itself when it has none. Raises a `PlaybookError` with every problem found:
    a missing or unreadable file (at the include), a templated path, a cycle (naming the
    chain), and each included file's own errors (at its lines)."""
    if not has_includes(document.data):
        return document
    expander = _Expander(document)
    data = dict(document.data)
    data["jobs"] = expander.jobs(document, ("jobs",), document.data["jobs"], {}, [document.file])
    if expander.problems:
        raise gathered(expander.problems, document.file)
    return Composite(
        document.file,
        data,
        document.positions,
        document.error_class,
        origins=expander.origins,
        included=expander.included,
    )


class _Expander:
    """Builds the rebuilt data and its origins, gathering problems instead of stopping."""

    def __init__(self, main: Document) -> None:
        self.main = main
        self.origins: dict[KeyPath, _Origin] = {(): _Origin(main, ())}
        self.included: dict[KeyPath, str] = {}
        self.problems: list[LocatedError] = []

    def jobs(
        self,
        document: Document,
        local: KeyPath,
        items: list[Any],
        inherited: dict[str, tuple[Any, _Origin]],
        chain: list[str],
        out: list[Any] | None = None,
    ) -> list[Any]:
        """The jobs of `items` (at `local` in `document`), included files' spliced in."""
        out = [] if out is None else out
        for index, item in enumerate(items):
            path = local + (index,)
            if isinstance(item, dict) and "include" in item:
                child = self._load(document, path, item, chain, "jobs")
                if child is not None:
                    given = {
                        name: (value, _Origin(document, path + ("vars", name)))
                        for name, value in (item.get("vars") or {}).items()
                    }
                    self.jobs(child, (), child.data, inherited | given, [*chain, child.file], out)
                continue
            combined = ("jobs", len(out))
            self.origins[combined] = _Origin(document, path)
            out.append(self._job(document, path, item, inherited, combined, chain))
        return out

    def _job(
        self,
        document: Document,
        path: KeyPath,
        item: Any,
        inherited: dict[str, tuple[Any, _Origin]],
        combined: KeyPath,
        chain: list[str],
    ) -> Any:
        if not isinstance(item, dict):
            return item
        job = dict(item)
        if inherited:
            own = job.get("vars") or {}
            for name, (_, origin) in inherited.items():
                if name not in own:
                    self.origins[combined + ("vars", name)] = origin
            job["vars"] = {name: value for name, (value, _) in inherited.items()} | own
        if isinstance(job.get("steps"), list):
            steps = job["steps"]
            job["steps"] = self.steps(
                document, path + ("steps",), steps, combined + ("steps",), chain
            )
        return job

    def steps(
        self,
        document: Document,
        local: KeyPath,
        items: list[Any],
        combined: KeyPath,
        chain: list[str],
    ) -> list[Any]:
        """The steps of `items`: each include becomes a block of the file's steps."""
        return [
            self._step(document, local + (index,), item, combined + (index,), chain)
            for index, item in enumerate(items)
        ]

    def _step(
        self, document: Document, path: KeyPath, item: Any, here: KeyPath, chain: list[str]
    ) -> Any:
        if not isinstance(item, dict):
            return item
        if "include" in item:
            block = {key: value for key, value in item.items() if key != "include"}
            self.included[here] = str(item["include"])
            child = self._load(document, path, item, chain, "steps")
            block["block"] = []
            if child is not None:
                inside = here + ("block",)
                self.origins[inside] = _Origin(child, ())
                block["block"] = self.steps(child, (), child.data, inside, [*chain, child.file])
            return block
        step = dict(item)
        for key in ("block", "rescue", "always"):
            if isinstance(step.get(key), list):
                step[key] = self.steps(document, path + (key,), step[key], here + (key,), chain)
        return step

    def _load(
        self, document: Document, path: KeyPath, item: dict[str, Any], chain: list[str], kind: str
    ) -> Included | None:
        """The included file, schema-checked; None (with the problem kept) when it cannot be."""
        from runner.planning.schema import validate

        name = item["include"]
        at = path + ("include",)
        if not isinstance(name, str):
            return None  # the schema names it
        if any(marker in name for marker in _MARKERS):
            why = "an include path cannot be a template: includes are read as the playbook loads"
            self.problems.append(document.error(f"{why}, before any variable is known", at))
            return None
        file = os.path.normpath(os.path.join(os.path.dirname(document.file), name))
        seen = [os.path.realpath(f) for f in chain]
        if os.path.realpath(file) in seen:
            cycle = [*chain[seen.index(os.path.realpath(file)) :], file]
            shown = " -> ".join(self._shown(f) for f in cycle)
            self.problems.append(document.error(f"include cycle: {shown}", at))
            return None
        if len(chain) > MAX_INCLUDE_DEPTH:
            message = f"includes nested more than {MAX_INCLUDE_DEPTH} deep"
            self.problems.append(document.error(message, at))
            return None
        refused = unreadable(file)
        if refused is not None:
            self.problems.append(document.error(f"included file {file} {refused}", at))
            return None
        try:
            loaded = load_yaml(file, PlaybookError, f"file is empty; an included file holds {kind}")
            child = Included(
                loaded.file, loaded.data, loaded.positions, PlaybookError, loaded.encrypted, (kind,)
            )
            validate(child, kind)
        except LocatedError as error:
            self.problems.extend(error.every or [error])
            return None
        return child

    def _shown(self, file: str) -> str:
        return os.path.relpath(file, os.path.dirname(self.main.file) or ".")
