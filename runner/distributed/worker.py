"""`runner worker`: a Celery worker that runs child jobs sent by `runner run` on any machine.

Each task (`runner.distributed.app.TASK`) carries a `BackgroundTask` as JSON. The worker
claims the child in the store (NotStarted to Running, once), plans its job again from the
request (the playbook and inventory at the same paths as on the controller, checked by
the playbook's digest), runs it as a thread job runs, and writes its steps, output and
events into the store as they happen. It honours a stop asked from any machine, stops an
attached child whose controller's heartbeat lapsed, and beats its own heartbeat so that
the controller can tell a lost worker.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.distributed.app import TASK, make_app
from runner.distributed.owners import Heartbeat, Identity, silent_for
from runner.errors import RunnerError
from runner.execution.children import InProcessChild, run_reporting
from runner.execution.context import BackgroundTask, ChildTask, RunContext, remember
from runner.execution.executor import RunOptions
from runner.execution.relay import JsonEvents
from runner.execution.sessions import SessionPool
from runner.execution.sinks import FileWriter, StoreWriter
from runner.execution.steps import ChildReport, Control
from runner.jobs.states import TERMINAL, JobState
from runner.jobs.store import STOP_FAILS, JobStore
from runner.planning.request import PlanRequest, replan
from runner.settings import heartbeat_timeout, known_hosts_path

if TYPE_CHECKING:
    from runner.planning.planner import JobPlan, Plan

POLL_S = 0.2
CONTROLLER_GONE = "stopped: the runner that started it is gone"
log = logging.getLogger("runner.worker")


@dataclass
class Worker:
    """What every task of this worker process shares: one store writer for all its
    children's output, steps and events (a few transactions for many children, and one
    connection), and one watch over their stop requests and controllers."""

    store: JobStore
    identity: Identity
    heartbeat: Heartbeat
    writer: StoreWriter
    watch: Watch


_WORKER: Worker | None = None


def start(store: JobStore, name: str | None, queues: tuple[str, ...] = ()) -> Worker:
    """This process's worker identity, beating in `store` from now on."""
    global _WORKER
    identity = Identity.new("worker", name)
    heartbeat = Heartbeat(store, identity, queues)
    _WORKER = Worker(store, identity, heartbeat, StoreWriter(store), Watch(store))
    return _WORKER


class Watch(threading.Thread):
    """Stops each running child when a stop is asked from any machine, or when its
    controller is gone (an attached child ends with its runner, as on one machine):
    one query a poll for all of them, and a look at each controller's heartbeat a second."""

    def __init__(self, store: JobStore) -> None:
        super().__init__(name="watch", daemon=True)
        self.store = store
        self._children: dict[int, tuple[BackgroundTask, Control]] = {}
        self._silent: dict[str, tuple[float, float]] = {}  # controller: (looked at, silent)
        self._lock = threading.Lock()
        self.start()

    def add(self, task: BackgroundTask, control: Control) -> None:
        with self._lock:
            self._children[task.child] = (task, control)

    def remove(self, child: int) -> None:
        with self._lock:
            self._children.pop(child, None)

    def run(self) -> None:
        checked = 0.0
        while True:
            time.sleep(POLL_S)
            with self._lock:
                children = dict(self._children)
            if not children:
                continue
            try:
                self._stops(children)
                if time.monotonic() - checked >= 1.0:
                    checked = time.monotonic()
                    self._controllers(children)
            except Exception:  # noqa: BLE001 - the store away for a moment: ask again
                continue

    def _stops(self, children: dict[int, tuple[BackgroundTask, Control]]) -> None:
        for child, (asked, reason) in self.store.stop_requests(list(children)).items():
            control = children[child][1]
            control.stop(reason or "stopped by 'runner job stop'", asked == STOP_FAILS)

    def _controllers(self, children: dict[int, tuple[BackgroundTask, Control]]) -> None:
        silent: dict[str, tuple[float, float]] = {}
        timeout = heartbeat_timeout()
        for task, control in children.values():
            if task.detach or not task.controller:
                continue
            if task.controller not in silent:
                silent[task.controller] = (time.monotonic(), _silence(self.store, task.controller))
            if silent[task.controller][1] > timeout:
                control.stop(CONTROLLER_GONE)
        with self._lock:
            self._silent = silent

    def controller_gone(self, task: BackgroundTask) -> bool:
        """`_controller_gone`, without asking the store when the last look (about a second
        ago) proves the controller beating still: its silence grew by the time since at
        most. A child that ends asks this, and a fleet's children end together."""
        if task.detach or not task.controller:
            return False
        with self._lock:
            looked = self._silent.get(task.controller)
        if looked is not None and looked[1] + time.monotonic() - looked[0] <= heartbeat_timeout():
            return False
        return _controller_gone(self.store, task)


