"""The `package` and `service` actions' arguments: rendered, checked and described.

Pure: what the planner and the run agree on. A package or unit name ends up in a shell
script on the target (always quoted there); it is also held to a strict character class,
so that a name rendered from a variable cannot smuggle in an option or a second word.
The schema refuses a bad name written as is; `render_converge_args` refuses one that a
template produced, at the same key.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from runner.errors import TemplateError

if TYPE_CHECKING:
    from runner.planning.model import Step
    from runner.planning.planner import Plan
    from runner.planning.templating import Variables

CONVERGING = ("package", "service")
# As the schema's patterns (schemas/playbook.schema.json, $defs packageName / unitName).
PACKAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+_:=~-]*")
UNIT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9:_.@\\-]*")
_NAME_RULES = {
    "package": (PACKAGE_NAME, "a package name (letters, digits and .+_:=~-)"),
    "service": (UNIT_NAME, r"a unit name (letters, digits and :_.@-\)"),
}


def package_names(args: dict[str, Any]) -> list[str]:
    """A rendered package step's names: `name` is one name or a list of them."""
    name = args.get("name")
    return [str(n) for n in name] if isinstance(name, list) else [str(name)]


def describe_converge(action: str, args: Any) -> str:
    """A package or service step in one line: `nginx curl state=present`."""
    if not isinstance(args, dict):
        return str(args)
    names = " ".join(package_names(args)) if action == "package" else str(args.get("name", ""))
    options = [f"{key}={_shown(args[key])}" for key in ("state", "enabled") if key in args]
    return " ".join([names, *options])


def _shown(value: Any) -> str:
    """A value as the playbook spells it: `true`, not Python's `True`."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def render_converge_args(plan: Plan, step: Step, variables: Variables) -> dict[str, Any]:
    """A package/service step's arguments rendered for one host: `name` may render to a
    list (a package step's); each name rendered is checked as the schema checks one
    written as is, and refused with a TemplateError at its key."""
    templar, where = plan.templar, step.where
    args = {key: templar.render(value, variables, where) for key, value in step.args.items()}
    name = step.args.get("name")
    if isinstance(name, list):
        args["name"] = [templar.render(item, variables, where) for item in name]
    elif step.action == "package":
        args["name"] = templar.render_native(name, variables, where)
    _check_names(step, args)
    return args


def _check_names(step: Step, args: dict[str, Any]) -> None:
    pattern, kind = _NAME_RULES[step.action]
    value = args.get("name")
    listed = isinstance(value, list) and step.action == "package"
    names = list(enumerate(value)) if isinstance(value, list) and listed else [(0, value)]
    for index, name in names or [(0, "")]:
        if isinstance(name, str) and pattern.fullmatch(name):
            continue
        where = step.where
        key = f"{where.path}.{step.action}.name" + (f"[{index}]" if listed else "")
        raise TemplateError(f"{name!r} is not {kind}", where.file, where.line, where.col, key)
