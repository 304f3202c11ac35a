"""What a step's own conditions decide around its action: the controller's actions run
(`assert`, `fail`, `debug`, `vars`: no connection), `creates:` / `removes:` asked of the
target before a `run` or `script` step, and `changed_when` / `failed_when` applied to the
result of any step (each loop item's). `StepRunner` calls these; they keep no state.
"""

from __future__ import annotations

import shlex
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from runner.connections.base import Connection
from runner.errors import StepError
from runner.execution.actions import assertion, debug, fail, setvars
from runner.jobs.states import StepStatus
from runner.planning.logic import Done
from runner.planning.model import Step
from runner.planning.planner import Plan
from runner.planning.render import RenderedItem, holds

if TYPE_CHECKING:
    from runner.planning.templating import Variables

ON_CONTROLLER: dict[str, Callable[[Plan, Step, RenderedItem], Done]] = {
    "assert": assertion.run,
    "fail": fail.run,
    "debug": debug.run,
    "vars": setvars.run,
}
GUARDED = ("run", "script")  # the actions `creates` and `removes` apply to
_JUDGED = (StepStatus.OK.value, StepStatus.CHANGED.value, StepStatus.FAILED.value)
# The names a step's conditions see besides the host's variables: its result's own fields.
RESULT_FIELDS = ("rc", "stdout", "stderr", "stdout_lines", "stderr_lines", "changed", "failed")


def run_on_controller(plan: Plan, step: Step, one: RenderedItem) -> Done:
    """Run a controller action for one host (one loop item)."""
    return ON_CONTROLLER[step.action](plan, step, one)


def guard_reason(
    plan: Plan,
    step: Step,
    one: RenderedItem,
    conn: Connection,
    stop: threading.Event,
) -> str | None:
    """Why a `run`/`script` step is not run on this host (`skipped, since X exists` for
    `creates`, `... does not exist` for `removes`), or None when it is to run. One small
    command asks the target, as the step would run (its `cwd`, its `sudo`)."""
    if step.action not in GUARDED or (step.creates is None and step.removes is None):
        return None
    templar = plan.templar
    creates = (
        None if step.creates is None else str(templar.render(step.creates, one.scope, step.where))
    )
    removes = (
        None if step.removes is None else str(templar.render(step.removes, one.scope, step.where))
    )
    found = _exist(conn, [p for p in (creates, removes) if p is not None], step, one, stop)
    if creates is not None and found[creates]:
        return f"skipped, since {creates} exists"
    if removes is not None and not found[removes]:
        return f"skipped, since {removes} does not exist"
    return None


def _exist(
    conn: Connection, paths: list[str], step: Step, one: RenderedItem, stop: threading.Event
) -> dict[str, bool]:
    """Whether each path exists on the target (a link counts, as `test -e` or `-L` says)."""
    tests = "; ".join(
        f"if test -e {q} || test -L {q}; then echo yes; else echo no; fi"
        for q in map(shlex.quote, paths)
    )
    output: list[bytes] = []

    def collect(stream: str, data: bytes) -> None:
        if stream == "stdout":
            output.append(data)

    result = conn.run(
        tests, on_output=collect, timeout=step.timeout, cwd=one.cwd, sudo=step.sudo, stop_event=stop
    )
    answers = b"".join(output).decode("utf-8", "replace").split()
    if result.interrupted or result.rc != 0 or len(answers) != len(paths):
        shown = " and ".join(paths)
        raise StepError(
            f"cannot check whether {shown} exists on the target (exit status {result.rc})"
        )
    return {path: answer == "yes" for path, answer in zip(paths, answers, strict=True)}


def apply_conditions(
    plan: Plan, step: Step, one: RenderedItem, status: str, result: dict[str, Any]
) -> tuple[str, str | None]:
    """The step's status once its `changed_when` and `failed_when` are applied to its
    `result` (as registered), and why it failed when `failed_when` made it fail. A step
    stopped, timed out or skipped is left as it is."""
    if step.changed_when is None and step.failed_when is None or status not in _JUDGED:
        return status, None
    changed, failed = _judged(plan, step, result, one.scope)
    if failed:
        why = None if step.failed_when is None else f"failed_when holds: {step.failed_when}"
        return StepStatus.FAILED.value, why
    return (StepStatus.CHANGED if changed else StepStatus.OK).value, None


def _judged(
    plan: Plan, step: Step, result: dict[str, Any], variables: Variables
) -> tuple[bool, bool]:
    """(changed, failed) of a step's `result` (as registered) once its `changed_when` and
    `failed_when` hold or not, as Ansible reads them: `changed_when` first, and
    `failed_when` sees the `changed` it decided. The expressions see the result under the
    step's `register` name, as `result`, and its fields by their own names (`rc`, `stdout`)."""
    changed, failed = bool(result.get("changed")), bool(result.get("failed"))
    if step.changed_when is not None:
        changed = holds(plan, step, step.changed_when, _result_scope(step, result, variables))
        result = {**result, "changed": changed}
    if step.failed_when is not None:
        failed = holds(plan, step, step.failed_when, _result_scope(step, result, variables))
    return changed, failed


def _result_scope(step: Step, result: dict[str, Any], variables: Variables) -> Variables:
    names = {key: result.get(key) for key in RESULT_FIELDS}
    names["result"] = result
    if step.register:
        names[step.register] = result
    return variables.child(names)
