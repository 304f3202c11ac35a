"""The job store on PostgreSQL (psycopg 3): one store for every machine with its URL.

The store's SQL is SQLite's; the few words that differ are rewritten here once per
statement (placeholders, `MAX(a, b)`). Every write transaction first takes one
transaction-scoped advisory lock, so writers take turns across machines as they do on
the SQLite file: output ids come from a sequence drawn under that lock, and a record
committed later always has a larger id ("unreceived" stays "id above the cursor").
The schema is versioned in `runner_schema`: an empty database is set up when first
opened; an older schema is upgraded by `runner store migrate`, and a newer one refused.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from runner.errors import StoreError, UsageError
from runner.jobs.urls import endpoint, hide_password, mask_url

SCHEMA_VERSION = 2
# No statement of the store's waits longer: a server that stopped answering (a network
# dropping packets, a frozen host) has its connection cut, and the store tries again.
# RUNNER_STORE_TIMEOUT (seconds, 1 to 60) shortens it, and the connect timeout with it.
STATEMENT_LIMIT_S = min(60.0, max(1.0, float(os.environ.get("RUNNER_STORE_TIMEOUT") or 60)))
CONNECT_TIMEOUT_S = int(min(10.0, STATEMENT_LIMIT_S))
# TCP keepalives and a send timeout notice a peer gone from the network sooner.
_TCP = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30000,
}
_WRITE_LOCK = 0x72756E6E  # the advisory lock every writer takes (b"runn")
_RECEIVE_LOCK = 0x72656376  # receivers' turn (b"recv")

# v1: the schema a SQLite store has at its v4, in PostgreSQL's types.
_V1 = [
    """CREATE TABLE jobs (
        id BIGSERIAL PRIMARY KEY,
        parent_id BIGINT,
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
        owner_pid BIGINT,
        owner_start BIGINT,
        stop_requested INTEGER NOT NULL DEFAULT 0,
        created DOUBLE PRECISION NOT NULL,
        started DOUBLE PRECISION,
        ended DOUBLE PRECISION,
        remote_dir TEXT,
        remote_pgid BIGINT,
        local_pid BIGINT,
        spec TEXT,
        received_id BIGINT NOT NULL DEFAULT 0,
        owner_machine TEXT,
        owner_pidns BIGINT,
        local_start BIGINT,
        owner_id TEXT,
        worker_id TEXT,
        queue TEXT,
        stop_reason TEXT
    )""",
    "CREATE INDEX jobs_parent ON jobs(parent_id)",
    "CREATE INDEX jobs_state ON jobs(state)",
    """CREATE TABLE steps (
        child_id BIGINT NOT NULL,
        idx INTEGER NOT NULL,
        name TEXT NOT NULL,
        rc INTEGER,
        status TEXT NOT NULL,
        started DOUBLE PRECISION,
        ended DOUBLE PRECISION,
        error TEXT,
        PRIMARY KEY (child_id, idx)
    )""",
    """CREATE TABLE output (
        id BIGSERIAL PRIMARY KEY,
        job_id BIGINT NOT NULL,
        host TEXT NOT NULL,
        step INTEGER,
        stream TEXT NOT NULL,
        data TEXT NOT NULL,
        time DOUBLE PRECISION NOT NULL
    )""",
    "CREATE INDEX output_job ON output(job_id, id)",
    """CREATE TABLE remote_streams (
        child_id BIGINT NOT NULL,
        step INTEGER NOT NULL,
        stream TEXT NOT NULL,
        size BIGINT NOT NULL DEFAULT 0,
        fetched BIGINT NOT NULL DEFAULT 0,
        received BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (child_id, step, stream)
    )""",
    """CREATE TABLE owners (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        beat DOUBLE PRECISION NOT NULL,
        queues TEXT
    )""",
    """CREATE TABLE events (
        id BIGSERIAL PRIMARY KEY,
        child_id BIGINT NOT NULL,
        data TEXT NOT NULL
    )""",
    "CREATE INDEX events_child ON events(child_id, id)",
]
# v2: the Celery task id a child was last sent as (SQLite's v5).
_V2 = ["ALTER TABLE jobs ADD COLUMN task_id TEXT"]
MIGRATIONS = [_V1, _V2]  # MIGRATIONS[v] brings version v up to v + 1

_PAIR_MAX = re.compile(r"\bMAX\(([\w.]+), ")
_TRANSLATED: dict[str, str] = {}
_TRANSLATED_GUARD = threading.Lock()


def translate(sql: str) -> str:
    """The store's SQLite SQL in PostgreSQL's words: `?` placeholders become `%s`, and
    the two-argument `MAX(a, b)` becomes `GREATEST(a, b)`."""
    done = _TRANSLATED.get(sql)
    if done is None:
        done = _PAIR_MAX.sub(r"GREATEST(\1, ", sql.replace("%", "%%").replace("?", "%s"))
        with _TRANSLATED_GUARD:
            _TRANSLATED[sql] = done
    return done


class PostgresConnection:
    """A psycopg connection that takes the store's SQL (see `translate`)."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Any = ()) -> Any:
        return self.native(translate(sql), tuple(params) if params else None)

    def native(self, sql: str, params: Any = None) -> Any:
        """A statement in PostgreSQL's own words, watched (`Watchdog`)."""
        with WATCHDOG.watching(self.raw):
            return self.raw.execute(sql, params)

    def executemany(self, sql: str, rows: Any) -> None:
        rows = list(rows)
        if rows:
            with WATCHDOG.watching(self.raw), self.raw.cursor() as cursor:
                cursor.executemany(translate(sql), rows)

    def close(self) -> None:
        self.raw.close()


