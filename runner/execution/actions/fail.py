"""`fail`: the host fails with `msg` (with `when`, the usual guard)."""

from __future__ import annotations

from runner.planning.logic import FAIL_DEFAULT, Done
from runner.planning.model import Step
from runner.planning.planner import Plan
from runner.planning.render import RenderedItem


def run(plan: Plan, step: Step, one: RenderedItem) -> Done:
    """Always failed, with the step's message."""
    return Done("failed", error=str(one.args.get("msg", FAIL_DEFAULT)))
