"""The controller's step actions (`assert`, `fail`, `debug`, `vars`) as the planning side
knows them: their arguments normalised, a one-line summary, the variables they read and
their arguments rendered for a host. Pure: running them is `runner.execution.actions`'
part, and the conditions on a step's result are applied in `runner.execution.conditions`.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner.planning.model import Step
    from runner.planning.planner import Plan
    from runner.planning.templating import Templar, Variables

LOGIC_ACTIONS = ("assert", "fail", "debug", "vars")
FAIL_DEFAULT = "Failed as requested from task"
NOT_DEFINED = "VARIABLE IS NOT DEFINED!"  # what debug's `var` shows for an undefined name


@dataclass
class Done:
    """What a controller action decided: a step status (`ok` or `failed`), why it failed,
    a message to show under the step's line, and variables to set on the host."""

    status: str
    error: str | None = None
    message: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)


def normalize(action: str, value: Any) -> Any:
    """A controller action's arguments in one form: `assert`'s `that` always a list of
    expressions (a boolean as its text), `fail` and `debug` always a mapping."""
    if action == "assert":
        that = value["that"]
        items = that if isinstance(that, list) else [that]
        return {**value, "that": [str(item) for item in items]}
    return dict(value or {})


def summary(action: str, args: dict[str, Any]) -> str:
    """A one-line text of a controller action, for its derived name and `runner plan`:
    `assert`'s conditions, `fail`'s message, `debug`'s message or `var NAME`, `vars`' names."""
    if action == "assert":
        return " and ".join(str(item) for item in args.get("that") or [])
    if action == "fail":
        return str(args.get("msg", FAIL_DEFAULT))
    if action == "debug":
        return f"var {args['var']}" if "var" in args else str(args.get("msg", ""))
    return ", ".join(str(name) for name in args)


def expression_reads(templar: Templar, step: Step) -> AbstractSet[str]:
    """The names read by a controller action's bare expressions (`assert`'s `that`,
    `debug`'s `var`), which are not templates with braces."""
    if step.action == "assert":
        return templar.expression_names(step.args["that"])
    if step.action == "debug" and "var" in step.args:
        return templar.expression_names(step.args["var"])
    return set()


def render_logic_args(plan: Plan, step: Step, variables: Variables) -> dict[str, Any]:
    """A controller action's arguments rendered for one host: messages rendered, `vars`'
    values and `debug`'s `msg` keeping their types; expressions and `var` left as written
    (they are evaluated as the step runs)."""
    templar, where, args = plan.templar, step.where, step.args
    if step.action == "vars":
        return {
            name: templar.render_native(value, variables, where) for name, value in args.items()
        }
    if step.action == "debug" and "msg" in args:
        return {"msg": templar.render_native(args["msg"], variables, where)}
    return {
        key: value if key in ("that", "var") else templar.render(value, variables, where)
        for key, value in args.items()
    }


def sets(step: Step) -> tuple[str, ...]:
    """The host variables a step sets for later steps: its `register`, a `vars` step's names."""
    names = tuple(step.args) if step.action == "vars" else ()
    return (step.register, *names) if step.register else names
