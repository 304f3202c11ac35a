"""Real PostgreSQL and Redis servers on loopback, for the distributed mode's tests.

Each server lives in its own temporary directory on a free high port, is started by the
test run itself and stopped by the PID it recorded (never by name: other suites run on
this machine at the same time). PostgreSQL refuses to run as root, so its directory
belongs to the `postgres` user and its programs run through `runuser`. Every server
started is kept in `STARTED`, so a session can check that none is left running::

    with PostgresServer() as pg, RedisServer() as redis:
        url = pg.fresh_database()
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Self

POSTGRES_LIBS = Path("/usr/lib/postgresql")
POSTGRES_USER = "postgres"
DATABASE_USER = "runner"
START_ATTEMPTS = 5
GONE_TIMEOUT = 60.0
READY_TIMEOUT = 60.0


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's bin directory (Debian's layout), or None."""
    found = sorted(POSTGRES_LIBS.glob("*/bin/initdb"), key=lambda p: _version(p.parent.parent))
    return found[-1].parent if found else None


def _version(directory: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in directory.name.split(".") if part.isdigit())


def postgres_missing() -> str | None:
    """Why this machine cannot run the test PostgreSQL, or None when it can."""
    if postgres_bin() is None:
        return "PostgreSQL's server is not installed (/usr/lib/postgresql/*/bin/initdb)"
    if shutil.which("runuser") is None or os.geteuid() != 0:
        return "starting PostgreSQL as its own user needs root and runuser"
    try:
        pwd.getpwnam(POSTGRES_USER)
    except KeyError:
        return f"no '{POSTGRES_USER}' user to run PostgreSQL as"
    return None


