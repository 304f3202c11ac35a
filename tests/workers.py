"""`runner worker` processes for the tests of the distributed mode: real Celery workers
over a real Redis and PostgreSQL (tests/services.py), each its own process, stopped by
PID at the end (SIGTERM, then SIGKILL)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.cli import RUNNER, runner_env, wait_until

# Heartbeats in the tests: a lost worker or controller is known within 6 s, not 30.
HEARTBEAT_TIMEOUT = "6"


class Worker:
    """One `runner worker` process."""

    def __init__(self, name: str, env: dict[str, str], log: Path, *args: str) -> None:
        self.name = name
        self.log = log
        with log.open("w") as out:
            self.proc = subprocess.Popen(
                [*RUNNER, "worker", "--name", name, *args],
                env=env,
                cwd=log.parent,  # relative result paths land in the test's own directory
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL, as the OOM killer ends a worker: nothing of it runs on."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def distributed_env(base: dict[str, str], store: str, broker: str) -> dict[str, str]:
    """`base` with the store and broker every command of the distributed mode reads."""
    return {
        **base,
        "RUNNER_STORE": store,
        "RUNNER_BROKER": broker,
        "RUNNER_HEARTBEAT_TIMEOUT": HEARTBEAT_TIMEOUT,
    }


@contextmanager
def workers(
    store: str, broker: str, tmp: Path, count: int = 2, *args: str
) -> Iterator[list[Worker]]:
    """`count` workers (w1, w2, ...), each with a RUNNER_HOME of its own, ready when their
    heartbeats are in the store; all stopped at the end."""
    started: list[Worker] = []
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        for n in range(1, count + 1):
            home = tmp / f"worker{n}"
            env = distributed_env(runner_env(home), store, broker)
            started.append(Worker(f"w{n}", env, tmp / f"worker{n}.log", *args))
        wait_until(lambda: _beating(store) >= count, 60, "the workers' heartbeats")
        yield started
    finally:
        for worker in started:  # disposable: SIGKILL, not a warm shutdown of seconds
            worker.kill()


# What a test leaves in the store; the workers' own rows in `owners` stay (they beat on).
_RESET = (
    "TRUNCATE jobs, steps, output, remote_streams, events RESTART IDENTITY CASCADE",
    "DELETE FROM owners WHERE kind <> 'worker'",
)
_UNFINISHED = (
    "SELECT count(*) FROM jobs WHERE worker_id IS NOT NULL"
    " AND state IN ('NotStarted', 'Running', 'Stopping', 'Blocked', 'Disconnected')"
)


def idle(store: str, broker: str) -> bool:
    """Whether no child that a worker took is unfinished in `store` and no task waits in
    `broker` (queued, or taken and unacknowledged): nothing of one test runs on into the
    next on the same workers."""
    import psycopg
    import redis

    try:
        with psycopg.connect(store, autocommit=True) as conn:
            row = conn.execute(_UNFINISHED).fetchone()
        client = redis.Redis.from_url(broker)
        try:
            waiting = client.llen("runner") + client.hlen("unacked")
        finally:
            client.close()
    except (psycopg.Error, redis.RedisError):
        return False
    return bool(row) and int(row[0]) == 0 and waiting == 0


def reset_store(store: str) -> None:
    """Empty `store` for the next test (job ids from 1 again), keeping the workers'
    heartbeats; a worker holding a lock for 10 s makes it raise psycopg.Error."""
    import psycopg

    with psycopg.connect(store, autocommit=True) as conn:
        conn.execute("SET lock_timeout = '10s'")
        for statement in _RESET:
            conn.execute(statement)


def _beating(store: str) -> int:
    import psycopg

    try:
        with psycopg.connect(store, autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM owners WHERE kind = 'worker'").fetchone()
    except psycopg.Error:
        return 0
    return int(row[0]) if row else 0


def ran_on_worker(pid: int, worker_pids: list[int]) -> bool:
    """Whether process `pid`'s parent chain leads to one of the workers."""
    seen = 0
    while pid > 1 and seen < 64:
        if pid in worker_pids:
            return True
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        seen += 1
    return False


def wait_gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False
