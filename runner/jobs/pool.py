"""The job store's connections, shared by its threads: a few, lent one transaction at a time.

A run with `-f 100` has a hundred threads that touch the store for a moment each; holding
a connection per thread cost a PostgreSQL store a hundred connections per run, each a new
server process started on the run's critical path. The pool lends an idle connection for
one transaction or query and takes it back after; at most `size` are lent at once, and a
thread that already holds one (a receiver's turn, with its transactions inside) is never
made to wait for a second, so nothing waits on itself.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from typing import Any

POOL_SIZE = 8  # connections lent at once; writers take turns on the write lock anyway

# Connections a forked child inherited from its parent, kept open on purpose: neither
# database allows closing them in the child.
INHERITED: list[Any] = []


class ConnectionPool:
    """Connections made by `connect`, lent to the threads of one process."""

    def __init__(self, connect: Callable[[], Any], size: int = POOL_SIZE) -> None:
        self._connect = connect
        self._size = size
        self._cond = threading.Condition()
        self._idle: list[Any] = []
        self._every: list[Any] = []
        self._lent = 0
        self._local = threading.local()
        self._pid = os.getpid()

    def take(self) -> Any:
        """An idle connection, or a new one; waits while `size` are lent to other threads."""
        self._after_fork()
        held = getattr(self._local, "held", 0)
        with self._cond:
            while held == 0 and self._lent >= self._size:
                self._cond.wait()
            self._lent += 1
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            try:
                conn = self._connect()
            except BaseException:
                self._returned(None)
                raise
            with self._cond:
                self._every.append(conn)
        self._local.held = held + 1
        return conn

    def give(self, conn: Any) -> None:
        """Take back a lent connection; one the database closed is forgotten."""
        self._local.held = getattr(self._local, "held", 1) - 1
        if self._pid != os.getpid():
            return
        raw = getattr(conn, "raw", None)
        self._returned(conn, gone=raw is not None and raw.closed)

    def _returned(self, conn: Any, gone: bool = False) -> None:
        with self._cond:
            self._lent -= 1
            if conn is not None and gone:
                if conn in self._every:
                    self._every.remove(conn)
            elif conn is not None and conn in self._every:
                self._idle.append(conn)
            self._cond.notify()

    def discard_idle(self) -> None:
        """Close the idle connections: the server went away, so they are as dead as the
        one that just failed, and the next try must connect afresh."""
        with self._cond:
            idle, self._idle = self._idle, []
            for conn in idle:
                self._every.remove(conn)
        for conn in idle:
            with contextlib.suppress(Exception):  # already gone: nothing to close
                conn.close()

    def _after_fork(self) -> None:
        """A forked child opens connections of its own instead of sharing its parent's."""
        if self._pid == os.getpid():
            return
        INHERITED.extend(self._every)
        self._cond = threading.Condition()
        self._idle, self._every, self._lent = [], [], 0
        self._local = threading.local()
        self._pid = os.getpid()

    def close(self) -> None:
        """Close every connection of the pool, idle or lent."""
        with self._cond:
            every, self._every, self._idle = self._every, [], []
        for conn in every:
            conn.close()
