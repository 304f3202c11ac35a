"""The controller's side: children sent to workers through the broker, followed in the store.

A `Dispatcher` belongs to one run: it keeps the run's heartbeat (its workers stop its
attached children when it lapses), sends each child as a task, and one thread reads the
events workers write into the store for all the run's children, handing each to the
child that waits for it. `DispatchedChild` is the `ChildRunner` of a child on a worker:
it relays the worker's step events to the run's console as if the steps ran here, and
returns how the child ended; the executor records it, as for any child.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from runner.distributed.app import (
    DEFAULT_QUEUE,
    TASK,
    BrokerError,
    check_broker,
    make_app,
    revoke,
    unreachable,
)
from runner.distributed.owners import Heartbeat, Identity
from runner.errors import StoreError
from runner.execution.context import BackgroundTask, ChildTask, RunContext, remember
from runner.execution.relay import relay, report_of
from runner.execution.steps import ChildReport
from runner.jobs.states import TERMINAL, JobState
from runner.planning.planner import queue_for
from runner.settings import heartbeat_timeout

if TYPE_CHECKING:
    from runner.jobs.store import JobStore

POLL_S = 0.1
CHECK_S = 1.0  # how often a waiting child looks at its record and its worker's heartbeat
STOP_GRACE_S = 10.0  # how long a stopped child waits for its worker to say it ended


def unserved_limit() -> float:
    """How long a child may wait unclaimed while no live worker takes its queue before
    it ends Failed: two heartbeat timeouts, time for a worker being restarted to beat."""
    return 2 * heartbeat_timeout()


class Dispatcher:
    """One run's link to its workers (see the module's docstring)."""

    def __init__(self, store: JobStore, broker: str) -> None:
        self.store = store
        self.broker = broker
        self.app = make_app(broker)
        check_broker(self.app, broker)
        self._broker_lost: BrokerError | None = None  # given up on: later sends fail at once
        self.identity = Identity.new("runner")
        self.heartbeat = Heartbeat(store, self.identity)
        self._inboxes: dict[int, queue.Queue[dict[str, Any]]] = {}
        self._queue_of: dict[int, str] = {}
        self._task_of: dict[int, str] = {}  # each waiting child's Celery task id
        self._revoking: list[str] = []  # tasks of children ended while queued, to revoke
        self._unserved_since: dict[str, float] = {}  # queues seen with no live worker
        self._queues_checked: set[str] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._read_events, name="events", daemon=True)
        self._thread.start()

    def unserved(self, queue_name: str | None) -> str | None:
        """The queue's name the first time this run sends to it while no live worker
        takes it (its children wait, NotStarted); None otherwise."""
        name = queue_name or DEFAULT_QUEUE
        with self._lock:
            if name in self._queues_checked:
                return None
            self._queues_checked.add(name)
        return None if name in self.store.live_queues(heartbeat_timeout()) else name

    def send(self, task: BackgroundTask, queue_name: str | None) -> queue.Queue[dict[str, Any]]:
        """Record the child as this run's and hand it to the workers of `queue_name`;
        returns where its events arrive."""
        inbox: queue.Queue[dict[str, Any]] = queue.Queue()
        task_id = uuid.uuid4().hex
        with self._lock:
            self._inboxes[task.child] = inbox
            self._queue_of[task.child] = queue_name or DEFAULT_QUEUE
            self._task_of[task.child] = task_id
        self.store.dispatch(task.child, self.identity.id, queue_name, task_id)
        payload = json.loads(json.dumps(dataclasses.asdict(task), default=str))
        try:
            self._send_task(payload, queue_name or DEFAULT_QUEUE, task.child, task_id)
        except BrokerError:
            self.forget(task.child)
            raise
        return inbox

    def _send_task(
        self, payload: dict[str, Any], queue_name: str, child: int, task_id: str
    ) -> None:
        """Publish one task (Celery retries a few times); a broker lost past those
        retries is one line naming it, and every later child of the run fails with it
        at once rather than waiting out the retries again.

        No result is kept, so no result backend: Celery would build one per sending
        thread (one per child). The arguments' repr in the message's headers would copy
        the payload again: the child's id says which it is."""
        lost = self._broker_lost
        if lost is not None:
            raise BrokerError(str(lost))
        try:
            self.app.send_task(
                TASK,
                args=[payload],
                queue=queue_name,
                ignore_result=True,
                result_cls=_Sent,
                argsrepr=f"(child {child},)",
                kwargsrepr="{}",
                task_id=task_id,
            )
        except Exception as error:  # noqa: BLE001 - any failure to publish is told the same way
            self._broker_lost = BrokerError(unreachable(self.broker, error))
            raise BrokerError(str(self._broker_lost)) from None

    def revoke(self, child: int) -> None:
        """Revoke the task of a child that ended before any worker claimed it (stopped,
        or given up on): a worker that comes to it discards it instead of spending a
        slot. Sent soon after from the events thread, many children in one message."""
        with self._lock:
            task_id = self._task_of.get(child)
            if task_id is not None:
                self._revoking.append(task_id)

    def _send_revokes(self) -> None:
        with self._lock:
            task_ids, self._revoking = self._revoking, []
        revoke(self.app, task_ids)

    def child_runner(self) -> DispatchedChild:
        """The ChildRunner of children sent to workers."""
        return DispatchedChild(self)

    def forget(self, child: int) -> None:
        with self._lock:
            self._inboxes.pop(child, None)
            self._queue_of.pop(child, None)
            self._task_of.pop(child, None)

    def _read_events(self) -> None:
        """Every poll, the new events of all the run's waiting children in one query;
        every `CHECK_S`, their records and workers' heartbeats in one more."""
        last, checked = 0, time.monotonic()
        while not self._closed.wait(POLL_S):
            self._send_revokes()
            with self._lock:
                children = list(self._inboxes)
            if not children:
                continue
            try:
                events, last = self.store.events_since(children, last)
                for _, child, data in events:
                    self._deliver_json(child, data)
                if time.monotonic() - checked >= CHECK_S:
                    checked = time.monotonic()
                    self._check(children)
            except StoreError as error:  # out of reach past the store's own retries
                for child in children:
                    self._deliver(child, {"store": str(error)})
            except Exception:  # noqa: BLE001 - one bad row must not end the reading
                continue

    def _check(self, children: list[int]) -> None:
        """Tell each waiting child that ended elsewhere (stopped while queued, settled by
        another invocation), or whose worker fell silent, as a line of its own."""
        timeout = heartbeat_timeout()
        unclaimed = []
        for child, (state, reason, worker, beat) in self.store.dispatched(children).items():
            if JobState(state) in TERMINAL:
                line = {"elsewhere": state, "reason": reason, "queued": worker is None}
                self._deliver(child, line)
            elif worker is not None and (beat is None or time.time() - beat > timeout):
                silent = time.time() - beat if beat is not None else timeout
                self._deliver(child, {"lost": worker, "silent": silent})
            elif worker is None and JobState(state) == JobState.NotStarted:
                unclaimed.append(child)
        if unclaimed:
            self._check_unclaimed(unclaimed, timeout)

    def _check_unclaimed(self, children: list[int], timeout: float) -> None:
        """End, as a line of their own, the children no worker claimed while no live
        worker took their queue for `unserved_limit()` (their task may be lost: nothing
        else would end them)."""
        live, now = self.store.live_queues(timeout), time.monotonic()
        with self._lock:
            queues = {child: self._queue_of.get(child, DEFAULT_QUEUE) for child in children}
        for name in set(queues.values()):
            if name in live:
                self._unserved_since.pop(name, None)
            else:
                self._unserved_since.setdefault(name, now)
        for child, name in queues.items():
            since = self._unserved_since.get(name)
            if since is not None and now - since > unserved_limit():
                self._deliver(child, {"unclaimed": name, "waited": now - since})

    def _deliver_json(self, child: int, data: str) -> None:
        """One event row, unless it is not JSON (one bad row must not cost the others)."""
        try:
            line = json.loads(data)
        except ValueError:
            return
        self._deliver(child, line)

    def _deliver(self, child: int, line: dict[str, Any]) -> None:
        with self._lock:
            inbox = self._inboxes.get(child)
        if inbox is not None:
            inbox.put(line)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=5)
        self._send_revokes()  # those of children stopped at the run's very end
        self.heartbeat.stop()


