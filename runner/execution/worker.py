"""A background child's worker process: it plans its job again from the task it is handed
and runs the child as a thread job runs, reporting to the runner on stdout.

Started by `runner.execution.background.worker_command`; the task (a
`runner.execution.context.BackgroundTask`) arrives as JSON on stdin. Events go back as
JSON lines (`pipe_events`), and last how the child ended and what it registered.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

from runner.errors import RunnerError
from runner.execution.children import InProcessChild
from runner.execution.context import BackgroundTask, ChildTask, RunContext, remember
from runner.execution.relay import JsonEvents
from runner.execution.sessions import SessionPool
from runner.execution.sinks import FileWriter, StoreWriter
from runner.execution.steps import ChildReport, Control
from runner.jobs.store import JobStore
from runner.planning import vault
from runner.planning.request import replan
from runner.signals import handle_signals

if TYPE_CHECKING:
    pass


def pipe_events(stream: Any) -> JsonEvents:
    """The worker's events as JSON lines on `stream` (its stdout, read by the runner)."""

    def emit(text: str) -> None:
        try:
            stream.write(text + "\n")
            stream.flush()
        except (BrokenPipeError, ValueError):
            pass  # the runner is gone: the worker is being ended too

    return JsonEvents(emit)


def _die_with_parent() -> None:
    """Linux: have the kernel send SIGTERM to this worker when the runner dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main() -> int:
    """The worker's side: plan again, run the child's steps as a thread job runs them, and
    report on stdout."""
    task = BackgroundTask.from_json(json.load(sys.stdin))
    if not task.detach:
        _die_with_parent()
        if os.getppid() != task.runner:  # gone before the death signal was armed
            return 1  # the runner is already gone
    control = Control()
    handle_signals([signal.SIGTERM], lambda _number: control.stop("stopped"))

    store = JobStore(task.store)
    vault.use_secrets([vault.VaultSecret.from_json(secret) for secret in task.vault])
    try:
        plan = replan(task.request)
        jp = plan.job(task.job)
    except RunnerError as error:  # it cannot run what its runner planned: say why
        return _refuse(task, store, str(error))
    except KeyError:
        return _refuse(task, store, f"job '{task.job}' is no longer in the plan")
    threading.Thread(
        target=_poll_stop,
        args=(store, task.child, control, None if task.detach else task.runner),
        daemon=True,
    ).start()
    registered: dict[str, Any] = {}
    remember(plan, registered, task.registered)
    context = RunContext(
        plan,
        store,
        StoreWriter(store),
        FileWriter(),
        SessionPool(plan, None),
        {task.host: registered},
        None if task.detach else pipe_events(sys.stdout),
        task.check,
        task.diff,
        record_groups=False,
    )
    try:
        report = InProcessChild().run(context, ChildTask(jp, task.host, task.child, control))
    finally:
        context.files.close()
        context.writer.close()
    if task.detach:
        store.finish(task.child, report.state, report.reason)
    pipe_events(sys.stdout).ending(report, registered)
    return 0


def _refuse(task: BackgroundTask, store: JobStore, reason: str) -> int:
    """End the child Failed with `reason` before any step ran, and tell the runner."""
    if task.detach:
        store.finish(task.child, "Failed", reason)
    pipe_events(sys.stdout).ending(ChildReport("Failed", reason), {})
    return 0


def _poll_stop(store: JobStore, child: int, control: Control, runner_pid: int | None) -> None:
    """Honour `runner job stop` on this child, whoever asks; an attached worker also
    stops when its runner is gone, should the death signal ever be missed."""
    while not control.event.wait(0.2):
        if store.stop_requested(child):
            control.stop("stopped by 'runner job stop'")
        elif runner_pid is not None and os.getppid() != runner_pid:
            control.stop("stopped: the runner that started it ended")


if __name__ == "__main__":
    raise SystemExit(main())
