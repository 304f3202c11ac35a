"""The executor's side of children kept on their targets (detached, or results kept there).

The child's steps are rendered now (`runner.planning.render`), with the variables known at
start, into one script (`runner.execution.ontarget.jobdir`) that runs on the target in its own
process group. A detached child is left running; an attached one is followed until it ends,
and stopped with the run.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from runner.execution.ontarget import jobdir as remote
from runner.execution.steps import ChildReport, Control
from runner.jobs.states import JobState, StepStatus
from runner.planning.planner import JobPlan
from runner.planning.render import HostScope, render_step

if TYPE_CHECKING:
    from runner.connections.base import Connection
    from runner.execution.context import ChildTask, RunContext
    from runner.jobs.store import JobStore

FOLLOW_SECONDS = 0.25


def script_steps(executor: Any, jp: JobPlan, host: str, child: int) -> list[remote.ScriptStep]:
    """Every step rendered for `host` (see runner.planning.render); a step whose `when` is false
    for every item now is recorded skipped."""
    scope = HostScope(executor.plan, jp.job, host, executor.registered.setdefault(host, {}))
    steps = []
    for step in jp.steps:
        commands = tuple(
            remote.ScriptCommand(str(one.args), one.env, one.cwd)
            for one in render_step(scope, step).items
            if one.when
        )
        if not commands:
            now = time.time()
            executor.store.record_step(
                child, step.index, step.name, None, StepStatus.SKIPPED.value, now, now
            )
            continue
        steps.append(
            remote.ScriptStep(
                index=step.index,
                commands=commands,
                sudo=step.sudo,
                timeout=step.timeout,
                ignore_errors=step.ignore_errors,
                no_log=step.no_log,
            )
        )
    return steps


def run_kept_child(context: RunContext, task: ChildTask) -> ChildReport:
    """Start the child's script on its target; follow it unless the job is detached."""
    jp, host, child = task.jp, task.host, task.child
    steps = script_steps(context, jp, host, child)
    conn = context.sessions.acquire(jp, host)
    try:
        root = context.plan.inventory.host_vars(host).get("runner_job_dir")
        directory = remote.new_directory(child, root)
        context.store.set_runtime(child, remote_dir=directory)
        started = time.time()
        pgid = remote.launch(conn, directory, remote.build_script(directory, steps))
        context.store.set_runtime(child, remote_pgid=pgid)
        for step in steps:
            name = next(s.name for s in jp.steps if s.index == step.index)
            context.store.record_step(
                child, step.index, name, None, StepStatus.RUNNING.value, started, None
            )
        if jp.job.detach:
            return ChildReport(JobState.Running.value, f"detached: job directory {directory}")
        return _follow(context.store, child, conn, directory, pgid, task.control)
    finally:
        context.sessions.release(jp, host, conn)


def _follow(
    store: JobStore, child: int, conn: Connection, directory: str, pgid: int, control: Control
) -> ChildReport:
    """Poll the job directory until the script ends; stop it if the run is stopped."""
    from runner.execution.ontarget.reconnect import refresh_child

    while True:
        if control.event.wait(FOLLOW_SECONDS):
            remote.mark_stopped(conn, directory, pgid)
            refresh_child(store, store.get(child), conn, claim=False, settle=False)
            return ChildReport("Failed" if control.fail else "Stopped", control.reason)
        status = refresh_child(store, store.get(child), conn, claim=False, settle=False)
        if status.done is not None or not status.alive:
            return ChildReport(status.state, status.reason)
