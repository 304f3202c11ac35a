"""The executor's side of children kept on their targets (detached, or results kept there).

The child's steps are rendered now (`runner.planning.render`), with the variables known at
start, into one script (`runner.execution.ontarget.jobdir`) that runs on the target in its
own process group. A detached child is left running; an attached one is followed until it
ends, and stopped with the run. While it is followed, each step is shown as its exit
status appears in the job directory (`StepShow`): its command as it starts, then the end
of its output and its line, counted for the recap as an attached step is.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

from runner.execution.ontarget import jobdir as remote
from runner.execution.steps import ChildReport, Control, StepOutcome, Tail
from runner.jobs.states import JobState, StepStatus
from runner.planning.model import Step
from runner.planning.planner import JobPlan
from runner.planning.render import HostScope, RenderedStep, refuse_target_secret, render_step

if TYPE_CHECKING:
    from runner.connections.base import Connection
    from runner.execution.context import ChildTask, RunContext
    from runner.jobs.store import JobStore

FOLLOW_SECONDS = 0.25
SHOWN_OUTPUT = 65536  # the bytes of each stream of a step shown when it ends: its end


def script_steps(
    executor: Any,
    jp: JobPlan,
    host: str,
    child: int,
    rendered: dict[int, RenderedStep] | None = None,
) -> list[remote.ScriptStep]:
    """Every step rendered for `host` (see runner.planning.render), each also kept in
    `rendered` when given; a step whose `when` is false for every item now is recorded
    skipped."""
    scope = HostScope(executor.plan, jp.job, host, executor.registered.setdefault(host, {}))
    steps = []
    for step in jp.steps:
        shown = render_step(scope, step)
        refuse_target_secret(scope, shown)
        if rendered is not None:
            rendered[step.index] = shown
        commands = tuple(
            remote.ScriptCommand(str(one.args), one.env, one.cwd) for one in shown.items if one.when
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
    rendered: dict[int, RenderedStep] = {}
    steps = script_steps(context, jp, host, child, rendered)
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
        show = StepShow(context, task, rendered, conn, directory)
        return _follow(context.store, child, conn, directory, pgid, task.control, show)
    finally:
        context.sessions.release(jp, host, conn)


def _follow(
    store: JobStore,
    child: int,
    conn: Connection,
    directory: str,
    pgid: int,
    control: Control,
    show: StepShow,
) -> ChildReport:
    """Poll the job directory until the script ends, showing each step as it ends; stop
    it if the run is stopped."""
    from runner.execution.ontarget.reconnect import refresh_child

    while True:
        if control.event.wait(FOLLOW_SECONDS):
            remote.mark_stopped(conn, directory, pgid)
            status = refresh_child(store, store.get(child), conn, claim=False, settle=False)
            show.update(status)
            show.stopped(control.fail)
            return ChildReport(
                "Failed" if control.fail else "Stopped", control.reason, False, show.counts
            )
        status = refresh_child(store, store.get(child), conn, claim=False, settle=False)
        show.update(status)
        if status.done is not None or not status.alive:
            if status.state == JobState.Failed.value and not show.counts[StepStatus.FAILED.value]:
                show.counts[StepStatus.FAILED.value] += 1  # it died between its steps
            return ChildReport(status.state, status.reason, False, show.counts)


class StepShow:
    """An attached kept child's steps told to the run's events, in order, as the target
    records their exit statuses: `command` as a step starts; at its end the last
    SHOWN_OUTPUT bytes of each of its streams (one read each, only when it wrote any),
    then `step_done`. A loop is one step on the target: one line, no line per item."""

    def __init__(
        self,
        context: RunContext,
        task: ChildTask,
        rendered: dict[int, RenderedStep],
        conn: Any,
        directory: str,
    ) -> None:
        self.jp, self.host, self.conn, self.directory = task.jp, task.host, conn, directory
        self.events, self.redact, self.rendered = context.events, context.plan.redactor, rendered
        self.pending = list(task.jp.steps)
        statuses = (StepStatus.OK, StepStatus.CHANGED, StepStatus.FAILED, StepStatus.SKIPPED)
        self.counts = {s.value: 0 for s in statuses}
        self._began = 0.0
        self._start()

    def update(self, status: remote.RemoteStatus) -> None:
        """Show every step that ended since the last update (skipped ones too)."""
        ended = _exit_statuses(status)
        while self.pending:
            step = self.pending[0]
            if self._runs(step) and step.index not in ended:
                return
            outcome = self._outcome(step, ended.get(step.index), status)
            self._done(step, outcome)
            if outcome.failed and not step.ignore_errors:
                self.pending.clear()

    def stopped(self, fail: bool) -> None:
        """The run stopped the child: the step it was in is shown stopped, and nothing
        after it; a job timeout counts the child failed."""
        while self.pending and not self._runs(self.pending[0]):
            self._done(self.pending[0], StepOutcome(StepStatus.SKIPPED.value))
        if self.pending:
            self._done(self.pending[0], StepOutcome(StepStatus.STOPPED.value))
            self.pending.clear()
        if fail:
            self.counts[StepStatus.FAILED.value] += 1

    def _runs(self, step: Step) -> bool:
        return any(one.when for one in self.rendered[step.index].items)

    def _start(self) -> None:
        """The next step begins: its commands, as an attached step's are shown."""
        self._began = time.monotonic()
        if not self.pending or self.events is None:
            return
        step = self.pending[0]
        for one in self.rendered[step.index].items:
            if one.when:
                self.events.command(self.jp, self.host, step, self.redact(one.command))

    def _outcome(self, step: Step, rc: int | None, status: remote.RemoteStatus) -> StepOutcome:
        if not self._runs(step):
            return StepOutcome(StepStatus.SKIPPED.value)
        stderr = self._show_output(step, status)
        ok = rc == 0
        outcome = StepOutcome(
            (StepStatus.CHANGED if ok else StepStatus.FAILED).value, rc, stderr_tail=stderr
        )
        no_space = [str(step.index), str(rc), remote.DONE_NO_SPACE]
        if (status.done or "").split()[1:] == no_space:
            outcome.error = status.reason
        return outcome

    def _show_output(self, step: Step, status: remote.RemoteStatus) -> list[str]:
        """Send the end of the step's output to the events; the last lines of its stderr."""
        tail = Tail()
        for stream in ("stdout", "stderr"):
            size = status.sizes.get((step.index, stream), 0)
            if not size or step.no_log:
                continue
            start = max(0, size - SHOWN_OUTPUT)
            chunks: list[bytes] = []
            remote.read(
                self.conn, self.directory, step.index, stream, start, size - start, chunks.append
            )
            text = self.redact(b"".join(chunks).decode("utf-8", errors="replace"))
            if start:
                text = f"[{start} bytes before not shown]\n" + text.partition("\n")[2]
            if stream == "stderr":
                tail.add(text)
            if self.events is not None:
                self.events.output(self.jp, self.host, stream, text)
        return tail.lines()

    def _done(self, step: Step, outcome: StepOutcome) -> None:
        self.pending.pop(0)
        shown = dataclasses.replace(step, name=self.rendered[step.index].label)
        if self.events is not None:
            self.events.step_done(
                self.jp, self.host, shown, outcome, time.monotonic() - self._began
            )
        key = outcome.status
        if outcome.failed:
            key = (StepStatus.OK if step.ignore_errors else StepStatus.FAILED).value
        if key in self.counts:
            self.counts[key] += 1
        self._start()


def _exit_statuses(status: remote.RemoteStatus) -> dict[int, int]:
    """Each ended step's exit status; a step ended by its timeout writes none, its
    status is in `done` (`Failed N 124`)."""
    ended = dict(status.rcs)
    parts = (status.done or "").split()
    if parts[:1] == ["Failed"] and len(parts) >= 3 and parts[1].isdigit():
        ended.setdefault(int(parts[1]), int(parts[2]))
    return ended