class _Sent:
    """What `send_task` returns here: the task's id, and no result to wait for."""

    def __init__(self, task_id: str) -> None:
        self.id = task_id
        self.ignored = True


class DispatchedChild:
    """A child run by a worker: sent, then followed through the store until it ends."""

    claimed_by_worker = True  # the child stays NotStarted until a worker takes it

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    def run(self, context: RunContext, task: ChildTask) -> ChildReport:
        jp, host, child = task.jp, task.host, task.child
        queue_name = queue_for(context.plan, jp, host)
        detach = jp.job.detach and not context.check
        job = BackgroundTask(
            request=context.request.anchored(),  # type: ignore[union-attr]  # set by every run
            job=jp.name,
            host=host,
            child=child,
            store="",  # a worker uses its own store URL: no password crosses the broker
            registered=dict(context.registered.get(host, {})),
            check=context.check,
            diff=context.diff,
            detach=detach,
            runner=os.getpid(),
            controller=self.dispatcher.identity.id,
            cwd=os.getcwd(),
        )
        idle = self.dispatcher.unserved(queue_name)
        warn = getattr(context.events, "warning", None)
        if idle is not None and warn is not None:
            warn(
                f"no worker takes queue '{idle}' now: its children wait, NotStarted, until"
                f" one does (runner worker --queue {idle}), and fail if none does within"
                f" {unserved_limit():.0f} s"
            )
        inbox = self.dispatcher.send(job, queue_name)
        if detach:
            self.dispatcher.forget(child)
            where = queue_name or DEFAULT_QUEUE
            return ChildReport("Running", f"detached: on a worker of queue '{where}'")
        try:
            return self._follow(context, task, inbox)
        finally:
            self.dispatcher.forget(child)

    def _follow(
        self, context: RunContext, task: ChildTask, inbox: queue.Queue[dict[str, Any]]
    ) -> ChildReport:
        store, child = context.store, task.child
        stopped_at: float | None = None
        while True:
            try:
                line = inbox.get(timeout=POLL_S)
            except queue.Empty:
                line = None
            if line is not None:
                ending = _take(context, task, line)
                if ending is not None and (line.get("queued") or "unclaimed" in line):
                    self.dispatcher.revoke(child)
                if ending is not None:
                    return ending
                continue
            if task.control.stopped and stopped_at is None:
                stopped_at = time.monotonic()
                if store.ask_stop(child, task.control.reason or "stopped", task.control.fail):
                    self.dispatcher.revoke(child)  # no worker took it: none will run it
                    return _stopped(task)
            if stopped_at is not None and time.monotonic() - stopped_at > STOP_GRACE_S:
                return _stopped(task)

    def refresh(self, store: JobStore, parent: int) -> None:
        """A detached child on a worker records its end itself; a lost one is settled."""
        store.reconcile()


