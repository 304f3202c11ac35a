"""Reconnecting to jobs that keep their work on the target (detached, or remote results).

`refresh` connects to each such child's host, reads its job directory, records the
state and step results the target reports, and (for results kept on the controller)
moves output not fetched yet into the store, each byte exactly once. An unreachable host
leaves its child `Disconnected`, with the reason; the other children are updated.
`receive_remote` delivers output that stays on the target (`results.to: remote`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from runner.connections.base import Connection, ConnectionSpec
from runner.errors import ConnectError, JobStateError
from runner.execution.ontarget import jobdir as remote
from runner.jobs.records import JobRecord
from runner.jobs.states import TERMINAL, JobState, StepStatus, transition_path
from runner.jobs.store import JobStore, OutputRecord

FETCH_CHUNK = 1 << 20  # commit fetched output to the store a megabyte at a time


def is_remote_kept(record: JobRecord) -> bool:
    """A child whose work and output live in a job directory on its target."""
    return bool(record.remote_dir) and record.type == "remote"


def _directory(child: JobRecord) -> str:
    """The child's job directory on its target (every child kept there has one)."""
    assert child.remote_dir is not None, f"job {child.id} keeps nothing on its target"
    return child.remote_dir


def connect(record: JobRecord) -> Connection:
    """A fresh connection to a child's host, from the spec recorded when it started."""
    from runner.execution.sessions import open_connection
    from runner.settings import known_hosts_path

    stored = dict(record.spec or {}).get("connection") or {"connection": "local"}
    return open_connection(record.location, ConnectionSpec.from_json(stored), known_hosts_path())


def leaves(store: JobStore, job_id: int) -> list[JobRecord]:
    record = store.get(job_id)
    return store.children(job_id) if record.child_ids else [record]


def refresh(store: JobStore, job_id: int, claim: bool = True) -> list[str]:
    """Bring every remote-kept child of `job_id` up to date; return the problems met."""
    problems = []
    for child in leaves(store, job_id):
        if not is_remote_kept(child):
            continue
        if JobState(child.state) in TERMINAL and not _unfetched(store, child):
            continue
        try:
            conn = connect(child)
        except ConnectError as error:
            _disconnected(store, child, f"cannot reach {child.location}: {error.reason}")
            problems.append(str(error))
            continue
        try:
            refresh_child(store, child, conn, claim)
        except (ConnectError, OSError) as error:
            _disconnected(store, child, f"lost {child.location}: {error}")
            problems.append(f"{child.location}: {error}")
        finally:
            conn.close()
    return problems


def _unfetched(store: JobStore, child: JobRecord) -> bool:
    if child.results_to == "remote":
        return False
    streams = store.remote_streams(child.id)
    return not streams or any(size > fetched for size, fetched, _ in streams.values())


def _disconnected(store: JobStore, child: JobRecord, reason: str) -> None:
    state = JobState(store.get(child.id).state)
    if state in (JobState.Running, JobState.Blocked):
        _settle(store, child.id, JobState.Disconnected, reason)
    elif state == JobState.Disconnected:
        store.note_disconnected(child.id, reason)  # say why now, not why it was left


def _settle(store: JobStore, child_id: int, new: JobState, reason: str | None) -> None:
    """Move a child to `new` through legal states; a race with another process is fine."""
    state = JobState(store.get(child_id).state)
    if state == new or state in TERMINAL:
        return
    if new == JobState.Completed:
        reason = reason or ""  # a detached job's "runs without the runner" no longer holds
    try:
        for step in transition_path(state, new):
            store.set_state(child_id, step, reason)
    except JobStateError:
        pass  # another invocation moved it first; its view is as good as ours


def refresh_child(
    store: JobStore, child: JobRecord, conn: Connection, claim: bool = True, settle: bool = True
) -> remote.RemoteStatus:
    """Read one child's job directory and record what it says (its state too, unless
    `settle` is False: the runner following its own child sets that). Returns the
    RemoteStatus."""
    status = remote.status(conn, _directory(child))
    if status.sizes:
        store.set_remote_sizes(child.id, status.sizes)
    if child.results_to != "remote":
        fetch(store, child, conn, status)
    _record_steps(store, child, status)
    if not settle:
        return status
    state = JobState(status.state)
    if state == JobState.Running:
        if claim:
            store.claim(child.id)
        _settle(store, child.id, JobState.Running, None)
    elif JobState(store.get(child.id).state) == JobState.Stopping:
        _settle(store, child.id, JobState.Stopped, status.reason)
    else:
        _settle(store, child.id, state, status.reason)
    return status


