"""The job store's SQLite file (the default, `$RUNNER_HOME/jobs.db`).

Several runner processes (and many executor threads in each) share one file, so: WAL
mode (readers never wait for the writer), a 30 s busy timeout, every write in a
``BEGIN IMMEDIATE`` transaction (the write lock is taken up front, so two writers never
deadlock upgrading a read lock) retried on SQLITE_BUSY, and one connection per thread.
Output ids come from one AUTOINCREMENT sequence taken under the write lock, so a record
committed later always has a larger id.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from runner.errors import StoreError, store_fault_code

BUSY_TIMEOUT_S = 30.0
BEGIN_ATTEMPTS = 5
SCHEMA_VERSION = 5

# v1: jobs, their step results and output.
_V1 = [
    """CREATE TABLE jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        parent_id INTEGER,
        name TEXT NOT NULL,
        type TEXT NOT NULL,
        state TEXT NOT NULL,
        reason TEXT,
        location TEXT NOT NULL,
        command TEXT NOT NULL,
        detach INTEGER NOT NULL DEFAULT 0,
        results_to TEXT NOT NULL,
        results_path TEXT,
        playbook TEXT,
        owner_pid INTEGER,
        owner_start INTEGER,
        stop_requested INTEGER NOT NULL DEFAULT 0,
        created REAL NOT NULL,
        started REAL,
        ended REAL,
        remote_dir TEXT,
        remote_pgid INTEGER,
        local_pid INTEGER,
        spec TEXT,
        received_id INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX jobs_parent ON jobs(parent_id)",
    "CREATE INDEX jobs_state ON jobs(state)",
    """CREATE TABLE steps (
        child_id INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        name TEXT NOT NULL,
        rc INTEGER,
        status TEXT NOT NULL,
        started REAL,
        ended REAL,
        error TEXT,
        PRIMARY KEY (child_id, idx)
    )""",
    """CREATE TABLE output (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id INTEGER NOT NULL,
        host TEXT NOT NULL,
        step INTEGER,
        stream TEXT NOT NULL,
        data TEXT NOT NULL,
        time REAL NOT NULL
    )""",
    "CREATE INDEX output_job ON output(job_id, id)",
]
# v2: output kept on a target (detached jobs, `results.to: remote`). Per child, step and
# stream: the size last seen there, the bytes fetched into `output`, the bytes received.
_V2 = [
    """CREATE TABLE remote_streams (
        child_id INTEGER NOT NULL,
        step INTEGER NOT NULL,
        stream TEXT NOT NULL,
        size INTEGER NOT NULL DEFAULT 0,
        fetched INTEGER NOT NULL DEFAULT 0,
        received INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (child_id, step, stream)
    )""",
]
# v3: who owns a job across machines and PID namespaces (see runner.jobs.processes), and
# when a child's local process group leader started, so a reused pid is never signalled.
_V3 = [
    "ALTER TABLE jobs ADD COLUMN owner_machine TEXT",
    "ALTER TABLE jobs ADD COLUMN owner_pidns INTEGER",
    "ALTER TABLE jobs ADD COLUMN local_start INTEGER",
]
# v4: owners known by name and heartbeat (a controller or a worker on another machine),
# the worker a child runs on, its queue, why its controller stops it, and the events a worker
# sends its controller (step lines, commands, diffs) through the store.
_V4 = [
    """CREATE TABLE owners (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        beat REAL NOT NULL,
        queues TEXT
    )""",
    "ALTER TABLE jobs ADD COLUMN owner_id TEXT",
    "ALTER TABLE jobs ADD COLUMN worker_id TEXT",
    "ALTER TABLE jobs ADD COLUMN queue TEXT",
    "ALTER TABLE jobs ADD COLUMN stop_reason TEXT",
    """CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        child_id INTEGER NOT NULL,
        data TEXT NOT NULL
    )""",
    "CREATE INDEX events_child ON events(child_id, id)",
]
# v5: the Celery task id a child was last sent as, so a stop of it while queued revokes it.
_V5 = ["ALTER TABLE jobs ADD COLUMN task_id TEXT"]
MIGRATIONS = [_V1, _V2, _V3, _V4, _V5]  # MIGRATIONS[v] brings version v up to v + 1

# One writer at a time per store file within a process. Threads wait on this lock, which
# hands over at once; left to SQLite, each waiting thread sleeps in its busy handler for
# growing intervals between tries, and a run grew slower than linearly in its hosts
# (BENCHMARKS.md, "Figures behind design choices"). Other processes on the same file
# still meet SQLite's own lock.
_WRITE_LOCKS: dict[str, threading.Lock] = {}
_WRITE_LOCKS_GUARD = threading.Lock()
# A forked child starts afresh: a lock held by a thread the fork left behind stays held.
os.register_at_fork(after_in_child=_WRITE_LOCKS.clear)


