"""The job store: jobs, their children, step results and output, in a database.

The database is a SQLite file by default, or PostgreSQL for a store that every machine
shares (`runner.jobs.database.open_database`); this module holds the store's rules in one
SQL, and each database gives one writer at a time across every process.

Output is kept after it is received; each job that produces output (a child, or a job
without children) has a receive cursor, the id of the last output record received.
Output ids come from one sequence drawn under the write lock, so they give the global
order in which records were produced and a record committed later always has a larger
id: "unreceived" is exactly "id above the cursor".

A parent's state is derived from its children on every read (`derive_parent_state`).
The parent's row also caches that state, refreshed in the same transaction as any child
change, so that indexed queries (`reconcile`) skip finished parents cheaply.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from runner.errors import JobNotFoundError, JobStateError, StoreError
from runner.jobs.database import NO_LIMIT, Database, open_database
from runner.jobs.pool import ConnectionPool
from runner.jobs.processes import Liveness, Owner, current_owner, judge, process_start_time
from runner.jobs.records import (
    JobFilter,
    JobRecord,
    OutputRecord,
    StepRecord,
    build_record,
    epoch,
    newest_ended,
    with_child_state,
)
from runner.jobs.states import (
    ACTIVE,
    TERMINAL,
    JobState,
    StepStatus,
    check_transition,
    derive_parent_state,
    is_terminal,
    transition_path,
)
from runner.planning.model import JOB_TYPES, RESULT_PLACES
from runner.settings import heartbeat_timeout

T = TypeVar("T")
Row = Any  # a row of either database: by index and by column name
Connection = Any  # a connection of either database (execute, executemany)

STREAMS = ("stdout", "stderr")
# A store server out of reach for a moment: tries again after these pauses (seconds).
RETRY_PAUSES = (0.5, 1.0, 2.0, 4.0)
# stop_requested: 0 none, 1 `runner job stop`; a controller's stop of a child on a worker:
STOP_ASKED, STOP_FAILS = 2, 3
STEP_STATUSES = tuple(status.value for status in StepStatus)

_JOB_COLUMNS = (
    "parent_id", "name", "type", "state", "location", "command", "detach", "results_to",
    "results_path", "playbook", "owner_pid", "owner_start", "owner_machine", "owner_pidns",
    "created", "spec",
)  # fmt: skip

# (job_id, host, step, stream, data, time): what the executor hands to append_output.
OutputRow = tuple[int, str, "int | None", str, "str | bytes", float]
# end_processes(store, records) -> {child id: why its processes could not be ended}.
EndProcesses = Callable[["JobStore", list[JobRecord]], dict[int, str]]
# (child_id, index, name, rc, status, started, ended, error): a step's result.
StepRow = tuple[int, int, str, "int | None", str, "float | None", "float | None", "str | None"]


@dataclass
class Delivery:
    """A chunk of output being delivered: `done` records of it were written out."""

    records: list[OutputRecord]
    done: int = 0


class _Unset:
    """Marks an argument left out, where None means "clear it"."""


UNSET: Any = _Unset()


class JobStore:
    """The job store at `location` (a SQLite path, or a `sqlite:///` or `postgresql://`
    URL), safe to share between threads and processes."""

    def __init__(
        self,
        location: str | os.PathLike[str],
        end_processes: EndProcesses | None = None,
        *,
        upgrade: bool = False,
    ) -> None:
        """The store at `location`, created (a SQLite file 0600) when missing and
        migrated when old.

        `end_processes` is how `reconcile` ends what a dead runner left running (the
        execution side provides it: the store knows nothing of processes on targets).
        Without it, a dead runner's job that recorded processes is left as it is.
        `upgrade`: apply pending migrations even where the database waits for `runner
        store migrate` (a shared PostgreSQL store); `migrated` says how many were.
        """
        self.db: Database = open_database(location)
        self.path = self.db.location  # what messages name (a URL's password masked)
        self.end_processes = end_processes
        self._pool = ConnectionPool(self.db.connect)
        self.migrated = self._migrate(on_open=not upgrade)

    @property
    def url(self) -> str:
        """How another process opens this store (may hold a password: never show it)."""
        return self.db.url

    # -- connections and transactions ------------------------------------------------

    @contextmanager
    def _write(self, ordered: bool = True) -> Iterator[Connection]:
        """A write transaction, one writer at a time, from its first statement. One that
        writes no output nor events may be `ordered=False`: on PostgreSQL it then skips
        the store-wide lock (no id order to keep) and relies on row locks, the family's
        first (`_locked`)."""
        with self._transaction(functools.partial(self.db.write, ordered=ordered)) as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A read transaction: one consistent snapshot, never blocked by the writer."""
        with self._transaction(self.db.read) as conn:
            yield conn

    @contextmanager
    def _transaction(self, begin: Callable[[Connection], Any]) -> Iterator[Connection]:
        """`begin(conn)`'s transaction on a connection lent by the pool. A server out of
        reach when it starts is tried again (`_retrying`): nothing has happened yet. One
        lost in the middle is a StoreError, and the next transaction connects again."""

        def start(conn: Connection) -> Any:
            transaction = begin(conn)
            transaction.__enter__()
            return transaction

        conn, transaction = self._retrying(start)
        try:
            try:
                yield conn
            except BaseException as error:
                transaction.__exit__(type(error), error, error.__traceback__)
                raise
            transaction.__exit__(None, None, None)
        finally:
            self._pool.give(conn)  # a connection the database lost is forgotten there

    def _one(self, sql: str, params: Iterable[Any]) -> Row | None:
        """The first row of one query outside any transaction (cheap polls)."""
        rows = self._all(sql, params)
        return rows[0] if rows else None

    def _all(self, sql: str, params: Iterable[Any]) -> list[Row]:
        """Every row of one query outside any transaction, tried again as a transaction's
        start is while the server is out of reach."""

        def fetch(conn: Connection) -> list[Row]:
            with self.db.faults():
                return list(conn.execute(sql, tuple(params)).fetchall())

        conn, rows = self._retrying(fetch)
        self._pool.give(conn)
        return rows

    def _retrying(self, action: Callable[[Connection], T]) -> tuple[Connection, T]:
        """`action` on a connection lent by the pool, which the caller gives back; while
        the server is out of reach (a restart, a network blip: a transient StoreError),
        again on a new connection after each of `RETRY_PAUSES`, then the error."""
        for pause in (*RETRY_PAUSES, None):
            conn = None
            try:
                conn = self._pool.take()  # may connect: a server still starting is tried again
                return conn, action(conn)
            except BaseException as error:
                if conn is not None:
                    self._pool.give(conn)  # a connection the database lost is forgotten there
                if not isinstance(error, StoreError) or not error.transient:
                    raise
                self._pool.discard_idle()  # lost with it: the next try connects afresh
                if pause is None:
                    raise
            time.sleep(pause)
        raise AssertionError("unreachable: the last try raises")  # pragma: no cover

    def _locked(self, conn: Connection, job_id: int) -> Row:
        """The job's row, read once its family is locked: its parent's row (or its own,
        for a job without one) stays locked until the transaction ends. Every change of a
        job's state takes this lock first, so changes in one family take turns and see
        each other, and the parent's cached state stays exact without the store-wide
        lock; two families' locks are only ever taken in id order."""
        _check_id(job_id)
        self.db.lock_family(conn, job_id)
        return _require_job(conn, job_id)

    def _lock_families(self, conn: Connection, rows: list[Row]) -> None:
        """`_locked`'s lock for the families of many jobs, in id order (no deadlock)."""
        for family in sorted({row["parent_id"] or row["id"] for row in rows}):
            self.db.lock_job(conn, family)

    def _migrate(self, on_open: bool = False) -> int:
        """Create the schema in a new store, upgrade an older one in place; refuse one
        written by a newer runner. Returns the number of versions applied."""
        latest = self.db.latest
        with self._write() as conn:
            version = self.db.schema_version(conn)
            if version > latest:
                raise StoreError(
                    self.path,
                    f"job store schema v{version} is newer than this runner's "
                    f"(v{latest}); upgrade runner",
                )
            if version == latest:
                return 0
            if on_open and not self.db.migrate_on_open(version):
                raise StoreError(
                    self.path,
                    f"job store schema v{version} is older than this runner's (v{latest}): "
                    "run 'runner store migrate'",
                )
            for statement in self.db.migrations(version):
                conn.execute(statement)
            self.db.set_schema_version(conn, latest)
            return latest - version

    def close(self) -> None:
        """Close every connection this store opened, in every thread."""
        self._pool.close()

    # -- jobs ------------------------------------------------------------------------

    def create_job(
        self,
        name: str,
        type: str,
        command: str,
        location: str,
        *,
        detach: bool = False,
        results_to: str = "controller",
        results_path: str | None = None,
        playbook: str | None = None,
        spec: Any = None,
        parent_id: int | None = None,
        owner_pid: int | None = None,
    ) -> int:
        """Record a new job in NotStarted and return its id (unique, never reused).

        `owner_pid` defaults to this process: the runner that must end the job if it
        ends. Its start time is recorded too, so a reused pid is not taken for it.
        """
        return self.create_children(
            parent_id,
            name,
            type,
            command,
            [(location, results_path, spec)],
            detach=detach,
            results_to=results_to,
            playbook=playbook,
            owner_pid=owner_pid,
        )[0]

    def create_children(
        self,
        parent_id: int | None,
        name: str,
        type: str,
        command: str,
        places: list[tuple[str, str | None, Any]],
        *,
        detach: bool = False,
        results_to: str = "controller",
        playbook: str | None = None,
        owner_pid: int | None = None,
    ) -> list[int]:
        """`create_job` for many jobs alike but for (location, results_path, spec), in one
        transaction: a job's children on a fleet of hosts. Returns their ids, in order."""
        if type not in JOB_TYPES:
            raise ValueError(f"job type must be one of {', '.join(JOB_TYPES)}, not {type!r}")
        if results_to not in RESULT_PLACES:
            raise ValueError(f"results_to must be one of {', '.join(RESULT_PLACES)}")
        owner, now = current_owner(owner_pid), time.time()
        ids = []
        with self._write() as conn:
            stopped = False
            if parent_id is not None:
                stopped = bool(_require_job(conn, parent_id)["stop_requested"])
            for location, results_path, spec in places:
                values = (
                    parent_id, name, type, JobState.NotStarted.value, location, command,
                    int(detach), results_to, results_path, playbook, owner.pid, owner.start,
                    owner.machine, owner.pidns, now, None if spec is None else json.dumps(spec),
                )  # fmt: skip
                ids.append(self.db.insert(conn, "jobs", _JOB_COLUMNS, values))
            if parent_id is not None and places:
                _refresh_parent(conn, parent_id)
            if stopped:  # `runner job stop` came between the parent and its children
                _stop_new(conn, ids)
        return ids

    def get(self, job_id: int) -> JobRecord:
        """The job with this id (a parent or a child); `JobNotFoundError` if none."""
        _check_id(job_id)
        with self._read() as conn:
            rows = conn.execute(
                f"{_SELECT_JOBS} WHERE j.id = ? OR j.parent_id = ? ORDER BY j.id",
                (job_id, job_id),
            ).fetchall()
        own = [row for row in rows if row["id"] == job_id]
        if not own:
            raise JobNotFoundError(f"no job with id {job_id}")
        return build_record(own[0], [row for row in rows if row["id"] != job_id])

    def children(self, job_id: int) -> list[JobRecord]:
        """The child jobs of a parent, in id order (one per host)."""
        with self._read() as conn:
            _require_job(conn, job_id)
            rows = conn.execute(
                f"{_SELECT_JOBS} WHERE j.parent_id = ? ORDER BY j.id", (job_id,)
            ).fetchall()
        return [build_record(row, []) for row in rows]

    def list_jobs(
        self,
        *,
        state: JobState | str | None = None,
        name: str | None = None,
        include_children: bool = False,
        has_more_data: bool | None = None,
        before: datetime | float | None = None,
        after: datetime | float | None = None,
        newest: int | None = None,
        child_state: JobState | str | None = None,
        command: str | None = None,
    ) -> list[JobRecord]:
        """Jobs in id order, filtered as Get-Job filters them.

        `name` and `command` are wildcard patterns (``*``, ``?``, ``[...]``),
        case-insensitive as in PowerShell. `before` / `after` select finished jobs by
        their end time, as Get-Job's -Before / -After do. `newest` keeps the N that ended
        most recently (-Newest), jobs not finished after those. `child_state` keeps the
        parents with a child in that state and, with `include_children`, only the
        children in it (-ChildJobState).
        """
        with self._read() as conn:
            rows = conn.execute(f"{_SELECT_JOBS} ORDER BY j.id").fetchall()
        by_parent: dict[int, list[Row]] = {}
        for row in rows:
            if row["parent_id"] is not None:
                by_parent.setdefault(row["parent_id"], []).append(row)
        records = [build_record(row, by_parent.get(row["id"], [])) for row in rows]
        if child_state is not None:
            records = with_child_state(records, JobState(child_state))
        if not include_children:
            records = [r for r in records if r.parent_id is None]
        wanted = JobFilter(state, name, has_more_data, epoch(before), epoch(after), command)
        records = [r for r in records if wanted.matches(r)]
        return newest_ended(records, newest) if newest else records

    # -- state -----------------------------------------------------------------------

    def set_state(self, job_id: int, new_state: JobState | str, reason: str | None = None) -> None:
        """Move a job to `new_state`, refusing what the state machine forbids.

        Sets `started` on the first move to Running and `ended` on a finished state.
        A parent with children has no state of its own to set.
        """
        new_state = JobState(new_state)
        with self._write(ordered=False) as conn:
            row = self._locked(conn, job_id)
            _refuse_parent(conn, job_id)
            _move(conn, row, [new_state], reason)

    def note_disconnected(self, job_id: int, reason: str) -> None:
        """Give a job already Disconnected the latest reason (its host is still out of
        reach); a job that has moved on meanwhile keeps its own."""
        with self._write() as conn:
            conn.execute(
                "UPDATE jobs SET reason = ? WHERE id = ? AND state = ?",
                (reason, job_id, JobState.Disconnected.value),
            )

    def finish(self, job_id: int, outcome: JobState | str, reason: str | None = None) -> JobState:
        """End a running job with `outcome`, unless a stop won the race: then Stopped.

        The executor calls this when a child's work ends; if `request_stop` moved it to
        Stopping meanwhile, the job ends Stopped, as PowerShell's Stop-Job does. Returns
        the state recorded. Ending a job as Stopped walks it through Stopping first.
        """
        outcome = JobState(outcome)
        with self._write(ordered=False) as conn:
            row = self._locked(conn, job_id)
            _refuse_parent(conn, job_id)
            final = JobState.Stopped if row["state"] == JobState.Stopping else outcome
            path = [final]
            if final == JobState.Stopped and row["state"] not in TERMINAL:
                path = transition_path(row["state"], final)  # through Stopping, as a stop goes
            _move(conn, row, path, reason)
            return final

    def request_stop(self, job_id: int) -> list[int]:
        """Ask for a job (and its children) to stop; return the ids now in Stopping.

        Sets `stop_requested`, which the owning runner polls, and moves every unfinished
        child to Stopping. The returned ids are the ones whose processes someone must
        end; a finished job is left as it is (stopping it does nothing).
        """
        with self._write() as conn:
            self._locked(conn, job_id)
            leaves = _leaf_rows(conn, job_id)
            conn.execute(
                "UPDATE jobs SET stop_requested = 1 WHERE id = ? OR parent_id = ?",
                (job_id, job_id),
            )
            stopping = []
            for leaf in leaves:
                state = JobState(leaf["state"])
                if state not in TERMINAL and state != JobState.Stopping:
                    _move(conn, leaf, [JobState.Stopping], None)
                if not is_terminal(state):
                    stopping.append(leaf["id"])
            return stopping

    def stop_requested(self, job_id: int) -> bool:
        """Whether a stop was requested (a removed job counts as one): cheap to poll."""
        row = self._one("SELECT stop_requested FROM jobs WHERE id = ?", (job_id,))
        return row is None or bool(row[0])

    def stop_requested_among(self, job_ids: Iterable[int]) -> list[int]:
        """Which of `job_ids` have a stop requested by `runner job stop` (or were removed):
        one query a poll. A controller's own stop of a child on a worker is not counted."""
        ids = list(job_ids)
        if not ids:
            return []
        marks = ", ".join("?" * len(ids))
        rows = self._all(f"SELECT id FROM jobs WHERE id IN ({marks}) AND stop_requested <> 1", ids)
        running = {row[0] for row in rows}
        return [job_id for job_id in ids if job_id not in running]

    def claim(self, job_id: int, owner_pid: int | None = None) -> None:
        """Make a process (default: this one) the owner of a job and its children.

        A later invocation that reconnects to a detached job, or stops one, claims it so
        that `reconcile` judges the job by the process actually handling it.
        """
        owner = current_owner(owner_pid)
        with self._write() as conn:
            _require_job(conn, job_id)
            conn.execute(
                "UPDATE jobs SET owner_pid = ?, owner_start = ?, owner_machine = ?,"
                " owner_pidns = ? WHERE id = ? OR parent_id = ?",
                (owner.pid, owner.start, owner.machine, owner.pidns, job_id, job_id),
            )

    def set_runtime(
        self,
        child_id: int,
        *,
        remote_pgid: int | None = UNSET,
        local_pid: int | None = UNSET,
        remote_dir: str | None = UNSET,
    ) -> None:
        """Record what stop and reconnect need; an argument left out is kept, None clears.

        Clear `local_pid` when its process ends, so a later stop cannot signal a
        stranger that reused the pid (its start time is kept beside it for the same end).
        """
        changes = runtime_changes(
            remote_pgid=remote_pgid, local_pid=local_pid, remote_dir=remote_dir
        )
        if not changes:
            return
        with self._write() as conn:
            _require_job(conn, child_id)
            _apply_runtime(conn, child_id, changes)

    def remove(self, job_id: int, force: bool = False) -> None:
        """Delete a job, its children, their steps and output.

        An unfinished job is refused unless `force` (the caller stops it first).
        """
        with self._write() as conn:
            row = self._locked(conn, job_id)
            leaves = _leaf_rows(conn, job_id)
            state = _state_of(row, leaves)
            if not force and not is_terminal(state):
                raise JobStateError(
                    f"job {job_id} is {state}: only a finished job can be removed "
                    "(stop it first, or force)"
                )
            ids = sorted({job_id, *(leaf["id"] for leaf in leaves)})
            marks = ", ".join("?" * len(ids))
            conn.execute(f"DELETE FROM output WHERE job_id IN ({marks})", ids)
            conn.execute(f"DELETE FROM steps WHERE child_id IN ({marks})", ids)
            conn.execute(f"DELETE FROM remote_streams WHERE child_id IN ({marks})", ids)
            conn.execute(f"DELETE FROM events WHERE child_id IN ({marks})", ids)
            conn.execute(f"DELETE FROM jobs WHERE id IN ({marks})", ids)
            if row["parent_id"] is not None:
                _refresh_parent(conn, row["parent_id"])

    def reconcile(self, end_processes: EndProcesses | None = None) -> list[int]:
        """Settle jobs whose owning runner process is gone; return their ids.

        Only an owner this process can see is judged (`runner.jobs.processes.judge`): one on
        another machine or in another PID namespace is left to invocations that can.
        The process groups recorded on an attached job are ended first
        (`end_processes`, or the store's own; without either such a job is left as
        it is, never called Stopped while its processes may run), then it ends
        Stopped, with the reason; a job whose host could not be reached to end them is
        Disconnected, with a reason naming the host. A detached job that was running is
        Disconnected (its work goes on where it runs). One indexed query when there is
        nothing to do; the write lock is taken only when a job must change.
        """
        with self._read() as conn:
            candidates = conn.execute(_SELECT_ORPHAN_CANDIDATES).fetchall()
        settled = self._settle_lost_dispatched([row for row in candidates if row["owner_id"]])
        gone = _OwnerJudge()
        dead = [row for row in candidates if not row["owner_id"] and gone(row)]
        end_processes = end_processes or self.end_processes
        if end_processes is None:
            dead = [row for row in dead if not _leaves_processes(row)]
        if not dead:
            return settled
        problems = self._end_orphans([row for row in dead if _leaves_processes(row)], end_processes)
        with self._write() as conn:
            self._lock_families(conn, dead)
            marks = ", ".join("?" * len(dead))
            rows = conn.execute(
                f"{_SELECT_ORPHAN_CANDIDATES} AND id IN ({marks})", [row["id"] for row in dead]
            ).fetchall()
            for row in rows:
                if gone(row) and _settle_orphan(conn, row, problems.get(row["id"])):
                    settled.append(row["id"])
        return settled

    def _settle_lost_dispatched(self, rows: list[Row]) -> list[int]:
        """Children on workers whose worker fell silent past the heartbeat timeout
        (Failed: never re-run), or, still queued and attached, whose controller did
        (Stopped); their ids."""
        cutoff = time.time() - heartbeat_timeout()
        lost: dict[int, tuple[JobState, str]] = {}
        for row in rows:
            why = _lost(row, cutoff)
            if why is not None:
                lost[row["id"]] = why
        if not lost:
            return []
        settled = []
        with self._write() as conn:
            self._lock_families(conn, [row for row in rows if row["id"] in lost])
            for job_id, (outcome, reason) in lost.items():
                row = _require_job(conn, job_id)
                if JobState(row["state"]) in TERMINAL:
                    continue
                _move(conn, row, transition_path(row["state"], outcome), reason)
                settled.append(job_id)
        return settled

    def _end_orphans(self, rows: list[Row], end_processes: EndProcesses | None) -> dict[int, str]:
        """End the recorded processes of these orphans, outside any transaction (it may
        take a connection timeout); by child id, why some could not be ended."""
        if not rows or end_processes is None:
            return {}
        return end_processes(self, [self.get(row["id"]) for row in rows])

    # -- owners with heartbeats, and children run by workers ---------------------------

    def beat(self, owner_id: str, kind: str, name: str, queues: Iterable[str] = ()) -> None:
        """Say that owner `owner_id` (a controller, or a worker taking `queues`, called
        `name`) lives."""
        with self._write(ordered=False) as conn:
            conn.execute(
                "INSERT INTO owners (id, kind, name, beat, queues) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET beat = excluded.beat",
                (owner_id, kind, name, time.time(), ",".join(queues)),
            )

    def forget_owner(self, owner_id: str) -> None:
        """An owner that ended cleanly (its jobs ended with it, or went on detached)."""
        with self._write(ordered=False) as conn:
            conn.execute("DELETE FROM owners WHERE id = ?", (owner_id,))

    def live_queues(self, silent_for: float) -> set[str]:
        """The queues some worker that beat within `silent_for` seconds takes."""
        rows = self._all(
            "SELECT queues FROM owners WHERE kind = 'worker' AND beat >= ?",
            (time.time() - silent_for,),
        )
        return {queue for (queues,) in rows for queue in (queues or "").split(",") if queue}

    def owner_beat(self, owner_id: str) -> tuple[str, float] | None:
        """An owner's name and last heartbeat (seconds since the epoch), or None."""
        row = self._one("SELECT name, beat FROM owners WHERE id = ?", (owner_id,))
        return None if row is None else (row[0], float(row[1]))

    def dispatch(
        self, child_id: int, owner_id: str, queue: str | None, task_id: str | None = None
    ) -> None:
        """Record that `child_id` was handed to the workers of `queue` by controller
        `owner_id`, which answers for it while its heartbeat lasts, as Celery task
        `task_id` (which a stop while it is queued revokes, from any machine)."""
        with self._write(ordered=False) as conn:
            conn.execute(
                "UPDATE jobs SET owner_id = ?, queue = ?, task_id = ? WHERE id = ?",
                (owner_id, queue, task_id, child_id),
            )

    def claim_for_worker(self, child_id: int, worker_id: str) -> bool:
        """A worker takes a dispatched child: NotStarted to Running, once. False when it
        was stopped or removed while queued, or another delivery of the same task took it
        first (a child never runs twice)."""
        try:
            with self._write(ordered=False) as conn:
                row = self._locked(conn, child_id)
                if row["state"] != JobState.NotStarted or row["stop_requested"]:
                    return False
                conn.execute("UPDATE jobs SET worker_id = ? WHERE id = ?", (worker_id, child_id))
                _move(conn, row, [JobState.Running], None)
                return True
        except JobNotFoundError:  # `runner job remove` took it while its task was queued
            return False

    def begin_retry(self, child_id: int, note: str, redispatch: bool) -> bool:
        """Let a Running child that ended without a step's own failure (its host out of
        reach, its worker lost) run again from its first step, as its job's `retries`
        allows. The only way back for a child: to Running (it runs again in this process)
        or, `redispatch`, to NotStarted with no worker (sent again; a worker claims it
        afresh). Nothing recorded is lost: `note` and the attempt's step results become a
        line of its output before those results are cleared for the new attempt, and its
        reason says it is being retried. False when it was stopped or settled meanwhile."""
        with self._write() as conn:
            row = self._locked(conn, child_id)
            if row["state"] != JobState.Running or row["stop_requested"]:
                return False
            steps = conn.execute(
                "SELECT idx, name, status FROM steps WHERE child_id = ? ORDER BY idx", (child_id,)
            ).fetchall()
            done = "; ".join(f"step {r[0]} {r[1]!r}: {r[2]}" for r in steps) or "no step ran"
            line = f"runner: {note}; before: {done}\n"
            conn.execute(
                "INSERT INTO output (job_id, host, step, stream, data, time)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (child_id, row["location"], None, "stderr", line, time.time()),
            )
            conn.execute("DELETE FROM steps WHERE child_id = ?", (child_id,))
            again = JobState.NotStarted if redispatch else JobState.Running
            conn.execute(
                "UPDATE jobs SET state = ?, reason = ?,"
                " worker_id = CASE WHEN ? THEN NULL ELSE worker_id END WHERE id = ?",
                (again.value, note, redispatch, child_id),
            )
            if row["parent_id"] is not None:
                _refresh_parent(conn, row["parent_id"])
            return True

    def ask_stop(self, child_id: int, reason: str, fail: bool = False) -> bool:
        """The controller's stop of a child on a worker (Ctrl-C, a job timeout): the
        worker ends its step and reports it `reason`; unlike `request_stop`, the state
        stays for the controller to record (a timeout is Failed, not Stopped). True when
        no worker had taken the child: none ever will (`claim_for_worker`)."""
        with self._write(ordered=False) as conn:
            row = self._locked(conn, child_id)
            conn.execute(
                "UPDATE jobs SET stop_requested = CASE WHEN stop_requested = 0 THEN ?"
                " ELSE stop_requested END, stop_reason = COALESCE(stop_reason, ?) WHERE id = ?",
                (STOP_FAILS if fail else STOP_ASKED, reason, child_id),
            )
            return row["worker_id"] is None

    def dispatched(
        self, child_ids: list[int]
    ) -> dict[int, tuple[str, str | None, str | None, float | None]]:
        """For children on workers, in one query: (state, reason, the name and last
        heartbeat of the worker that took it, if one did)."""
        if not child_ids:
            return {}
        marks = ", ".join("?" * len(child_ids))
        rows = self._all(
            "SELECT j.id, j.state, j.reason, o.name, o.beat FROM jobs j"
            f" LEFT JOIN owners o ON o.id = j.worker_id WHERE j.id IN ({marks})",
            child_ids,
        )
        return {int(r[0]): (r[1], r[2], r[3], r[4]) for r in rows}

    def stop_requests(self, child_ids: list[int]) -> dict[int, tuple[int, str | None]]:
        """Which of these children were asked to stop, and how: (0 none, 1 `runner job
        stop`, `STOP_ASKED`, `STOP_FAILS`; the controller's reason); a removed one counts
        as stopped. One query for all of them; only those asked are returned."""
        if not child_ids:
            return {}
        marks = ", ".join("?" * len(child_ids))
        rows = self._all(
            f"SELECT id, stop_requested, stop_reason FROM jobs WHERE id IN ({marks})", child_ids
        )
        found = {int(r[0]): (int(r[1]), r[2]) for r in rows}
        asked = {i: found.get(i, (1, None)) for i in child_ids}
        return {i: why for i, why in asked.items() if why[0]}

    def events_after(self, child_ids: Iterable[int], after: int) -> list[tuple[int, int, str]]:
        """(id, child id, JSON) of the events workers sent about these children, past
        event `after`, in order."""
        return self.events_since(child_ids, after)[0]

    def events_since(
        self, child_ids: Iterable[int], after: int
    ) -> tuple[list[tuple[int, int, str]], int]:
        """`events_after`, and the last event id read, to ask from next time. A controller
        asks this ten times a second: one query of the same shape whatever the children
        (prepared once by the server, its plan kept), over the range of their ids, the
        events of other jobs in that range read past and left out here."""
        ids = set(child_ids)
        if not ids:
            return [], after
        rows = self._all(
            "SELECT id, child_id, data FROM events WHERE id > ? AND child_id >= ?"
            " AND child_id <= ? ORDER BY id",
            (after, min(ids), max(ids)),
        )
        last = max((int(r[0]) for r in rows), default=after)
        return [(int(r[0]), int(r[1]), r[2]) for r in rows if int(r[1]) in ids], last

    # -- steps -----------------------------------------------------------------------

    def record_step(
        self,
        child_id: int,
        index: int,
        name: str,
        rc: int | None,
        status: str,
        started: float | None,
        ended: float | None,
        error: str | None = None,
    ) -> None:
        """Record (or replace) the result of step `index` on a child job."""
        self.append_batch([], [(child_id, index, name, rc, status, started, ended, error)])

    def steps(self, child_id: int) -> list[StepRecord]:
        """A child job's step results, in step order."""
        rows = self._all(
            "SELECT child_id, idx, name, rc, status, started, ended, error FROM steps"
            " WHERE child_id = ? ORDER BY idx",
            (child_id,),
        )
        return [StepRecord(*row) for row in rows]

    # -- output ----------------------------------------------------------------------

    def append_output(self, records: Iterable[OutputRow]) -> None:
        """Store a batch of output records in one transaction, in the order given.

        `data` may be bytes; it is decoded as UTF-8 (invalid bytes replaced), so the
        producer should decode a stream incrementally to keep characters whole.
        """
        self.append_batch(records, [])

    def append_batch(
        self,
        records: Iterable[OutputRow],
        steps: Iterable[StepRow],
        runtimes: Iterable[tuple[int, dict[str, Any]]] = (),
        events: Iterable[tuple[int, str]] = (),
    ) -> None:
        """Output records, step results (`record_step`'s arguments, as tuples) and
        `runtime_changes` per child, and a worker's events (child id, JSON) for its
        controller, in one transaction: the executor's writer thread
        batches them, so a fleet of hosts starting and finishing steps at once costs a
        few transactions, not one each."""
        rows = [_output_row(record) for record in records]
        results = list(steps)
        changes = list(runtimes)
        sent = list(events)
        for result in results:
            if result[4] not in STEP_STATUSES:
                raise ValueError(f"step status must be one of {', '.join(STEP_STATUSES)}")
        if not rows and not results and not changes and not sent:
            return
        with self._write() as conn:
            _require_jobs(conn, {result[0] for result in results})
            for child_id, change in _merged(changes).items():
                _apply_runtime(conn, child_id, change)
            conn.executemany(
                "INSERT INTO steps (child_id, idx, name, rc, status, started, ended, error)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (child_id, idx) DO UPDATE SET"
                " name = excluded.name, rc = excluded.rc, status = excluded.status,"
                " started = excluded.started, ended = excluded.ended, error = excluded.error",
                results,
            )
            conn.executemany(
                "INSERT INTO output (job_id, host, step, stream, data, time)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            conn.executemany("INSERT INTO events (child_id, data) VALUES (?, ?)", sent)

    def receive(
        self,
        job_id: int,
        *,
        keep: bool = False,
        host: str | None = None,
        limit: int | None = None,
    ) -> list[OutputRecord]:
        """Output not yet received, in production order; marks it received unless `keep`.

        For a parent, the records of all its children (or of the child on `host`), each
        tagged with its host. Marking happens in the same write transaction as the
        read, so two receivers never get the same record.
        """
        return self._receive_chunk(job_id, keep, host, limit, after=0)

    def iter_receive(
        self,
        job_id: int,
        keep: bool = False,
        host: str | None = None,
        batch: int = 1000,
    ) -> Iterator[OutputRecord]:
        """`receive`, a chunk of `batch` records at a time, for outputs too big for memory.

        Each chunk is marked received (unless `keep`) when it is read from the store.
        """
        after = 0
        while True:
            chunk = self._receive_chunk(job_id, keep, host, batch, after)
            if not chunk:
                return
            yield from chunk
            after = chunk[-1].id

    @contextmanager
    def delivering(
        self,
        job_id: int,
        *,
        keep: bool = False,
        host: str | None = None,
        limit: int = 1000,
        after: int = 0,
    ) -> Iterator[Delivery]:
        """Up to `limit` unreceived records (ids above `after`) for a receiver to write out.

        Only the first `delivery.done` of them are marked received, when the block ends
        (an exception included): what a closed pipe, Ctrl-C or a kill kept from being
        written stays unreceived. Receivers of the same jobs take turns, one chunk at a
        time, so no record is delivered twice.
        """
        with self._read() as conn:
            ids = [
                leaf["id"]
                for leaf in _leaf_rows(conn, job_id)
                if host is None or leaf["location"] == host
            ]
        with contextlib.nullcontext() if keep else self._receive_turn(ids):
            with self._read() as conn:
                delivery = Delivery(_unreceived_by_id(conn, ids, after, limit))
            try:
                yield delivery
            finally:
                if not keep and delivery.done:
                    with self._write() as conn:
                        _advance_cursors(conn, delivery.records[: delivery.done])

    @contextmanager
    def _receive_turn(self, ids: list[int]) -> Iterator[None]:
        """This process's turn to deliver the output of jobs `ids`, taken in turns with
        every other receiver of them (threads here, and other processes)."""
        if not ids:
            yield
            return
        conn = self._pool.take()
        try:
            with self.db.receive_turn(conn, ids):
                yield
        finally:
            self._pool.give(conn)

    # -- output kept on a target ------------------------------------------------------

    def remote_streams(self, child_id: int) -> dict[tuple[int, str], tuple[int, int, int]]:
        """(step, stream) -> (size seen on the target, bytes fetched, bytes received)."""
        rows = self._all(
            "SELECT step, stream, size, fetched, received FROM remote_streams WHERE child_id = ?",
            (child_id,),
        )
        return {(r[0], r[1]): (r[2], r[3], r[4]) for r in rows}

    def set_remote_sizes(self, child_id: int, sizes: dict[tuple[int, str], int]) -> None:
        """Record how much output each step's stream holds on the target now."""
        with self._write() as conn:
            conn.executemany(
                "INSERT INTO remote_streams (child_id, step, stream, size) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (child_id, step, stream)"
                " DO UPDATE SET size = MAX(remote_streams.size, excluded.size)",
                [(child_id, step, stream, size) for (step, stream), size in sizes.items()],
            )

    def append_fetched(
        self, child_id: int, host: str, step: int, stream: str, offset: int, data: bytes
    ) -> bool:
        """Store `data`, fetched from the target at byte `offset`, as an output record and
        move the fetch cursor past it, in one transaction. False (nothing stored) when
        another process fetched that range first: each byte is stored exactly once."""
        with self._write() as conn:
            row = conn.execute(
                "SELECT fetched FROM remote_streams WHERE child_id = ? AND step = ? AND stream = ?",
                (child_id, step, stream),
            ).fetchone()
            if (row[0] if row else 0) != offset:
                return False
            conn.execute(
                "INSERT INTO remote_streams (child_id, step, stream, size, fetched)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (child_id, step, stream) DO UPDATE SET"
                " fetched = excluded.fetched, size = MAX(remote_streams.size, excluded.fetched)",
                (child_id, step, stream, offset + len(data), offset + len(data)),
            )
            if data:
                conn.execute(
                    "INSERT INTO output (job_id, host, step, stream, data, time)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    _output_row((child_id, host, step, stream, data, time.time())),
                )
            return True

    def advance_received(
        self, child_id: int, step: int, stream: str, offset: int, new_offset: int
    ) -> bool:
        """Mark remote-kept output received up to `new_offset`, if nobody else moved the
        cursor from `offset` meanwhile (two receivers never deliver the same bytes)."""
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE remote_streams SET received = ? WHERE child_id = ? AND step = ?"
                " AND stream = ? AND received = ?",
                (new_offset, child_id, step, stream, offset),
            )
            return cursor.rowcount == 1

    def has_more_data(self, job_id: int) -> bool:
        """Whether the job (or any of its children) is unfinished or has output not yet
        received (PowerShell's HasMoreData)."""
        return self.get(job_id).has_more_data

    def _receive_chunk(
        self, job_id: int, keep: bool, host: str | None, limit: int | None, after: int
    ) -> list[OutputRecord]:
        """Up to `limit` unreceived records with ids above `after`, marked unless `keep`."""
        with self._read() if keep else self._write() as conn:
            leaves = [
                leaf
                for leaf in _leaf_rows(conn, job_id)
                if host is None or leaf["location"] == host
            ]
            records = _unreceived(conn, leaves, after, limit)
            if not keep:
                _advance_cursors(conn, records)
        return records


