"""Managing jobs: what `runner job list | show | receive | wait | stop | remove` do.

Every function takes the job store it works on; `open_store` opens the one under
RUNNER_HOME with the jobs of dead runners settled first.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runner.jobs.records import JobRecord, OutputRecord
    from runner.jobs.states import JobState
    from runner.jobs.store import JobStore


def open_store() -> JobStore:
    """The job store at $RUNNER_HOME/jobs.db, with orphans of dead runners reconciled."""
    from runner.execution.orphans import end_processes
    from runner.jobs.store import JobStore
    from runner.settings import store_location

    store = JobStore(store_location(), end_processes=end_processes)
    store.reconcile()
    return store


def resolve_jobs(store: JobStore, tokens: Sequence[str | int]) -> list[int]:
    """The jobs named on the command line, each once, in the order given: an id, or a
    name (wildcards allowed, any case) standing for every parent job it matches, as
    PowerShell's -Name selects. `JobNotFoundError` for one that matches nothing."""
    from runner.errors import JobNotFoundError
    from runner.jobs.records import wildcard_match

    ids: list[int] = []
    parents: list[JobRecord] | None = None
    for token in tokens:
        text = str(token).strip()
        if text.isascii() and text.isdigit():  # not '²', which int() refuses
            store.get(int(text))  # JobNotFoundError: no job with id N
            found = [int(text)]
        else:
            parents = store.list_jobs() if parents is None else parents
            found = [r.id for r in parents if wildcard_match(r.name, text)]
            if not found:
                raise JobNotFoundError(f"no job with id or name {text!r}")
        ids.extend(job_id for job_id in found if job_id not in ids)
    return ids


def wait_over(state: JobState | str, force: bool = False) -> bool:
    """Whether waiting for a job in `state` ends, by Wait-Job's rule: it is finished, or
    Disconnected (a persistent state) unless `force`."""
    from runner.jobs.states import JobState, is_terminal

    return is_terminal(state) or (JobState(state) == JobState.Disconnected and not force)


def refresh(store: JobStore, job_ids: Sequence[int] | None = None) -> list[str]:
    """Reconnect to jobs kept on their targets (detached, remote results) and bring
    their state and output up to date; return the problems met (unreachable hosts)."""
    from runner.execution.ontarget.reconnect import is_remote_kept, leaves
    from runner.execution.ontarget.reconnect import refresh as refresh_job
    from runner.jobs.states import is_terminal

    records = [store.get(i) for i in job_ids] if job_ids is not None else store.list_jobs()
    problems: list[str] = []
    for record in records:
        children = leaves(store, record.id)
        if any(
            is_remote_kept(c) and (not is_terminal(c.state) or c.has_more_data) for c in children
        ):
            problems.extend(refresh_job(store, record.id))
    return problems


def stop(store: JobStore, job_ids: Sequence[int], timeout: float = 15.0) -> list[int]:
    """Stop jobs and end their processes; return the ids still not finished after
    `timeout` (their owner has not ended them). Children kept on their targets, and
    those whose runner is gone, are ended here; the others by the runner that owns
    them. With a broker, the tasks of children still queued are revoked."""
    from runner.errors import ConnectError, RunnerError
    from runner.execution.executor import wait_for_terminal
    from runner.execution.ontarget.reconnect import is_remote_kept, leaves, stop_child
    from runner.execution.orphans import owner_gone, stop_orphan
    from runner.jobs.states import is_terminal

    broker = _broker()  # a malformed URL is refused before anything is asked
    for job_id in job_ids:
        store.get(job_id)  # JobNotFoundError before anything is asked
    # Revoked first: stopping the running children frees their workers, which would
    # otherwise take the queued tasks (and refuse them) before the revoke arrived.
    _revoke(broker, _queued_tasks(store, job_ids, broker))
    for job_id in job_ids:
        for child in leaves(store, job_id):
            if is_terminal(child.state):
                continue
            if not is_remote_kept(child):
                if owner_gone(child):  # nobody else will end its processes
                    stop_orphan(store, child)
                continue
            store.claim(child.id)
            try:
                stop_child(store, child)
            except (ConnectError, OSError) as error:
                raise RunnerError(
                    f"job {child.id} on {child.location}: cannot reach the host to end its "
                    f"process ({error}); the job is left as it was"
                ) from None
        store.request_stop(job_id)
    pending = []
    for job_id in job_ids:
        store.reconcile()
        if not wait_for_terminal(store, job_id, timeout):
            pending.append(job_id)
    return pending


def _broker() -> str | None:
    """The broker `RUNNER_BROKER` (or `--broker`) names, checked; None without one."""
    from runner.settings import broker_url

    broker = broker_url()
    if broker is not None:
        from runner.distributed.app import check_broker_url

        check_broker_url(broker)
    return broker


def _queued_tasks(store: JobStore, job_ids: Sequence[int], broker: str | None) -> list[str]:
    """The Celery task ids of these jobs' children still queued for a worker (none to
    look for without a broker)."""
    if broker is None:
        return []
    from runner.execution.ontarget.reconnect import leaves
    from runner.jobs.states import JobState

    return [
        child.task_id
        for job_id in job_ids
        for child in leaves(store, job_id)
        if child.state == JobState.NotStarted and child.task_id
    ]