class PostgresDatabase:
    """The job store in the PostgreSQL database at `url`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.location = mask_url(url)
        self.latest = SCHEMA_VERSION
        try:
            import psycopg
        except ImportError:
            raise StoreError(
                self.location,
                "a PostgreSQL job store needs psycopg: pip install 'runner[distributed]'",
            ) from None
        self._psycopg = psycopg
        self._check_parameters()

    def _check_parameters(self) -> None:
        """A URL parameter libpq does not know (`?foo=1`) is a bad option value, exit 5."""
        try:
            self._psycopg.conninfo.conninfo_to_dict(self.url)
        except self._psycopg.ProgrammingError as error:
            detail = (str(error).strip().splitlines() or ["malformed URL"])[0]
            raise UsageError(
                f"job store {self.location}: {hide_password(self.url, detail)}"
            ) from None

    def connect(self) -> PostgresConnection:
        psycopg = self._psycopg
        with self.faults():
            raw = psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT_S,
                row_factory=_rows,
                application_name="runner",
                **_TCP,
            )
        return PostgresConnection(raw)

    @contextmanager
    def faults(self) -> Iterator[None]:
        """A database that cannot be reached or used, as one line naming where it is."""
        psycopg = self._psycopg
        try:
            yield
        except psycopg.OperationalError as error:
            raise StoreError(self.location, _unreachable(self.url, error), True) from None
        except psycopg.errors.DiskFull:
            raise StoreError(
                self.location, "the disk is full: the job store cannot be written"
            ) from None

    @contextmanager
    def write(self, conn: PostgresConnection, ordered: bool = True) -> Iterator[None]:
        with self.faults():
            conn.native("BEGIN")
            try:
                if ordered:  # ids of output and events drawn in commit order
                    conn.native("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK,))
                yield
            except BaseException:
                _rollback(conn)
                raise
            conn.native("COMMIT")

    @contextmanager
    def read(self, conn: PostgresConnection) -> Iterator[None]:
        with self.faults():
            conn.native("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                yield
            except BaseException:
                _rollback(conn)
                raise
            conn.native("COMMIT")

    def lock_job(self, conn: PostgresConnection, job_id: int) -> None:
        """Lock a job's row until the transaction ends (writers that skip the store-wide
        lock take turns on it)."""
        conn.native("SELECT id FROM jobs WHERE id = %s FOR UPDATE", (job_id,))

    def lock_family(self, conn: PostgresConnection, job_id: int) -> None:
        """Lock the row of the job's family, its parent's (or its own, without one), in
        one statement: a job's parent never changes, so no read needs to come first."""
        conn.native(
            "SELECT id FROM jobs WHERE id ="
            " (SELECT COALESCE(parent_id, id) FROM jobs WHERE id = %s) FOR UPDATE",
            (job_id,),
        )

    def insert(
        self,
        conn: PostgresConnection,
        table: str,
        columns: tuple[str, ...],
        values: tuple[Any, ...],
    ) -> int:
        marks = ", ".join(["%s"] * len(columns))
        row = conn.native(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) RETURNING id", values
        ).fetchone()
        return int(row[0])

    def schema_version(self, conn: PostgresConnection) -> int:
        conn.native("CREATE TABLE IF NOT EXISTS runner_schema (version INTEGER NOT NULL)")
        row = conn.native("SELECT max(version) FROM runner_schema").fetchone()
        return int(row[0] or 0)

    def set_schema_version(self, conn: PostgresConnection, version: int) -> None:
        conn.native("DELETE FROM runner_schema")
        conn.native("INSERT INTO runner_schema (version) VALUES (%s)", (version,))

    def migrations(self, version: int) -> list[str]:
        return [statement for step in MIGRATIONS[version:] for statement in step]

    def migrate_on_open(self, version: int) -> bool:
        """An empty database is set up at once; an older schema, shared by every machine
        that uses the store, waits for `runner store migrate`."""
        return version == 0

    @contextmanager
    def receive_turn(self, conn: PostgresConnection, ids: list[int]) -> Iterator[None]:
        """One receiver at a time, across machines: a session-level advisory lock."""
        with self.faults():
            conn.native("SELECT pg_advisory_lock(%s)", (_RECEIVE_LOCK,))
        try:
            yield
        finally:
            with self.faults():
                conn.native("SELECT pg_advisory_unlock(%s)", (_RECEIVE_LOCK,))