def run_task(payload: dict[str, Any]) -> str:
    """The task: run one child, unless it was stopped while queued or already taken."""
    worker = _WORKER
    if worker is None:
        raise RuntimeError("runner.child runs only in `runner worker`")
    try:
        task = BackgroundTask.from_json(payload)
        int(task.child), str(task.job), str(task.host)  # noqa: B018 - their types, checked
    except (TypeError, KeyError, ValueError, AttributeError):
        log.error("refused a malformed runner.child task (not sent by runner run)")
        return "refused"
    if worker.writer.error is not None:  # the store refused a batch for good: start afresh
        worker.writer = StoreWriter(worker.store)
    store, writer = worker.store, worker.writer
    prepared = _prepare(task)  # its connection opens while the claim commits
    claimed = store.claim_for_worker(task.child, worker.identity.id)
    gone = claimed and _controller_gone(store, task)
    if gone:  # its runner died while it was queued: no one follows it, it never runs
        store.finish(task.child, JobState.Stopped.value, CONTROLLER_GONE)
    if not claimed or gone:
        if not isinstance(prepared, ChildReport):
            prepared[2].close()
        return "skipped"
    control = Control()
    worker.watch.add(task, control)
    registered: dict[str, Any] = {}
    try:
        report = _run(task, prepared, store, writer, control, registered)
    except Exception as exc:  # noqa: BLE001 - told on the job, never lost
        reason = f"internal error on worker: {type(exc).__name__}: {exc}"
        report = ChildReport("Failed", reason, counts={"failed": 1})
    finally:
        worker.watch.remove(task.child)
    events = JsonEvents(functools.partial(writer.send_event, task.child))
    events.ending(report, registered)
    error = writer.flush()  # the child's end only once its output is in the store
    if error is not None or task.detach or worker.watch.controller_gone(task):
        _record_end(store, task.child, report, error)
    return report.state


Prepared = tuple["Plan", "JobPlan", SessionPool]


def _prepare(task: BackgroundTask) -> Prepared | ChildReport:
    """The child's plan and job, and its connection already opening; or why it fails."""
    try:
        request = json.dumps(dataclasses.asdict(task.request), sort_keys=True)
        plan = _plan(request, task.controller)
        jp = plan.job(task.job)
    except RunnerError as error:
        return ChildReport("Failed", str(error), counts={"failed": 1})
    except KeyError:
        reason = f"job '{task.job}' is no longer in the plan"
        return ChildReport("Failed", reason, counts={"failed": 1})
    sessions = SessionPool(plan, RunOptions(known_hosts=known_hosts_path()))
    sessions.prefetch([jp], 1, task.host)
    return plan, jp, sessions


def _run(
    task: BackgroundTask,
    prepared: Prepared | ChildReport,
    store: JobStore,
    writer: StoreWriter,
    control: Control,
    registered: dict[str, Any],
) -> ChildReport:
    if isinstance(prepared, ChildReport):
        return prepared
    plan, jp, sessions = prepared
    remember(plan, registered, task.registered)
    events = JsonEvents(functools.partial(writer.send_event, task.child))
    context = RunContext(
        plan,
        store,
        writer,
        FileWriter(Path(task.cwd) if task.cwd else None),
        sessions,
        {task.host: registered},
        events,
        task.check,
        task.diff,
    )
    try:
        child = ChildTask(jp, task.host, task.child, control)
        return run_reporting(InProcessChild(), context, child)
    finally:
        context.files.close()
        context.sessions.close()


_PLAN_LOCK = threading.Lock()


def _plan(request: str, run: str | None) -> Plan:
    """The plan of a request, made once per run (`run`: its controller's identity) in a
    worker process for all its children (the first children of a run wait for it rather
    than all planning it at once). Never shared with a later run of the same request: the
    inventory and the files the playbook includes may have changed in between."""
    with _PLAN_LOCK:
        return _cached_plan(request, run)


@functools.lru_cache(maxsize=8)
def _cached_plan(request: str, run: str | None) -> Plan:
    return replan(PlanRequest.from_json(json.loads(request)))


def _controller_gone(store: JobStore, task: BackgroundTask) -> bool:
    """An attached child's controller silent past the heartbeat timeout."""
    if task.detach or not task.controller:
        return False
    return _silence(store, task.controller) > heartbeat_timeout()


def _silence(store: JobStore, controller: str) -> float:
    """Seconds since `controller` last beat (forever for an unknown one)."""
    return silent_for(store, controller)[1]


def _record_end(store: JobStore, child: int, report: ChildReport, error: Any) -> None:
    """The worker records the child's end itself: detached, or nobody else will."""
    state, reason = report.state, report.reason
    if error is not None:
        state, reason = JobState.Failed.value, f"the worker could not store the output: {error}"
    if JobState(store.get(child).state) in TERMINAL:
        return
    store.finish(child, state, reason)


def _hear_revokes_only(app: Any) -> None:
    """Listen to the one remote control command runner sends, `revoke` (a child stopped
    while its task is queued: discarded when it comes up, no slot spent on it); every
    other command (shutdown, pool changes...) is unknown to this worker."""
    from celery.signals import task_revoked
    from celery.worker.control import Panel

    for command in list(Panel.data):
        if command != "revoke":
            del Panel.data[command]
    app.conf.worker_enable_remote_control = True
    task_revoked.connect(_log_revoked, weak=False)


def _log_revoked(request: Any = None, **_: Any) -> None:
    """The worker's log line for a revoked task it discarded unrun."""
    args = getattr(request, "args", None) or [{}]
    child = args[0].get("child") if isinstance(args[0], dict) else None
    log.info("job %s: its task was revoked (stopped while queued): discarded, not run", child)


def main(
    store: JobStore,
    broker: str,
    concurrency: int,
    queues: list[str],
    name: str | None,
    loglevel: str = "WARNING",
) -> int:
    """Run Celery's worker for runner's task until it is told to stop."""
    worker = start(store, name, tuple(queues))
    app = make_app(broker)
    app.task(name=TASK, acks_late=True, ignore_result=True)(run_task)
    app.finalize()
    for name in list(app.tasks):  # Celery's built-in tasks too: a worker runs only runner's
        if name != TASK:
            app.tasks.unregister(name)
    _hear_revokes_only(app)
    argv = [
        "worker",
        "--pool=threads",
        f"--concurrency={concurrency}",
        f"--queues={','.join(queues)}",
        f"--hostname={worker.identity.name}@%h",
        f"--loglevel={loglevel}",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    try:
        app.worker_main(argv)
    finally:
        worker.writer.close()
        worker.heartbeat.stop()
    return 0