# -- SQL helpers (module level: they take the connection of an open transaction) --------

_SELECT_JOBS = (
    # The newest record's id, not EXISTS: both databases then read one index entry per
    # job, where PostgreSQL's planner chose a scan of all output per job once a few jobs
    # held most of it (a listing of 10,000 jobs went from over a minute to under a second).
    "SELECT j.*, (COALESCE((SELECT MAX(o.id) FROM output o WHERE o.job_id = j.id), 0)"
    " > j.received_id"
    " OR EXISTS (SELECT 1 FROM remote_streams r WHERE r.child_id = j.id AND r.size >"
    " CASE WHEN j.results_to = 'remote' THEN r.received ELSE r.fetched END)) AS more FROM jobs j"
)

_SELECT_ORPHAN_CANDIDATES = (
    "SELECT id, parent_id, state, detach, location, owner_pid, owner_start, owner_machine,"
    " owner_pidns, local_pid, remote_pgid, owner_id, worker_id,"
    # a child sent to workers is judged by its owners' heartbeats, not by a pid
    " (SELECT name FROM owners o WHERE o.id = jobs.worker_id) AS worker_name,"
    " (SELECT beat FROM owners o WHERE o.id = jobs.worker_id) AS worker_beat,"
    " (SELECT name FROM owners o WHERE o.id = jobs.owner_id) AS owner_name,"
    " (SELECT beat FROM owners o WHERE o.id = jobs.owner_id) AS owner_beat FROM jobs"
    f" WHERE state IN ({', '.join(repr(s.value) for s in sorted(ACTIVE))})"
    " AND NOT EXISTS (SELECT 1 FROM jobs c WHERE c.parent_id = jobs.id)"
)


