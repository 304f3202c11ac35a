"""`vars` as a step's action (Ansible's `set_fact`): variables set on the host for the
rest of the job and for later jobs of the run, as registered values are; `ok`."""

from __future__ import annotations

from runner.planning.logic import Done
from runner.planning.model import Step
from runner.planning.planner import Plan
from runner.planning.render import RenderedItem


def run(plan: Plan, step: Step, one: RenderedItem) -> Done:
    """`ok`, with the step's values (rendered as it was) to set on the host."""
    return Done("ok", facts=dict(one.args))
