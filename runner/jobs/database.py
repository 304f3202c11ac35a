"""What the job store asks of a database: the SQLite file (the default) or PostgreSQL.

`JobStore` (runner.jobs.store) holds the store's rules and speaks one SQL; a `Database`
gives it connections, transactions with one writer at a time, its schema's versions and
the few words where the two dialects differ. `open_database(location)` chooses: a path or
`sqlite:///PATH` is a SQLite file, `postgresql://...` a PostgreSQL database (psycopg is
imported only then).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Protocol

POSTGRES_SCHEMES = ("postgresql", "postgres")

# Rows a query may return at most where the store means "all of them": both dialects take
# a number here, neither the same word for "no limit".
NO_LIMIT = 2**62


class Database(Protocol):
    """A database the job store lives in."""

    location: str  # what messages name: a file's path, or a URL with its password masked
    url: str  # how another process opens the same store (may hold a password: never shown)
    latest: int  # the schema version this runner writes

    def connect(self) -> Any:
        """A new connection (DB-API: execute, executemany, close), autocommit; rows
        answer to both index and column name."""
        ...

    def faults(self) -> AbstractContextManager[None]:
        """Turns the database's word that the store is unusable into a `StoreError`."""
        ...

    def write(self, conn: Any, ordered: bool = True) -> AbstractContextManager[None]:
        """A write transaction on `conn`: one writer at a time across every process, so
        a record committed later always has a larger id. `ordered=False`: a transaction
        that draws no such id, which may then run beside the others (PostgreSQL), taking
        row locks (`lock_job`) instead."""
        ...

    def lock_job(self, conn: Any, job_id: int) -> None:
        """Lock the job's row until the transaction ends (a no-op where writers take
        turns anyway)."""
        ...

    def lock_family(self, conn: Any, job_id: int) -> None:
        """`lock_job` of the job's parent (or of the job itself, without one)."""
        ...

    def read(self, conn: Any) -> AbstractContextManager[None]:
        """A read transaction on `conn`: one consistent snapshot."""
        ...

    def insert(
        self, conn: Any, table: str, columns: tuple[str, ...], values: tuple[Any, ...]
    ) -> int:
        """Insert one row and return its new id."""
        ...

    def schema_version(self, conn: Any) -> int:
        """The version of the store's schema (0: an empty database)."""
        ...

    def migrations(self, version: int) -> list[str]:
        """The statements that bring a schema at `version` up to date."""
        ...

    def set_schema_version(self, conn: Any, version: int) -> None: ...

    def receive_turn(self, conn: Any, ids: list[int]) -> AbstractContextManager[None]:
        """This process's turn to deliver the output of jobs `ids` (receivers in every
        process take turns, so no record is delivered twice)."""
        ...

    def migrate_on_open(self, version: int) -> bool:
        """Whether opening the store may bring a schema at `version` up to date itself."""
        ...


def open_database(location: str | Any) -> Database:
    """The database at `location`: a path, `sqlite:///PATH` or `postgresql://...`."""
    text = str(location)
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in POSTGRES_SCHEMES:
        from runner.errors import UsageError
        from runner.jobs.postgres import PostgresDatabase
        from runner.jobs.urls import check_url, mask_url

        wrong = check_url(text, POSTGRES_SCHEMES)
        if wrong is not None:
            raise UsageError(f"job store {mask_url(text)}: {wrong}")
        return PostgresDatabase(text)
    from runner.jobs.sqlite import SQLiteDatabase

    if scheme == "sqlite":
        return SQLiteDatabase(sqlite_path(text))
    if scheme:
        from runner.errors import StoreError
        from runner.jobs.urls import mask_url

        raise StoreError(
            mask_url(text), "a job store URL is sqlite:///PATH or postgresql://HOST/DB"
        )
    return SQLiteDatabase(text)


def sqlite_path(url: str) -> str:
    """The file of a `sqlite:///PATH` URL (`sqlite:////abs` and `sqlite:///rel` alike)."""
    return url.split("://", 1)[1][1:] or "."