def runtime_changes(
    *, remote_pgid: Any = UNSET, local_pid: Any = UNSET, remote_dir: Any = UNSET
) -> dict[str, Any]:
    """The columns `set_runtime` writes; a local pid's start time is read now, while the
    process lives, so that a pid reused later is never taken for it."""
    given = {"remote_pgid": remote_pgid, "local_pid": local_pid, "remote_dir": remote_dir}
    changes = {key: value for key, value in given.items() if value is not UNSET}
    if local_pid is not UNSET:
        changes["local_start"] = None if local_pid is None else process_start_time(local_pid)
    return changes


def _merged(changes: list[tuple[int, dict[str, Any]]]) -> dict[int, dict[str, Any]]:
    """Runtime changes per child, in the order given (a step's start, then its end: the
    later value wins): one UPDATE per child a batch, not one per step's start and end."""
    merged: dict[int, dict[str, Any]] = {}
    for child_id, change in changes:
        merged.setdefault(child_id, {}).update(change)
    return merged


def _apply_runtime(conn: Connection, child_id: int, changes: dict[str, Any]) -> None:
    assignments = ", ".join(f"{key} = ?" for key in changes)
    conn.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", (*changes.values(), child_id))


def _check_id(job_id: int) -> None:
    """An id SQLite cannot hold (past 64 bits) names no job; say so rather than overflow."""
    if not -(2**63) <= job_id < 2**63:
        raise JobNotFoundError(f"no job with id {job_id}")