def _take(context: RunContext, task: ChildTask, line: dict[str, Any]) -> ChildReport | None:
    """One line from the worker: an event, told to the run's console; or its last, how
    the child ended, with what it registered kept for later jobs."""
    if "event" in line:
        if context.events is not None:
            relay(context.events, task.jp, task.host, line)
        return None
    if "store" in line:  # the store is gone: nothing more can be learnt of the child
        return ChildReport("Failed", line["store"], counts={"failed": 1})
    if "elsewhere" in line:  # its record ended without its worker's word
        failed = {"failed": 1} if line["elsewhere"] == JobState.Failed else {}
        return ChildReport(line["elsewhere"], line.get("reason"), counts=failed)
    if "unclaimed" in line:
        reason = (
            f"not started: no live worker took queue '{line['unclaimed']}' for"
            f" {line['waited']:.0f} s (runner worker --queue {line['unclaimed']})"
        )
        if context.store.ask_stop(task.child, reason, fail=True):  # no worker can take it now
            return ChildReport("Failed", reason, counts={"failed": 1})
        return None  # a worker took it at this moment: follow it
    if "lost" in line:
        reason = f"worker {line['lost']} lost: no heartbeat for {line['silent']:.0f} s"
        return ChildReport("Failed", reason, counts={"failed": 1}, lost=True)
    registered = context.registered.setdefault(task.host, {})
    remember(context.plan, registered, line.get("registered") or {})
    return report_of(line)


def _stopped(task: ChildTask) -> ChildReport:
    control = task.control
    return ChildReport("Failed" if control.fail else "Stopped", control.reason or "stopped")