def redis_missing() -> str | None:
    """Why this machine cannot run the test Redis, or None when it can."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        return "Redis's server is not installed (redis-server, redis-cli)"
    return None


def free_port() -> int:
    """A port the kernel says is free on 127.0.0.1 now (a server may still lose a race)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pid_alive(pid: int) -> bool:
    """True while `pid` is a running process (a zombie nobody reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def port_accepts(port: int) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:`port`."""
    with socket.socket() as s:
        s.settimeout(5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def end_process(pid: int, first: int = signal.SIGTERM) -> None:
    """Send `first` to `pid`, SIGKILL if it is still there after a while; wait until gone."""
    for sig in (first, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        if _wait_gone(pid, GONE_TIMEOUT / 2):
            return
    raise RuntimeError(f"process {pid} did not end after SIGKILL")


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class Server:
    """A server of the test run: a directory, a port, the PID it runs as once started."""

    kind = "server"

    def __init__(self, ports: Iterable[int] | None = None) -> None:
        self.directory = Path()
        self.port = 0
        self.pid: int | None = None
        self._ports: Callable[[], Iterator[int]] = (
            (lambda: iter(ports)) if ports is not None else _free_ports
        )

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"{self.kind} pid {self.pid} on 127.0.0.1:{self.port} ({self.directory})"

    def start(self) -> None:
        """Start on the first port that works, up to START_ATTEMPTS ports."""
        self.directory = Path(tempfile.mkdtemp(prefix=f"runner-{self.kind}-"))
        try:
            self._prepare()
            why = self._start_on_a_free_port()
        except BaseException:
            self._remove()
            raise
        if why is not None:
            self._remove()
            raise RuntimeError(f"{self.kind} did not start: {why}")
        STARTED.append(self)

    def _start_on_a_free_port(self) -> str | None:
        failures = []
        for _, port in zip(range(START_ATTEMPTS), self._ports(), strict=False):
            self.port = port
            why = self._start_on(port)
            if why is None:
                return None
            failures.append(f"port {port}: {why}")
        return "; ".join(failures)

    def stop(self) -> None:
        """Stop the server by its PID and remove its directory; waits until it is gone."""
        if self.pid is not None:
            self._stop()
            self.pid = None
        self._remove()

    def _remove(self) -> None:
        if self.directory != Path():
            shutil.rmtree(self.directory, ignore_errors=True)

    def _prepare(self) -> None:
        """What is made once, whatever the port (PostgreSQL's data directory)."""

    def _start_on(self, port: int) -> str | None:
        """Start on `port`, setting `pid`; why it did not, or None."""
        raise NotImplementedError

    def _stop(self) -> None:
        raise NotImplementedError


def _free_ports() -> Iterator[int]:
    while True:
        yield free_port()


STARTED: list[Server] = []  # every server this process started, for the session's check


def left_running() -> list[Server]:
    """The servers started by this process whose PID still runs."""
    return [s for s in STARTED if s.pid is not None and pid_alive(s.pid)]


class PostgresServer(Server):
    """A PostgreSQL cluster of its own, run as `postgres`, reached as `runner` without a
    password on 127.0.0.1 (trust authentication: nothing else can reach loopback here)."""

    kind = "postgres"

    def __init__(self, ports: Iterable[int] | None = None) -> None:
        super().__init__(ports)
        self.bin = postgres_bin() or Path("/nonexistent")

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def url(self) -> str:
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        """The URL of database `name` of this server."""
        return f"postgresql://{DATABASE_USER}@127.0.0.1:{self.port}/{name}"

    def fresh_database(self) -> str:
        """Create an empty database with a new name; its URL."""
        name = f"t_{secrets.token_hex(6)}"
        self.psql(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run `sql` with psql on this server; its output (tuples only, unaligned)."""
        command = [str(self.bin / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
        command += ["-h", "127.0.0.1", "-p", str(self.port), "-U", DATABASE_USER]
        command += ["-d", database, "-c", sql]
        return subprocess.run(
            command, capture_output=True, text=True, check=True, timeout=120
        ).stdout

    def _as_postgres(self, *command: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["runuser", "-u", POSTGRES_USER, "--", *map(str, command)],
            capture_output=True,
            text=True,
            check=False,
            stdin=subprocess.DEVNULL,
            timeout=READY_TIMEOUT * 2,
        )

    def _prepare(self) -> None:
        user = pwd.getpwnam(POSTGRES_USER)
        os.chown(self.directory, user.pw_uid, user.pw_gid)
        done = self._as_postgres(
            self.bin / "initdb", "-D", self.data, "-A", "trust", "-U", DATABASE_USER, "-N"
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stdout}{done.stderr}")

    def _start_on(self, port: int) -> str | None:
        options = f"-p {port} -k {self.directory} -c listen_addresses=127.0.0.1"
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        log = self.directory / "log"
        done = self._as_postgres(
            self.bin / "pg_ctl", "-D", self.data, "-o", options, "-l", log, "-w",
            "-t", str(int(READY_TIMEOUT)), "start",
        )  # fmt: skip
        pid = self._postmaster_pid()
        if done.returncode == 0 and pid is not None:
            self.pid = pid
            return None
        if pid is not None:  # started, but pg_ctl gave up waiting for it
            end_process(pid, signal.SIGQUIT)
        return (done.stderr.strip() or done.stdout.strip())[-300:]

    def restart(self) -> None:
        """Stop (fast: every connection is cut) and start again on the same port, as a
        database server restarted under its clients."""
        assert self.pid is not None and self.port is not None
        self._stop()
        failure = self._start_on(self.port)
        if failure is not None:
            raise RuntimeError(f"PostgreSQL did not start again: {failure}")

    def _postmaster_pid(self) -> int | None:
        """The postmaster's PID from its pid file, while it runs."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def _stop(self) -> None:
        assert self.pid is not None
        self._as_postgres(self.bin / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")
        end_process(self.pid, signal.SIGQUIT)  # at once when pg_ctl stopped it


class RedisServer(Server):
    """A Redis server of its own that keeps nothing on disk, in a session of its own."""

    kind = "redis"
    _process: subprocess.Popen[bytes] | None = None

    @property
    def pid_file(self) -> Path:
        return self.directory / "redis.pid"

    def url(self, db: int = 0) -> str:
        """The URL of logical database `db` (0-15) of this server."""
        return f"redis://127.0.0.1:{self.port}/{db}"

    def cli(self, *args: str, db: int = 0, timeout: float = 60) -> str:
        """Run redis-cli against this server; its output without the last newline (empty
        when it does not answer within `timeout` seconds)."""
        command = ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), "-n", str(db), *args]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, check=False, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            return ""
        return done.stdout.rstrip("\n")

    def _start_on(self, port: int) -> str | None:
        # In the foreground, as a child of this process: a port lost to another server
        # shows at once as its exit (a daemonized one would die unseen before its pid file).
        command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        command += ["--pidfile", str(self.pid_file), "--dir", str(self.directory)]
        command += ["--logfile", str(self.directory / "redis.log")]
        self._process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.directory
        )
        return self._wait_ready(self._process)

    def _wait_ready(self, process: subprocess.Popen[bytes]) -> str | None:
        """Wait until this very server answers: its pid file, written once it listens,
        names its PID, and the server answering on the port has that PID."""
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return f"redis-server exited {process.returncode}: " + self._log_tail()
            if self._pid() == process.pid and self.cli("ping", timeout=5) == "PONG":
                if f"process_id:{process.pid}" in self.cli("info", "server").replace("\r", ""):
                    self.pid = process.pid
                    return None
                break  # another server answers on this port
            time.sleep(0.05)
        end_process(process.pid)
        process.wait()
        return "not ready in time, or the port is another server's: " + self._log_tail()

    def _pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return (self.directory / "redis.log").read_text()[-300:]
        return ""

    def _stop(self) -> None:
        assert self.pid is not None
        end_process(self.pid)
        if self._process is not None:
            self._process.wait()  # reap it