def _require_job(conn: Connection, job_id: int) -> Row:
    """The job's row, or `JobNotFoundError`."""
    _check_id(job_id)
    row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        raise JobNotFoundError(f"no job with id {job_id}")
    return row


def _require_jobs(conn: Connection, job_ids: set[int]) -> None:
    """`_require_job` for many jobs in one query."""
    if not job_ids:
        return
    ids = sorted(job_ids)
    for job_id in ids:
        _check_id(job_id)
    marks = ", ".join("?" * len(ids))
    found = {r[0] for r in conn.execute(f"SELECT id FROM jobs WHERE id IN ({marks})", ids)}
    missing = [job_id for job_id in ids if job_id not in found]
    if missing:
        raise JobNotFoundError(f"no job with id {missing[0]}")


def _leaf_rows(conn: Connection, job_id: int) -> list[Row]:
    """The jobs that do the work: a parent's children, or the job itself if it has none."""
    rows = conn.execute("SELECT * FROM jobs WHERE parent_id = ? ORDER BY id", (job_id,)).fetchall()
    return rows or [_require_job(conn, job_id)]


def _refuse_parent(conn: Connection, job_id: int) -> None:
    """A parent with children has a derived state: setting it is a bug."""
    if conn.execute("SELECT 1 FROM jobs WHERE parent_id = ? LIMIT 1", (job_id,)).fetchone():
        raise JobStateError(f"job {job_id} is a parent job: its state comes from its children")