def _revoke(broker: str | None, task_ids: list[str]) -> None:
    """Revoke the tasks of children stopped while queued: no worker spends a slot on
    them. Their records already say Stopped; a broker out of reach changes nothing."""
    if broker is None or not task_ids:
        return
    from runner.distributed.app import make_app, revoke

    revoke(make_app(broker), task_ids)


def remove(
    store: JobStore, job_ids: Sequence[int], force: bool = False, keep_remote: bool = False
) -> None:
    """Remove finished jobs (with `force`, stop unfinished ones first) and their job
    directories on the targets, unless `keep_remote`."""
    from runner.errors import ConnectError, RunnerError
    from runner.execution.ontarget.reconnect import is_remote_kept, leaves, remove_child
    from runner.jobs.states import is_terminal

    for job_id in job_ids:
        record = store.get(job_id)
        if force and not is_terminal(record.state):
            stop(store, [job_id])
        elif not is_terminal(record.state):
            store.remove(job_id)  # refuses, with the reason
        if not keep_remote:
            for child in leaves(store, job_id):
                if not is_remote_kept(child):
                    continue
                try:
                    remove_child(child)
                except (ConnectError, OSError) as error:
                    raise RunnerError(
                        f"job {child.id}: cannot remove {child.remote_dir} on "
                        f"{child.location} ({error}); nothing was removed "
                        "(--keep-remote removes the job and leaves the directory)"
                    ) from None
        store.remove(job_id, force=force)


def wait(
    store: JobStore,
    job_ids: Sequence[int],
    any_: bool = False,
    timeout: float | None = None,
    force: bool = False,
) -> list[JobRecord]:
    """Block until the jobs are finished (or Disconnected, unless `force`), reconnecting
    to detached ones; return the records of those still running when `timeout` passed
    (empty when all were done)."""
    import time

    def done(record: JobRecord) -> bool:
        return wait_over(record.state, force)

    deadline = None if timeout is None else time.monotonic() + timeout
    next_refresh = 0.0
    while True:
        store.reconcile()
        if time.monotonic() >= next_refresh:
            refresh(store, job_ids)
            next_refresh = time.monotonic() + 0.5
        records = [store.get(job_id) for job_id in job_ids]
        finished = [r for r in records if done(r)]
        if (any_ and finished) or len(finished) == len(records):
            return []
        if deadline is not None and time.monotonic() >= deadline:
            return [r for r in records if not done(r)]
        time.sleep(0.1)


def receive(
    store: JobStore, job_id: int, keep: bool = False, host: str | None = None
) -> Iterator[OutputRecord]:
    """Output not received yet, in order, marked received unless `keep`; reconnects to
    children kept on their targets first. An iterator of OutputRecords."""
    in_store = yield from _receive_kept(store, job_id, keep, host)
    if in_store:
        yield from store.iter_receive(job_id, keep=keep, host=host)


def deliver(
    store: JobStore,
    job_id: int,
    write: Callable[[OutputRecord], None],
    flush: Callable[[], None],
    keep: bool = False,
    host: str | None = None,
) -> None:
    """`receive`, handing each record to `write`; a record is marked received only once
    `flush` returned after it. An exception from either (a closed pipe, Ctrl-C) leaves
    every record not flushed unreceived, for the next receiver."""
    in_store = _write_each(_receive_kept(store, job_id, keep, host), write, flush)
    after = 0
    while in_store:
        with store.delivering(job_id, keep=keep, host=host, after=after) as delivery:
            if not delivery.records:
                return
            pending = 0
            for number, record in enumerate(delivery.records, 1):
                write(record)
                pending += len(record.data)
                if pending >= DELIVER_FLUSH_CHARS:
                    flush()
                    delivery.done, pending = number, 0
            flush()
            delivery.done = len(delivery.records)
            after = delivery.records[-1].id


DELIVER_FLUSH_CHARS = 64 * 1024  # written out and marked received this much at a time


def _write_each(
    records: Generator[OutputRecord, None, bool],
    write: Callable[[OutputRecord], None],
    flush: Callable[[], None],
) -> bool:
    """Write and flush each record of a generator; its return value."""
    while True:
        try:
            record = next(records)
        except StopIteration as end:
            return end.value
        write(record)
        flush()


def _receive_kept(
    store: JobStore, job_id: int, keep: bool, host: str | None
) -> Generator[OutputRecord, None, bool]:
    """Yield the output kept on targets; return whether some output is in the store."""
    from runner.errors import ConnectError
    from runner.execution.ontarget.reconnect import is_remote_kept, leaves, receive_remote

    children = [c for c in leaves(store, job_id) if host is None or c.location == host]
    if any(is_remote_kept(c) for c in children):
        refresh(store, [job_id])
    for child in children:
        if is_remote_kept(child) and child.results_to == "remote":
            try:
                yield from receive_remote(store, child, keep)
            except ConnectError:
                continue  # left Disconnected with the reason by refresh
    return not all(c.results_to == "remote" for c in children)