def write_lock(key: str) -> threading.Lock:
    """The in-process lock for one store's writers (or, with a suffix, its receivers)."""
    with _WRITE_LOCKS_GUARD:
        return _WRITE_LOCKS.setdefault(key, threading.Lock())


class SQLiteDatabase:
    """The store's SQLite file at `path`, created (0600) when missing."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self.latest = SCHEMA_VERSION
        self.url = str(self.path)
        with self.faults():
            _create_private_file(self.path)
        self._lock_key = str(self.path.resolve())

    def connect(self) -> sqlite3.Connection:
        """A connection in autocommit mode (transactions are explicit), WAL, busy timeout."""
        with self.faults():
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            _retry_busy(lambda: conn.execute("PRAGMA journal_mode = WAL"))
            conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    @contextmanager
    def faults(self) -> Iterator[None]:
        """SQLite's and the file system's word that the store is unusable (damaged, full,
        read-only) as a StoreError naming the file; anything else goes through unchanged."""
        try:
            yield
        except sqlite3.Error as error:
            if store_fault_code(error) is None:
                raise
            raise StoreError.wrap(error, self.path) from None
        except OSError as error:
            raise StoreError.wrap(error, self.path) from None

    @contextmanager
    def write(self, conn: sqlite3.Connection, ordered: bool = True) -> Iterator[None]:
        with write_lock(self._lock_key), self.faults():
            _retry_busy(lambda: conn.execute("BEGIN IMMEDIATE"))
            try:
                yield
            except BaseException:
                if conn.in_transaction:  # SQLite may have rolled back already (disk full...)
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextmanager
    def read(self, conn: sqlite3.Connection) -> Iterator[None]:
        with self.faults():
            conn.execute("BEGIN")
            try:
                yield
            finally:
                conn.execute("COMMIT")

    def lock_job(self, conn: sqlite3.Connection, job_id: int) -> None:
        """Nothing to do: a SQLite file has one writer at a time."""

    def lock_family(self, conn: sqlite3.Connection, job_id: int) -> None:
        """Nothing to do, as `lock_job`."""

    def insert(
        self,
        conn: sqlite3.Connection,
        table: str,
        columns: tuple[str, ...],
        values: tuple[Any, ...],
    ) -> int:
        marks = ", ".join("?" * len(columns))
        cursor = conn.execute(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", values
        )
        return int(cursor.lastrowid or 0)

    def schema_version(self, conn: sqlite3.Connection) -> int:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])

    def set_schema_version(self, conn: sqlite3.Connection, version: int) -> None:
        conn.execute(f"PRAGMA user_version = {int(version)}")

    def migrations(self, version: int) -> list[str]:
        return [statement for step in MIGRATIONS[version:] for statement in step]

    def migrate_on_open(self, version: int) -> bool:
        """A file belongs to one machine's runners: it is upgraded when opened."""
        return True

    @contextmanager
    def receive_turn(self, conn: sqlite3.Connection, ids: list[int]) -> Iterator[None]:
        """A lock on the jobs' id range in a file beside the store, held by other
        processes' receivers too, and released by the kernel if the process dies."""
        with write_lock(self._lock_key + "#receive"):
            with self.faults():
                fd = os.open(f"{self.path}-receive", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX, max(ids) - min(ids) + 1, min(ids))
                yield
            finally:
                os.close(fd)  # releases the lock


def _create_private_file(path: Path) -> None:
    """Create the store file with mode 0600 (its parent 0700) before SQLite opens it.

    SQLite gives its -wal and -shm files the database file's mode, so they stay
    private too. A new file is made a SQLite database under another name and linked
    into place, so `jobs.db` is never empty: an empty one was truncated, and is refused
    rather than taken for a new store (every job in it would vanish without a word).
    """
    if not path.parent.is_dir():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.exists():
        _refuse_empty(path)
        return
    draft = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.new")
    fd = os.open(draft, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    os.close(fd)
    try:
        os.chmod(draft, 0o600)
        conn = sqlite3.connect(draft, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")  # writes the header: a non-empty file
        conn.close()
        try:
            os.link(draft, path)
        except FileExistsError:
            _refuse_empty(path)  # another process created it first
    finally:
        os.unlink(draft)


def _refuse_empty(path: Path) -> None:
    """A 0-byte store was not created by runner (see `_create_private_file`: switching a
    new file to WAL writes its header): refuse it, even beside a write-ahead log, whose
    pages cannot stand without the file they belong to."""
    if path.stat().st_size == 0:
        raise StoreError(
            path,
            "the job store is empty (0 bytes: truncated?): move it aside "
            f"(mv {path} {path}.bad) and runner starts a new, empty store",
        )


def _retry_busy(action: Any) -> Any:
    """Run `action`, retrying when SQLite still reports the database busy or locked."""
    for attempt in range(BEGIN_ATTEMPTS):
        try:
            return action()
        except sqlite3.OperationalError as error:
            busy = "locked" in str(error) or "busy" in str(error)
            if not busy or attempt == BEGIN_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    return None  # pragma: no cover