def _move(conn: Connection, row: Row, path: list[JobState], reason: str | None) -> None:
    """Walk a job through `path`, each move checked, then refresh its parent's cache."""
    state = JobState(row["state"])
    for new in path:
        try:
            check_transition(state, new)
        except JobStateError as error:
            raise JobStateError(f"job {row['id']}: {error}") from None
        state = new
    now = time.time()
    conn.execute(
        "UPDATE jobs SET state = ?, reason = COALESCE(?, reason),"
        " started = CASE WHEN ? AND started IS NULL THEN ? ELSE started END,"
        " ended = CASE WHEN ? THEN ? ELSE ended END WHERE id = ?",
        (state.value, reason, JobState.Running in path, now, state in TERMINAL, now, row["id"]),
    )
    if row["parent_id"] is not None:
        _refresh_parent(conn, row["parent_id"])


def _stop_new(conn: Connection, ids: list[int]) -> None:
    """Children created under a parent already asked to stop: asked too, and Stopping
    (as `request_stop` leaves its children), so that no one ever starts them."""
    marks = ", ".join("?" * len(ids))
    conn.execute(f"UPDATE jobs SET stop_requested = 1 WHERE id IN ({marks})", ids)
    for row in conn.execute(f"SELECT * FROM jobs WHERE id IN ({marks})", ids).fetchall():
        _move(conn, row, [JobState.Stopping], None)


