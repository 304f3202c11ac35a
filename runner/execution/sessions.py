"""Connections for a run: persistent named sessions, and temporary ones.

A job that names a `session:` reuses one connection per host for the whole run, shared
by every job naming that session (like New-PSSession). A job with `targets:` opens a
temporary connection per host, closed when its child ends (like -ComputerName). The
inventory's `ansible_*` variables, then the session's own keys, say how to connect.
"""

from __future__ import annotations

import contextlib
import getpass
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.connections.base import Connection, ConnectionSpec, JumpHost
from runner.connections.local import LocalConnection
from runner.errors import ConnectError
from runner.planning.planner import JobPlan, Plan

if TYPE_CHECKING:
    from runner.execution.executor import RunOptions
    from runner.planning.inventory.connvars import Hop, HostConnection
    from runner.planning.model import SessionDef

# Handshakes opened ahead at most at once, whatever the forks: on a loaded controller
# more only add threads competing for the interpreter and memory, not speed
# (BENCHMARKS.md, "500 hosts"); a handshake is a few round trips, so 100 at once still
# open some 100 connections a second at 100 ms of round-trip time.
HANDSHAKES_AT_ONCE = 100

_Key = tuple[str, str, str]  # ("session", session, host) or ("job", job, host)


class SessionPool:
    """Opens, shares and closes the connections of one run."""

    def __init__(self, plan: Plan, options: RunOptions | None) -> None:
        """`options` None: a background worker's pool, which opens only `local` ones."""
        self.plan = plan
        self.options = options
        self._sessions: dict[_Key, Connection] = {}
        self._failures: dict[_Key, ConnectError] = {}
        self._locks: dict[_Key, threading.Lock] = {}
        self._lock = threading.Lock()
        self._local: dict[str, LocalConnection] = {}
        self._pending: dict[_Key, Future[Connection]] = {}
        self._prefetcher: ThreadPoolExecutor | None = None

    @property
    def _options(self) -> RunOptions:
        assert self.options is not None, "a pool without options opens only local connections"
        return self.options

    def prefetch(self, jobs: list[JobPlan], limit: int, host: str | None = None) -> None:
        """Start opening the connections the first jobs will ask for (on `host` only, if
        given), `limit` at a time, so that handshakes overlap the rest of start-up (and
        each other). A failure is kept and raised where the job asks for the connection."""
        wanted = [
            (_key(jp, name), name, jp.session)
            for jp in jobs
            if jp.job.type == "remote" and not jp.job.needs
            for name in jp.hosts
            if host is None or name == host
        ]
        wanted = list({key: (key, host, s) for key, host, s in wanted}.values())
        if not wanted:
            return
        at_once = min(limit, len(wanted), HANDSHAKES_AT_ONCE)
        self._prefetcher = ThreadPoolExecutor(at_once, "connect")
        for key, host, session in wanted:
            self._pending[key] = self._prefetcher.submit(self.connect, host, session)

    def opening(self, jp: JobPlan, host: str) -> Future[Connection] | None:
        """The handshake started ahead for `jp` on `host`, while it has not been taken."""
        with self._lock:
            return self._pending.get(_key(jp, host))

    def cancel_pending(self) -> None:
        """Open no more connections ahead (the run is stopping): the handshakes not yet
        begun are dropped; a child that still asks for its connection opens it then."""
        with self._lock:
            pending = list(self._pending.values())
        for future in pending:
            future.cancel()

    def _take_pending(self, key: _Key) -> Connection | None:
        with self._lock:
            future = self._pending.pop(key, None)
        if future is None or future.cancelled():
            return None
        return future.result()

    def local(self, host: str) -> LocalConnection:
        """The controller itself, for `local:` steps and thread jobs."""
        with self._lock:
            conn = self._local.get(host)
            if conn is None:
                conn = self._local[host] = LocalConnection(host)
        return conn

    def spec(self, host: str, session: SessionDef | None = None) -> ConnectionSpec:
        """How to reach `host`, as data: kept on jobs so a later invocation can reconnect.
        Without its passwords: the job store keeps no secret."""
        spec = connection_spec(self.plan, host, session, self._options.connect_timeout)
        return spec.without_secrets()

    def connect(self, host: str, session: SessionDef | None = None) -> Connection:
        """A new, open connection to `host` as the inventory (and session) describe it."""
        spec = connection_spec(self.plan, host, session, self._options.connect_timeout)
        return open_connection(host, spec, self._options.known_hosts)

    def acquire(self, jp: JobPlan, host: str) -> Connection:
        """The session's connection to `host` (opened once), or a temporary one."""
        key = _key(jp, host)
        if jp.session is None:
            return self._take_pending(key) or self.connect(host)
        return self._shared(key, lambda: self._take_pending(key) or self.connect(host, jp.session))

    def delegate(self, host: str) -> Connection:
        """A connection to `host` for the steps delegated to it (`delegate_to`): opened
        when first asked for, then shared by every child of the run until it ends."""
        return self._shared(("delegate", "", host), lambda: self.connect(host))

    def _shared(self, key: _Key, opener: Callable[[], Connection]) -> Connection:
        """The run's connection under `key`, opened by `opener` once (again if it closed);
        a failure to open it is kept and raised to every later asker."""
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key in self._failures:
                raise self._failures[key]
            conn = self._sessions.get(key)
            if conn is None or not conn.is_open:
                try:
                    conn = opener()
                except ConnectError as exc:
                    self._failures[key] = exc
                    raise
                self._sessions[key] = conn
            return conn

    def forget_failure(self, jp: JobPlan, host: str) -> None:
        """Let the next `acquire` try `host` again (a child retried after it was out of
        reach) instead of raising the failure kept for its session."""
        with self._lock:
            self._failures.pop(_key(jp, host), None)

    def release(self, jp: JobPlan, host: str, conn: Connection) -> None:
        """Close a temporary connection; a session's stays open for the next job."""
        if jp.session is None:
            conn.close()

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
            pending, self._pending = list(self._pending.values()), {}
        if self._prefetcher is not None:  # a handshake still going is not waited for
            self._prefetcher.shutdown(wait=False, cancel_futures=True)
        for future in pending:  # opened ahead and never used: closed once open
            future.add_done_callback(_close_opened)
        for conn in sessions:
            with contextlib.suppress(Exception):  # closing at exit must not hide the result
                conn.close()