def _record_steps(store: JobStore, child: JobRecord, status: remote.RemoteStatus) -> None:
    """Copy the exit statuses the target wrote into the child's step results."""
    now = time.time()
    for known in store.steps(child.id):
        rc = status.rcs.get(known.index)
        if rc is not None and known.rc != rc:
            ok = rc == 0
            store.record_step(
                child.id,
                known.index,
                known.name,
                rc,
                (StepStatus.CHANGED if ok else StepStatus.FAILED).value,
                known.started,
                now,
                None if ok else f"exited with status {rc}",
            )
        elif rc is None and known.status == StepStatus.RUNNING and status.state != "Running":
            store.record_step(
                child.id,
                known.index,
                known.name,
                None,
                StepStatus.STOPPED.value,
                known.started,
                now,
                status.reason,
            )


def fetch(store: JobStore, child: JobRecord, conn: Connection, status: remote.RemoteStatus) -> None:
    """Move output not fetched yet into the store, cut on line ends while a step runs."""
    cursors = store.remote_streams(child.id)
    for (step, stream), size in sorted(status.sizes.items()):
        fetched = cursors.get((step, stream), (0, 0, 0))[1]
        if size <= fetched:
            continue
        finished = step in status.rcs or status.done is not None
        _fetch_stream(store, child, conn, step, stream, fetched, size - fetched, finished)


@dataclass
class _Fetch:
    """One stream's fetch: where the store's copy ends, what waits for its line end, and
    whether another process took the stream over."""

    offset: int
    buffer: bytes = b""
    lost: bool = False


def _fetch_stream(
    store: JobStore,
    child: JobRecord,
    conn: Connection,
    step: int,
    stream: str,
    offset: int,
    length: int,
    finished: bool,
) -> None:
    state = _Fetch(offset)

    def commit(data: bytes) -> None:
        if state.lost or not data:
            return
        if store.append_fetched(child.id, child.location, step, stream, state.offset, data):
            state.offset += len(data)
        else:
            state.lost = True  # another process is fetching this stream

    def on_data(data: bytes) -> None:
        state.buffer += data
        if len(state.buffer) >= FETCH_CHUNK:
            cut = state.buffer.rfind(b"\n") + 1 or len(state.buffer)
            head, state.buffer = state.buffer[:cut], state.buffer[cut:]
            commit(head)

    remote.read(conn, _directory(child), step, stream, offset, length, on_data)
    rest = state.buffer
    if not finished:
        rest = rest[: rest.rfind(b"\n") + 1]  # a partial line waits for its end
    commit(rest)


def receive_remote(store: JobStore, child: JobRecord, keep: bool) -> Iterator[OutputRecord]:
    """Output kept on the target and not received yet, fetched now; marked received as
    it is delivered unless `keep`. Raises ConnectError when the host cannot be reached."""
    conn = connect(child)
    try:
        status = refresh_child(store, child, conn, claim=False)
        cursors = store.remote_streams(child.id)
        for (step, stream), size in sorted(status.sizes.items()):
            received = cursors.get((step, stream), (0, 0, 0))[2]
            if size <= received:
                continue
            chunks: list[bytes] = []
            remote.read(
                conn, _directory(child), step, stream, received, size - received, chunks.append
            )
            data = b"".join(chunks)
            if not keep and not store.advance_received(
                child.id, step, stream, received, received + len(data)
            ):
                continue  # another receiver delivered it
            if data:
                yield OutputRecord(
                    0,
                    child.id,
                    child.location,
                    step,
                    stream,
                    data.decode("utf-8", errors="replace"),
                    0.0,
                )
    finally:
        conn.close()


def stop_child(store: JobStore, child: JobRecord) -> None:
    """End a remote-kept child's process group on its target and record it Stopped."""
    conn = connect(child)
    try:
        remote.mark_stopped(conn, _directory(child), child.remote_pgid)
        refresh_child(store, child, conn, claim=False)
    finally:
        conn.close()
    _settle(store, child.id, JobState.Stopped, "stopped by 'runner job stop'")


def remove_child(child: JobRecord) -> None:
    """Delete a child's job directory on its target."""
    conn = connect(child)
    try:
        remote.remove_directory(conn, _directory(child))
    finally:
        conn.close()