def _refresh_parent(conn: Connection, parent_id: int) -> None:
    """Cache the parent's derived state in its row (reads derive it again anyway). The
    state depends only on which states the children are in: a few rows, not one per
    child (each child's move would read the whole fleet's); an unchanged state is not
    written again."""
    states = [
        r[0]
        for r in conn.execute("SELECT DISTINCT state FROM jobs WHERE parent_id = ?", (parent_id,))
    ]
    if states:
        derived = derive_parent_state(states).value
        conn.execute(
            "UPDATE jobs SET state = ? WHERE id = ? AND state <> ?", (derived, parent_id, derived)
        )


class _OwnerJudge:
    """Whether a row's owner is gone, as this process sees it; each owner judged once."""

    def __init__(self) -> None:
        self._seen: dict[Owner, bool] = {}

    def __call__(self, row: Row) -> bool:
        owner = Owner(
            row["owner_machine"], row["owner_pidns"], row["owner_pid"], row["owner_start"]
        )
        if owner not in self._seen:
            self._seen[owner] = judge(owner) == Liveness.GONE
        return self._seen[owner]


def _lost(row: Row, cutoff: float) -> tuple[JobState, str] | None:
    """How a child on a worker ends when an owner fell silent before `cutoff`: its worker
    (Failed), or, not yet taken and attached, its controller (Stopped); None if neither."""
    if row["worker_id"]:
        if row["worker_beat"] is not None and row["worker_beat"] >= cutoff:
            return None
        return JobState.Failed, f"worker {row['worker_name']} lost: no heartbeat"
    if row["detach"] or row["state"] not in (JobState.NotStarted, JobState.Stopping):
        return None
    if row["owner_beat"] is not None and row["owner_beat"] >= cutoff:
        return None
    return JobState.Stopped, f"runner {row['owner_name']} lost before a worker took it"


