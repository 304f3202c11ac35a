"""The rules of the `file` and `line` actions' arguments that span keys, which the schema
does not state: `src` is for `state: link` only and a link needs it; a `line` step says
what line it wants present or absent; a line goes either after or before a match."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from runner.errors import LocatedError
from runner.planning.yamlsource import Document


def check_state_args(document: Document) -> Iterator[LocatedError]:
    """One located error per `file`/`line` step whose keys do not go together."""
    for index, job in enumerate(document.data.get("jobs") or []):
        for number, step in enumerate((job or {}).get("steps") or []):
            for action, rule in (("file", _file_problem), ("line", _line_problem)):
                args = step.get(action) if isinstance(step, dict) else None
                if not isinstance(args, dict):
                    continue
                found = rule(args)
                if found is not None:
                    key, message = found
                    path = ("jobs", index, "steps", number, action) + ((key,) if key else ())
                    yield document.error(message, path)


def _file_problem(args: dict[str, Any]) -> tuple[str | None, str] | None:
    state = args.get("state", "file")
    if "src" in args and state != "link":
        return "src", f"src is only for state: link (this step has state: {state})"
    if state == "link" and "src" not in args:
        return "state", "state: link needs src, the path the link points to"
    return None


def _line_problem(args: dict[str, Any]) -> tuple[str | None, str] | None:
    state = args.get("state", "present")
    if state == "present" and "line" not in args:
        return None, "state: present needs line, the line to put in the file"
    if state == "absent" and "line" not in args and "regexp" not in args:
        return None, "state: absent needs line or regexp, what to remove"
    if "insertafter" in args and "insertbefore" in args:
        return "insertbefore", "give insertafter or insertbefore, not both"
    if state == "absent" and ("insertafter" in args or "insertbefore" in args):
        key = "insertafter" if "insertafter" in args else "insertbefore"
        return key, f"{key} is only for state: present"
    return None
