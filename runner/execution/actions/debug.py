"""`debug`: a message, or a variable's value as `NAME: value`, shown under the step's line
and kept in the job's output; `ok`."""

from __future__ import annotations

import json
from typing import Any

from runner.planning.logic import NOT_DEFINED, Done
from runner.planning.model import Step
from runner.planning.planner import Plan
from runner.planning.render import RenderedItem
from runner.planning.templating import to_plain


def run(plan: Plan, step: Step, one: RenderedItem) -> Done:
    """`ok`, with the rendered `msg` or `VAR: value` as the step's message."""
    if "var" not in one.args:
        return Done("ok", message=_text(one.args.get("msg", "Hello world!")))
    name = str(one.args["var"])
    if plan.templar.expression_names(name) - set(one.scope):
        return Done("ok", message=f"{name}: {NOT_DEFINED}")
    value = plan.templar.evaluate(name, one.scope, step.where)
    return Done("ok", message=f"{name}: {_text(value)}")


def _text(value: Any) -> str:
    """A string as it is; any other value as JSON (a list, a mapping, a number)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, default=to_plain)