class Watchdog:
    """Cuts the connection of a statement that has waited past `STATEMENT_LIMIT_S`: psycopg
    would wait for a server that stopped answering forever. One thread for every
    connection, looking once a second; a cut connection fails its statement at once."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self._running: dict[int, tuple[float, Any]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @contextmanager
    def watching(self, raw: Any) -> Iterator[None]:
        key = id(raw)
        with self._lock:
            self._running[key] = (time.monotonic(), raw)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="pg-watchdog", daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._running.pop(key, None)

    def _loop(self) -> None:
        while True:
            time.sleep(1.0)
            now = time.monotonic()
            with self._lock:
                late = [raw for began, raw in self._running.values() if now - began > self.limit]
            for raw in late:
                _cut(raw)


def _cut(raw: Any) -> None:
    """Shut the connection's socket down under libpq, which then fails what it waits for."""
    with contextlib.suppress(Exception):
        sock = socket.fromfd(raw.pgconn.socket, socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()  # the duplicate only: libpq's own descriptor stays its own


WATCHDOG = Watchdog(STATEMENT_LIMIT_S)


def _rows(cursor: Any) -> Any:
    """psycopg's row factory: rows that answer to an index and a column name. The names
    come from the result itself: `cursor.description` builds an object per column for
    every statement, half the client's CPU for a job's row."""
    result = cursor.pgresult
    count = result.nfields if result is not None else 0
    if not count:
        return tuple
    return row_class(tuple(result.fname(i).decode() for i in range(count)))


def _rollback(conn: PostgresConnection) -> None:
    with contextlib.suppress(Exception):  # a connection already gone has nothing to undo
        conn.native("ROLLBACK")


def _unreachable(url: str, error: BaseException) -> str:
    """Why the store cannot be used, naming host:port; never the password."""
    detail = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return f"cannot use the job store at {endpoint(url)}: {hide_password(url, detail)}"


class Row(tuple[Any, ...]):
    """A row that answers to an index and to a column name, as sqlite3.Row does."""

    __slots__ = ()
    _columns: dict[str, int]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._columns[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._columns)


_ROW_CLASSES: dict[tuple[str, ...], type[Row]] = {}
_ROW_GUARD = threading.Lock()


def row_class(columns: tuple[str, ...]) -> type[Row]:
    """A `Row` class for these column names (made once per distinct query shape)."""
    with _ROW_GUARD:
        cls = _ROW_CLASSES.get(columns)
        if cls is None:
            index = {name: i for i, name in reversed(list(enumerate(columns)))}
            cls = type("Row", (Row,), {"__slots__": (), "_columns": index})
            _ROW_CLASSES[columns] = cls
        return cls
