"""The executor: turns a Plan into jobs in the store and runs them.

Every job of the plan becomes a parent job with one child per host. Jobs with no
`needs` between them run at the same time, each in its own thread; their children share
one pool of `forks` worker threads (hosts at once across the run), limited further by
the job's `throttle` and `serial` batches. Output streams to the store (or to files) as
it arrives. A stop, from this process (Ctrl-C, SIGTERM) or another (`runner job stop`),
ends the processes for real and leaves the jobs `Stopped`.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import JobStateError, StoreError
from runner.execution.children import (
    ChildRunner,
    child_runner,
    kept_on_target,
    render_results_path,
    run_reporting,
)
from runner.execution.context import ChildTask, RunContext
from runner.execution.sessions import SessionPool
from runner.execution.sinks import FileWriter, StoreWriter
from runner.execution.steps import ChildReport, Control
from runner.jobs.states import TERMINAL, JobState
from runner.planning.planner import JobPlan, Plan
from runner.planning.render import shown_command
from runner.planning.request import PlanRequest

if TYPE_CHECKING:
    from runner.execution.events import RunEvents
    from runner.jobs.store import JobStore

POLL_SECONDS = 0.2


@dataclass
class RunOptions:
    """How to run: concurrency, check mode, and what a background worker needs to replan."""

    forks: int = 5
    check: bool = False
    diff: bool = False  # show what put/template change on the target
    connect_timeout: float = 10.0
    known_hosts: Path | None = None
    request: PlanRequest | None = None  # what the plan was built from
    store: str | None = None  # where the store is, for a worker in another process


@dataclass
class ChildResult:
    """A finished child, for the recap and the JSON report."""

    job_id: int
    host: str
    state: str
    reason: str | None
    unreachable: bool
    counts: dict[str, int]


@dataclass
class JobResult:
    job_id: int
    name: str
    children: list[ChildResult] = field(default_factory=list)


@dataclass
class RunReport:
    """What a run did: every job and child, and whether it was interrupted."""

    jobs: list[JobResult]
    interrupted: bool = False
    store_error: StoreError | None = None  # the job store refused a write: the run stopped

    @property
    def any_unreachable(self) -> bool:
        return any(c.unreachable for j in self.jobs for c in j.children)

    @property
    def any_failed(self) -> bool:
        return any(c.state == "Failed" for j in self.jobs for c in j.children)


class Executor:
    """Runs one Plan. Create, call `run()`, read the RunReport."""

    def __init__(
        self,
        plan: Plan,
        store: JobStore,
        options: RunOptions,
        events: RunEvents,
        sessions: SessionPool | None = None,
    ) -> None:
        self.plan, self.store, self.options, self.events = plan, store, options, events
        self.writer = StoreWriter(store, on_error=self._store_failed)
        self.files = FileWriter()
        self.sessions = sessions or SessionPool(plan, options)
        self.stop_all = Control()
        self.pool = ThreadPoolExecutor(max_workers=max(1, options.forks), thread_name_prefix="host")
        self.registered: dict[str, dict[str, Any]] = {h: {} for h in plan.inventory.hosts}
        self.context = RunContext(
            plan,
            store,
            self.writer,
            self.files,
            self.sessions,
            self.registered,
            events,
            options.check,
            options.diff,
            options.request,
            options.store,
        )
        self._lock = threading.Lock()
        self.parent_ids: dict[str, int] = {}
        self.child_ids: dict[tuple[str, str], int] = {}
        self.controls: dict[int, Control] = {}
        self.results: dict[str, JobResult] = {}
        self._waiting_children: list[tuple[Control, Callable[[], None]]] = []  # _start_child
        self.finished: dict[str, threading.Event] = {}
        self.failed_hosts: dict[str, set[str]] = {}
        self._store_error: StoreError | None = None
        self._reported: set[int] = set()
        # A job stopped by another process (`runner job stop`, or settled by another
        # invocation) interrupts the run: it must not end as if all went well.
        self.stopped_outside = False

    # -- records ---------------------------------------------------------------------

    def _create_records(self) -> None:
        for jp in self.plan.jobs:
            job = jp.job
            first = jp.steps[0]
            command = shown_command(first, first.args)
            parent = self.store.create_job(
                job.name,
                job.type,
                command,
                ",".join(jp.hosts),
                detach=job.detach,
                results_to=job.results.to,
                results_path=job.results.path,
                playbook=os.path.abspath(self.plan.playbook.file),
            )
            self.parent_ids[job.name] = parent
            self.results[job.name] = JobResult(parent, job.name)
            self.finished[job.name] = threading.Event()
            self.failed_hosts[job.name] = set()
            job_control = Control(self.stop_all)
            self.controls[parent] = job_control
            places = [  # every type's child is located on its target, as its output is tagged
                (host, self._results_path(jp, host), self._child_spec(jp, host))
                for host in jp.hosts
            ]
            children = self.store.create_children(
                parent,
                job.name,
                job.type,
                command,
                places,
                detach=job.detach,
                results_to=job.results.to,
                playbook=os.path.abspath(self.plan.playbook.file),
            )
            for host, child in zip(jp.hosts, children, strict=True):
                self.child_ids[(job.name, host)] = child
                self.controls[child] = Control(job_control)
            if not jp.hosts:
                self.store.set_state(parent, JobState.Running)
                self.store.set_state(parent, JobState.Completed)

    def _child_spec(self, jp: JobPlan, host: str) -> dict[str, Any] | None:
        """What a later invocation needs to reach a child's host: to follow a child kept
        on its target, or to end a step's process group there should this runner die."""
        if jp.job.type != "remote":
            return None
        spec: dict[str, Any] = {"connection": self.sessions.spec(host, jp.session).to_json()}
        if kept_on_target(jp):
            spec["steps"] = {str(step.index): step.name for step in jp.steps}
        return spec

    def _results_path(self, jp: JobPlan, host: str) -> str | None:
        """`results.to: file`: the rendered per-host path, absolute."""
        if jp.job.results.to != "file":
            return None
        return str(Path(render_results_path(self.plan, jp, host)).resolve())

    # -- the run ---------------------------------------------------------------------

    def run(self) -> RunReport:
        self._create_records()
        threads = [
            threading.Thread(
                target=self._job_thread, args=(jp,), name=f"job-{jp.name}", daemon=True
            )
            for jp in self.plan.jobs
        ]
        for thread in threads:
            thread.start()
        interrupted = False
        try:
            while any(t.is_alive() for t in threads):
                self._poll_stop_requests()
                for thread in threads:
                    thread.join(POLL_SECONDS / max(1, len(threads)))
        except KeyboardInterrupt:
            interrupted = True
            self.stop("interrupted (Ctrl-C)")
            for thread in threads:
                thread.join()
        finally:
            self.pool.shutdown(wait=True)
            self.sessions.close()
            self.files.close()
            self._close_writer()
            self._leave_detached()
        interrupted = interrupted or (self.stop_all.stopped and not self.stop_all.fail)
        interrupted = interrupted or self.stopped_outside
        return RunReport(
            [self.results[jp.name] for jp in self.plan.jobs], interrupted, self._store_error
        )

    def _store_failed(self, error: BaseException) -> None:
        """The store refused a write: a job's output would have a hole, so the run stops
        and its jobs fail with the reason."""
        if self._store_error is None:
            self._store_error = StoreError.wrap(error, self.store.path)
        self.stop_all.stop(str(self._store_error), fail=True)

    def _close_writer(self) -> None:
        try:
            self.writer.close()
        except BaseException as error:  # noqa: BLE001 - kept in the report, told by the CLI
            self._store_failed(error)

    def _leave_detached(self) -> None:
        """Detached children still running go on without us: Disconnected until a later
        `runner job receive`, `wait` or `list --refresh` reconnects."""
        for jp in self.plan.jobs:
            if not jp.job.detach or jp.job.type != "remote":
                continue
            for host in jp.hosts:
                child = self.child_ids[(jp.name, host)]
                if JobState(self.store.get(child).state) == JobState.Running:
                    self.store.set_state(
                        child,
                        JobState.Disconnected,
                        f"detached: runs on {host} without the runner; "
                        f"'runner job receive {child}' reconnects",
                    )

    def stop(self, reason: str) -> None:
        """End every attached job of this run (SIGTERM, Ctrl-C)."""
        self.stop_all.stop(reason)
        self.sessions.cancel_pending()
        self._start_stopped_waiting()

    def _poll_stop_requests(self) -> None:
        """Honour `runner job stop` from another process: one cheap query per poll."""
        active = [jid for jid, control in self.controls.items() if not control.event.is_set()]
        if not active:
            return
        asked = self.store.stop_requested_among(active)
        for job_id in asked:
            self.stopped_outside = True
            self.controls[job_id].stop("stopped by 'runner job stop'")
        if asked:
            self._start_stopped_waiting()

    def _start_stopped_waiting(self) -> None:
        """Children stopped while their connection is still being opened ahead start now
        (see `_start_child`), and end Stopped without waiting for their handshake."""
        with self._lock:
            waiting = self._waiting_children
            self._waiting_children = [w for w in waiting if not w[0].stopped]
        for control, submit in waiting:
            if control.stopped:
                submit()

    # -- one job ---------------------------------------------------------------------

    def _job_thread(self, jp: JobPlan) -> None:
        name = jp.name
        parent = self.parent_ids[name]
        control = self.controls[parent]
        try:
            excluded = self._wait_for_needs(jp, control)
            if excluded is None:
                self._never_started(jp, control.reason or "not started: the run was stopped")
                return
            if not jp.hosts:
                return
            self.events.job_started(parent, jp)
            self._run_batches(jp, control, excluded)
            self.events.job_done(parent, jp, self.store.get(parent).state)
        except StoreError as exc:  # the store is out of reach: the run stops and says so
            self._store_failed(exc)
        except Exception as exc:  # noqa: BLE001 - a bug must not leave children Running
            try:
                self._never_started(jp, f"internal error: {type(exc).__name__}: {exc}", True)
            except StoreError as error:
                self._store_failed(error)
            self.events.error(f"job '{name}': internal error: {type(exc).__name__}: {exc}")
        finally:
            self.finished[name].set()

    def _wait_for_needs(self, jp: JobPlan, control: Control) -> set[str] | None:
        """Wait for the needed jobs; the hosts that failed there are left out of this one.
        None when the run stopped while waiting."""
        excluded: set[str] = set()
        for need in jp.job.needs:
            event = self.finished.get(need)
            if event is None:  # filtered out by tags or --start-at-job
                continue
            while not event.wait(POLL_SECONDS):
                if control.stopped:
                    return None
            needed = self.plan.job(need)
            if needed.job.detach and not self._follow_detached(needed, control):
                return None
            excluded |= self.failed_hosts[need]
        return None if control.stopped else excluded

    def _follow_detached(self, jp: JobPlan, control: Control) -> bool:
        """Wait for a detached job that another job needs, as its kind of child reads
        its state. False when the run stopped first."""
        parent = self.parent_ids[jp.name]
        while not control.event.wait(POLL_SECONDS * 2):
            child_runner(jp, self.context).refresh(self.store, parent)
            children = self.store.children(parent)
            if all(JobState(c.state) in TERMINAL | {JobState.Disconnected} for c in children):
                with self._lock:
                    self.failed_hosts[jp.name] |= {
                        c.location for c in children if c.state != JobState.Completed
                    }
                return True
        return False

    def _batches(self, jp: JobPlan) -> list[list[str]]:
        hosts = list(jp.hosts)
        serial = jp.job.serial
        if not serial:
            return [hosts]
        sizes = serial if isinstance(serial, list) else [serial]
        batches, i, k = [], 0, 0
        while i < len(hosts):
            size = _batch_size(sizes[min(k, len(sizes) - 1)], len(hosts))
            batches.append(hosts[i : i + size])
            i, k = i + size, k + 1
        return batches

    def _run_batches(self, jp: JobPlan, control: Control, excluded: set[str]) -> None:
        throttle = threading.BoundedSemaphore(jp.job.throttle or len(jp.hosts) or 1)
        batches = self._batches(jp)
        for number, batch in enumerate(batches):
            futures = []
            self.context.once.batch(jp.name, [h for h in batch if h not in excluded])
            for host in batch:
                if host in excluded:
                    self._skip_child(jp, host, "not run: the host failed in a needed job")
                    continue
                while not throttle.acquire(timeout=POLL_SECONDS):
                    pass
                future = self._start_child(jp, host)
                future.add_done_callback(lambda _f: throttle.release())
                futures.append(future)
            for future in futures:
                future.result()
            reason = self._batch_verdict(jp, batch)
            if reason:
                control.stop(reason, fail=True)
                for rest in batches[number + 1 :]:
                    for host in rest:
                        self._skip_child(jp, host, reason)
                return

    def _start_child(self, jp: JobPlan, host: str) -> Future[None]:
        """Run the child on a host thread; if its connection is still being opened ahead,
        only once it is open (or failed), so that a 500-host run does not hold 500 host
        threads waiting on handshakes (their memory, and their turns at the GIL). A stop
        of the run starts it at once: stopped, it does not wait for its handshake."""
        opening = self.sessions.opening(jp, host)
        if opening is None or opening.done():
            return self.pool.submit(self._child, jp, host)
        ran: Future[None] = Future()
        once = threading.Lock()

        def submit(_opened: object = None) -> None:
            if not once.acquire(blocking=False):
                return  # started already (the run's stop, then the handshake's end)
            try:
                inner = self.pool.submit(self._child, jp, host)
            except RuntimeError as error:  # the pool was shut down meanwhile
                ran.set_exception(error)
                return
            inner.add_done_callback(lambda f: _pass_on(f, ran))

        control = self.controls[self.child_ids[(jp.name, host)]]
        with self._lock:
            self._waiting_children.append((control, submit))
        opening.add_done_callback(submit)
        if control.stopped:  # stopped before it was started: no handshake to wait for
            submit()
        return ran

    def _batch_verdict(self, jp: JobPlan, batch: list[str]) -> str | None:
        failed = [h for h in batch if h in self.failed_hosts[jp.name]]
        if not failed:
            return None
        if jp.job.any_errors_fatal:
            return f"any_errors_fatal: {failed[0]} failed"
        limit = jp.job.max_fail_percentage
        if limit is not None and 100.0 * len(failed) / len(batch) > limit:
            return f"max_fail_percentage {limit:g} exceeded ({len(failed)}/{len(batch)} failed)"
        return None

    def _never_started(self, jp: JobPlan, reason: str, failed: bool = False) -> None:
        for host in jp.hosts:
            child = self.child_ids[(jp.name, host)]
            record = self.store.get(child)
            if JobState(record.state) in TERMINAL:
                continue
            self._finish(jp, host, ChildReport("Failed" if failed else "Stopped", reason))

    def _skip_child(self, jp: JobPlan, host: str, reason: str) -> None:
        self._finish(jp, host, ChildReport("Stopped", reason))

    # -- one child -------------------------------------------------------------------

    def _child(self, jp: JobPlan, host: str) -> None:
        child = self.child_ids[(jp.name, host)]
        control = self.controls[child]
        if control.stopped:
            self._finish(jp, host, ChildReport("Stopped", control.reason or "stopped"))
            return
        runner = child_runner(jp, self.context)
        try:
            if not getattr(runner, "claimed_by_worker", False):  # a worker claims its own
                self.store.set_state(child, JobState.Running)
        except JobStateError:
            self._finish(jp, host, ChildReport("Stopped", "stopped before it started"))
            return
        self.events.host_started(jp, host)
        timer = None
        if jp.job.timeout:
            reason = f"job timeout: still running after {jp.job.timeout:g} s"
            timer = threading.Timer(jp.job.timeout, control.stop, (reason, True))
            timer.daemon = True
            timer.start()
        try:
            report = self._attempts(runner, ChildTask(jp, host, child, control))
        finally:
            if timer is not None:
                timer.cancel()
        self._finish(jp, host, report)

    def _attempts(self, runner: ChildRunner, task: ChildTask) -> ChildReport:
        """Run the child; while it ends without a step's own failure (its host out of
        reach, its worker lost) and its job's `retries` allow, run it again from its
        first step. A retried child's reason says which attempt it ended on."""
        total, attempt = 1 + task.jp.job.retries, 1
        while True:
            report = run_reporting(runner, self.context, task)
            if attempt == total or not (report.unreachable or report.lost):
                break
            if task.control.stopped:
                break
            note = f"retrying {task.host}: {report.reason} (attempt {attempt + 1} of {total})"
            note = self.plan.redactor(note)
            if not self._begin_retry(runner, task, note):
                break
            self.events.warning(note)
            attempt += 1
        if attempt > 1:
            ended = f": {report.reason}" if report.reason else ""
            report.reason = f"attempt {attempt} of {total}{ended}"
        return report

    def _begin_retry(self, runner: ChildRunner, task: ChildTask, note: str) -> bool:
        """Ready the child for another attempt: its output so far stored first, a failure
        to reach its host forgotten, its record back to Running (or NotStarted, for a
        worker to claim). False when it was stopped or settled meanwhile."""
        if self.writer.flush() is not None:
            return False
        self.sessions.forget_failure(task.jp, task.host)
        redispatch = bool(getattr(runner, "claimed_by_worker", False))
        try:
            return self.store.begin_retry(task.child, note, redispatch)
        except StoreError as error:
            self._store_failed(error)
            return False

    def _finish(self, jp: JobPlan, host: str, report: ChildReport) -> None:
        child = self.child_ids[(jp.name, host)]
        with self._lock:
            if child in self._reported:
                return
            self._reported.add(child)
        if self.writer.flush() is not None:  # terminal only once its output is stored
            report = ChildReport("Failed", str(self._store_error), counts=report.counts)
        report.reason = self.plan.redactor(report.reason)
        stored = self.store.get(child)
        if JobState(stored.state) in TERMINAL:  # settled by another invocation meanwhile
            self.stopped_outside = True
            state, report.reason = stored.state.value, stored.reason
        elif report.state == JobState.Running.value:  # detached: it goes on without us
            state = report.state
        else:
            state = self._record_end(child, report)
            if state == JobState.Stopped.value != report.state:  # a stop won the race
                self.stopped_outside = True
        if state == JobState.Stopped.value and self.store.stop_requested_among([child]):
            # `runner job stop` ended it before this run's poll saw the request (a worker
            # can report its child Stopped first): the run was still stopped from outside.
            self.stopped_outside = True
        self.context.once.ended(jp.name, host)  # its batch's run_once steps go on without it
        if state not in (JobState.Completed.value, JobState.Running.value):
            with self._lock:
                self.failed_hosts[jp.name].add(host)
        result = ChildResult(child, host, state, report.reason, report.unreachable, report.counts)
        with self._lock:
            self.results[jp.name].children.append(result)
        self.events.host_done(jp, host, result)

    def _record_end(self, child: int, report: ChildReport) -> str:
        """`store.finish`; when the store refuses even that, the run stops and the child's
        end is only in the report (the next runner settles its row)."""
        try:
            return self.store.finish(child, JobState(report.state), report.reason).value
        except StoreError as error:
            self._store_failed(error)
            return report.state


def _batch_size(size: Any, total: int) -> int:
    """A `serial` entry as a number of hosts: an int, or a percentage of the hosts."""
    if isinstance(size, str) and size.strip().endswith("%"):
        return max(1, math.floor(total * float(size.strip()[:-1]) / 100.0))
    return max(1, int(size))


def wait_for_terminal(store: JobStore, job_id: int, timeout: float) -> bool:
    """Poll the store until `job_id` is finished or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if JobState(store.get(job_id).state) in TERMINAL:
            return True
        time.sleep(POLL_SECONDS / 2)
    return False


def _pass_on(done: Future[None], to: Future[None]) -> None:
    """Give `to` the outcome of `done`."""
    error = done.exception()
    if error is not None:
        to.set_exception(error)
    else:
        to.set_result(None)