def _runs_detached(row: Row) -> bool:
    """A detached job still at work: it goes on without its runner, by design."""
    return bool(row["detach"]) and row["state"] in (JobState.Running, JobState.Blocked)


def _leaves_processes(row: Row) -> bool:
    """An orphan with process groups recorded that must be ended before it is Stopped."""
    return bool(row["local_pid"] or row["remote_pgid"]) and not _runs_detached(row)


def _settle_orphan(conn: Connection, row: Row, problem: str | None) -> bool:
    """Move a job whose owner is gone to Stopped (attached) or Disconnected (detached, or
    its processes could not be ended: `problem` says why). False when it must stay as it
    is (a stop under way whose processes could not be ended keeps only the reason)."""
    state, pid = JobState(row["state"]), row["owner_pid"]
    if _runs_detached(row):
        reason = f"runner process {pid} ended; the detached job may still run on {row['location']}"
        _move(conn, row, transition_path(state, JobState.Disconnected), reason)
        return True
    if problem is not None:
        reason = f"runner process {pid} ended; {problem}"
        if state == JobState.Stopping:
            conn.execute("UPDATE jobs SET reason = ? WHERE id = ?", (reason, row["id"]))
            return False
        _move(conn, row, transition_path(state, JobState.Disconnected), reason)
        return True
    reason = f"runner process {pid} ended without stopping it"
    _move(conn, row, transition_path(state, JobState.Stopped), reason)
    return True


