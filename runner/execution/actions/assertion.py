"""`assert`: every condition of `that` must hold on the host, else the step fails, naming
the first that does not (or saying `fail_msg`). Evaluated on the controller, as `when` is."""

from __future__ import annotations

from runner.planning.logic import Done
from runner.planning.model import Step
from runner.planning.planner import Plan
from runner.planning.render import RenderedItem, holds


def run(plan: Plan, step: Step, one: RenderedItem) -> Done:
    """`ok` (with `success_msg`, if any) when all of `that` hold; else failed."""
    args = one.args
    for condition in args["that"]:
        if not holds(plan, step, condition, one.scope):
            why = args.get("fail_msg") or args.get("msg") or f"assertion failed: {condition}"
            return Done("failed", error=str(why))
    success = args.get("success_msg")
    return Done("ok", message=None if success is None else str(success))
