"""One interface for every kind of child job: how the executor hands a child to what runs it.

A `ChildRunner` runs one child (one job on one host) given a `RunContext`, what the run
shares (the plan, the store and its writer, connections, registered values, check/diff,
the events sink), and a `ChildTask`, the child itself. It returns a `ChildReport`; it
never holds the executor. Three kinds:

- `InProcessChild`: `remote` and `thread` jobs, whose steps run in this process (over
  SSH, or on the controller);
- `BackgroundChild`: `background` jobs, each child in its own OS process on the
  controller (`runner.execution.background`), which is handed a `BackgroundTask` and runs the child
  with an `InProcessChild` of its own, exactly as a thread job runs;
- `KeptChild`: children kept on their targets (`detach`, `results.to: remote`), whose
  steps run there as one script (`runner.execution.kept`, `runner.execution.ontarget.jobdir`).

This is also the seam a dispatcher running children elsewhere plugs into: a
`BackgroundTask` is plain data (JSON) that says everything a worker needs.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from runner.errors import ConnectError, RunnerError
from runner.execution.context import ChildTask, RunContext
from runner.execution.sinks import FileWriter
from runner.execution.steps import ChildReport, StepRunner
from runner.planning.guard import confine_located
from runner.planning.planner import JobPlan, Plan

if TYPE_CHECKING:
    from runner.jobs.store import JobStore


class ChildRunner(Protocol):
    """Runs one child to its end (or, detached, to its start) and says how it went."""

    def run(self, context: RunContext, task: ChildTask) -> ChildReport: ...

    def refresh(self, store: JobStore, parent: int) -> None:
        """Bring the store's record of `parent`'s detached children up to date, for a
        job that needs them to end (they run on without this process)."""
        ...


class InProcessChild:
    """`remote` and `thread` children (and a background worker's child): a StepRunner over
    the host's connection, or the controller's for a thread or background job."""

    def run(self, context: RunContext, task: ChildTask) -> ChildReport:
        jp, host, child = task.jp, task.host, task.child
        sink = open_sink(context.plan, jp, host, child, context.writer, context.files)
        local = context.sessions.local(host)
        conn = context.sessions.acquire(jp, host) if jp.job.type == "remote" else local
        runtime = functools.partial(context.writer.set_runtime, child)
        try:
            runner = StepRunner(
                context.plan,
                jp,
                host,
                child,
                conn,
                local,
                sink,
                context.writer,
                task.control,
                context.registered.setdefault(host, {}),
                context.events,
                context.check,
                diff=context.diff,
                runtime=runtime if context.record_groups else None,
                once=context.once,
                delegate=context.sessions.delegate,
            )
            return runner.run_all()
        finally:
            if conn is not local:
                context.sessions.release(jp, host, conn)
            context.files.close_job(child)

    def refresh(self, store: JobStore, parent: int) -> None:
        """Never detached: its children end in this process."""


class BackgroundChild:
    """`background` children: a worker process on the controller per child."""

    def run(self, context: RunContext, task: ChildTask) -> ChildReport:
        from runner.execution.background import run_background_child

        return run_background_child(context, task)

    def refresh(self, store: JobStore, parent: int) -> None:
        """A detached worker records its child's end itself; one that died is settled."""
        store.reconcile()


class KeptChild:
    """Children kept on their targets: their output stays there until it is fetched, so
    nothing is opened for it here (no result file). In check mode nothing may start on the
    target: the child's steps are reported as an attached child's are."""

    def run(self, context: RunContext, task: ChildTask) -> ChildReport:
        if context.check:
            return InProcessChild().run(context, task)
        from runner.execution.kept import run_kept_child

        return run_kept_child(context, task)

    def refresh(self, store: JobStore, parent: int) -> None:
        """Read each child's state in its job directory on its target."""
        from runner.execution.ontarget.reconnect import refresh

        refresh(store, parent, claim=False)


def run_reporting(runner: ChildRunner, context: RunContext, task: ChildTask) -> ChildReport:
    """`runner.run`, with what it raised as the child's end: a host out of reach is
    unreachable, any other error failed (the recap counts it), a bug an internal error,
    never lost."""
    try:
        return runner.run(context, task)
    except ConnectError as exc:
        if task.control.stopped and not task.control.fail:  # a stop while it connected
            return ChildReport("Stopped", task.control.reason or "stopped")
        return ChildReport("Failed", f"unreachable: {exc.reason}", unreachable=True)
    except (RunnerError, OSError) as exc:
        return ChildReport("Failed", str(exc), counts={"failed": 1})
    except Exception as exc:  # noqa: BLE001 - reported on the job, never lost
        reason = f"internal error: {type(exc).__name__}: {exc}"
        return ChildReport("Failed", reason, counts={"failed": 1})


def child_runner(jp: JobPlan, context: RunContext | None = None) -> ChildRunner:
    """The runner for `jp`'s children: a worker's, when the run has a broker."""
    if context is not None and context.dispatcher is not None and not in_runner(jp):
        runner: ChildRunner = context.dispatcher.child_runner()
        return runner
    if jp.job.type == "background":
        return BackgroundChild()
    if jp.job.type == "remote" and kept_on_target(jp):
        return KeptChild()
    return InProcessChild()


def in_runner(jp: JobPlan) -> bool:
    """A job whose children are not sent to workers: kept on their targets (started by
    the runner), or with a `run_once` step (its hosts wait for each other in one process)."""
    return kept_on_target(jp) or any(step.run_once for step in jp.steps)


def kept_on_target(jp: JobPlan) -> bool:
    """A job whose children run on as scripts on their targets
    (see runner.execution.ontarget.jobdir)."""
    return jp.job.detach or jp.job.results.to == "remote"


def open_sink(
    plan: Plan, jp: JobPlan, host: str, child: int, writer: Any, files: FileWriter
) -> Any:
    """Where a child's output goes: the store's batched writer, or its own result file."""
    sink = writer.write
    if jp.job.results.to == "file":
        files.open(child, Path(render_results_path(plan, jp, host)))
        sink = files.write
    redact = plan.redactor
    if not redact:
        return sink

    def masked(job_id: int, host_: str, step: int, stream: str, data: str) -> None:
        sink(job_id, host_, step, stream, redact(data))

    return masked


def render_results_path(plan: Plan, jp: JobPlan, host: str) -> str:
    """A child's result file, confined to the directory the path's literal part names."""
    variables = plan.variables(host, jp.job)
    template = str(jp.job.results.path)
    rendered = str(plan.templar.render(template, variables, jp.job.where))
    return confine_located(template, rendered, "results.path", jp.job.where)