def _state_of(row: Row, leaves: list[Row]) -> JobState:
    """A job's state: its own for a job without children, else derived from them."""
    if leaves and leaves[0]["id"] == row["id"]:
        return JobState(row["state"])
    return derive_parent_state(leaf["state"] for leaf in leaves)


def _unreceived(
    conn: Connection, leaves: list[Row], after: int, limit: int | None
) -> list[OutputRecord]:
    """The leaves' records above their cursors and above `after`, in id order.

    The scan walks output ids upward from the first record any leaf still has to
    deliver, so its cost is the records returned plus those interleaved with them.
    """
    if not leaves:
        return []
    ids = [leaf["id"] for leaf in leaves]
    marks = ", ".join("?" * len(ids))
    start = conn.execute(
        f"SELECT MIN((SELECT MIN(o.id) FROM output o WHERE o.job_id = j.id"
        f" AND o.id > MAX(j.received_id, ?))) FROM jobs j WHERE j.id IN ({marks})",
        (after, *ids),
    ).fetchone()[0]
    if start is None:
        return []
    rows = conn.execute(
        "SELECT o.id, o.job_id, o.host, o.step, o.stream, o.data, o.time"
        " FROM output o JOIN jobs j ON j.id = o.job_id"
        f" WHERE o.id >= ? AND +o.job_id IN ({marks}) AND o.id > j.received_id"
        " ORDER BY o.id LIMIT ?",
        (start, *ids, NO_LIMIT if limit is None else limit),
    ).fetchall()
    return [OutputRecord(*row) for row in rows]


def _unreceived_by_id(
    conn: Connection, ids: list[int], after: int, limit: int | None
) -> list[OutputRecord]:
    """`_unreceived` for the jobs `ids`, read afresh (their cursors may have moved)."""
    if not ids:
        return []
    marks = ", ".join("?" * len(ids))
    leaves = conn.execute(f"SELECT * FROM jobs WHERE id IN ({marks})", ids).fetchall()
    return _unreceived(conn, leaves, after, limit)


def _advance_cursors(conn: Connection, records: list[OutputRecord]) -> None:
    """Mark records received: each job's cursor moves to its last record returned."""
    last: dict[int, int] = {}
    for record in records:
        last[record.job_id] = record.id
    conn.executemany(
        "UPDATE jobs SET received_id = MAX(received_id, ?) WHERE id = ?",
        [(record_id, job_id) for job_id, record_id in last.items()],
    )


def _output_row(record: OutputRow) -> tuple[int, str, int | None, str, str, float]:
    """Check one output record and decode its data to text."""
    job_id, host, step, stream, data, when = record
    if stream not in STREAMS:
        raise ValueError(f"output stream must be stdout or stderr, not {stream!r}")
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = bytes(data).decode("utf-8", errors="replace")
    return (job_id, host, step, stream, data, when)