def _close_opened(future: Future[Connection]) -> None:
    if future.cancelled() or future.exception() is not None:
        return
    with contextlib.suppress(Exception):  # closing at exit must not hide the result
        future.result().close()


def _key(jp: JobPlan, host: str) -> _Key:
    """A session's connection is shared by its jobs; a temporary one is the job's own."""
    return ("session", jp.session.name, host) if jp.session else ("job", jp.name, host)


def connection_spec(
    plan: Plan, host: str, session: SessionDef | None, connect_timeout: float
) -> ConnectionSpec:
    """The inventory's `ansible_*` variables for `host`, with a session's overrides."""
    info = plan.inventory.connection(host)
    if session is not None and session.connect_timeout:
        connect_timeout = session.connect_timeout
    given = plan.inventory.host_vars(host)
    config: dict[str, Any] = {}
    if info.connection != "local":
        from runner.connections.sshconfig import lookup

        config = lookup(info.address)
    port = session.port if session is not None and session.port else None
    if port is None:
        port = info.port if "ansible_port" in given else config.get("port", info.port)
    user = session.user if session is not None and session.user else info.user
    return ConnectionSpec(
        connection=info.connection,
        address=info.address if "ansible_host" in given else config.get("address", info.address),
        port=port,
        user=user or config.get("user") or getpass.getuser(),
        key_file=info.key_file or config.get("key_file"),
        connect_timeout=connect_timeout,
        step_shell=info.step_shell,
        password=info.password,
        become=info.become,
        become_user=info.become_user,
        become_password=info.become_password,
        jump=tuple(_hop(hop, info) for hop in info.jump),
        proxy_command=info.proxy_command,
    )


def _hop(hop: Hop, target: HostConnection) -> JumpHost:
    """A jump host as ssh would reach it: what `-J` says, then ~/.ssh/config, then the
    target's user and key (a bastion usually takes the same key)."""
    from runner.connections.sshconfig import lookup

    config = lookup(hop.address)
    return JumpHost(
        address=config.get("address", hop.address),
        port=hop.port or config.get("port", 22),
        user=hop.user or config.get("user") or target.user or getpass.getuser(),
        key_file=config.get("key_file") or target.key_file,
    )


def open_connection(host: str, spec: ConnectionSpec, known_hosts: Path | None = None) -> Connection:
    """Open a connection from a `connection_spec`; ConnectError if the host cannot be had."""
    if spec.connection == "local":
        conn: Connection = LocalConnection(host)
    else:
        from runner.connections.ssh import SSHConnection

        conn = SSHConnection(
            host,
            address=spec.address,
            port=spec.port,
            user=spec.user or "root",
            key_file=spec.key_file,
            connect_timeout=spec.connect_timeout,
            known_hosts=known_hosts,
            step_shell=spec.step_shell,
            password=spec.password,
            become=spec.become,
            become_user=spec.become_user,
            become_password=spec.become_password,
            jump=spec.jump,
            proxy_command=spec.proxy_command,
        )
    conn.open()
    return conn
