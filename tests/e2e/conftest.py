"""End-to-end fixtures: the fleet's inventory (`cli`, the `runner` command, is in
tests/conftest.py), and the two workers that a module's tests in "workers" mode share."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.cli import Cli, wait_until
from tests.workers import Worker, distributed_env, idle, reset_store, workers

SHARED_REDIS_DB = 15  # kept out of `redis_url`'s cycle (tests/conftest.py)
IDLE_TIMEOUT = 10.0  # a test whose children ran to their end leaves them idle at once


@pytest.fixture
def inventory(fleet: Any, tmp_path: Path) -> str:
    """An INI inventory of the whole fleet: group `fleet`, hosts host1..host5."""
    return str(fleet.write_inventory(tmp_path / "hosts.ini"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A module that sets `BOTH_MODES = True` runs each of its tests twice: children in
    the runner ("local"), and on two `runner worker` processes over a real Redis and
    PostgreSQL ("workers"): the same playbooks must give the same results."""
    if getattr(metafunc.module, "BOTH_MODES", False) and "cli" in metafunc.fixturenames:
        metafunc.parametrize("cli", ["local", "workers"], indirect=True)


class SharedWorkers:
    """Two workers, a database and a Redis database that the "workers" tests of one module
    take in turn: each test gets the store emptied (job ids from 1) once the last test's
    children have ended, or new workers on a new database when they did not end in time or
    a worker is gone (a test killed it)."""

    def __init__(self, request: pytest.FixtureRequest, tmp: Path) -> None:
        self.postgres = request.getfixturevalue("postgres_server")
        self.redis = request.getfixturevalue("redis_server")
        self.tmp = tmp
        self.rounds = 0
        self.store = self.broker = ""
        self.workers: list[Worker] = []
        self._stack = ExitStack()

    def for_a_test(self) -> tuple[str, str, list[Worker]]:
        """The store, broker and workers, ready and empty for the next test."""
        if self.workers and self._reusable():
            return self.store, self.broker, self.workers
        self.close()
        self.rounds += 1
        self.store = self.postgres.fresh_database()
        self.redis.cli("flushdb", db=SHARED_REDIS_DB)
        self.broker = self.redis.url(SHARED_REDIS_DB)
        started = workers(self.store, self.broker, self.tmp / f"round{self.rounds}")
        self.workers = self._stack.enter_context(started)
        return self.store, self.broker, self.workers

    def _reusable(self) -> bool:
        if any(worker.proc.poll() is not None for worker in self.workers):
            return False
        try:
            wait_until(lambda: idle(self.store, self.broker), IDLE_TIMEOUT, "idle workers")
            reset_store(self.store)
        except Exception:  # not idle in time, or the store refused: start afresh
            return False
        return True

    def close(self) -> None:
        """Stop the workers (SIGKILL, by PID)."""
        self._stack.close()
        self.workers = []


@pytest.fixture(scope="module")
def module_workers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SharedWorkers]:
    """The workers that this module's "workers" tests share, stopped at its end."""
    shared = SharedWorkers(request, tmp_path_factory.mktemp("module-workers"))
    try:
        yield shared
    finally:
        shared.close()


@pytest.fixture
def cli(runner_cli: Cli, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cli]:
    """`runner` as a user runs it; in "workers" mode with RUNNER_STORE and RUNNER_BROKER
    set and two workers taking its children (`cli.workers`): the module's shared ones, or,
    for a test marked `own_workers` (it kills a worker, starts more, or needs a fresh
    broker), two of its own."""
    if getattr(request, "param", "local") == "local":
        runner_cli.workers = []
        yield runner_cli
        return
    if request.node.get_closest_marker("own_workers") is None:
        store, broker, shared = request.getfixturevalue("module_workers").for_a_test()
        runner_cli.env = distributed_env(runner_cli.env, store, broker)
        runner_cli.workers = shared
        yield runner_cli
        return
    store = request.getfixturevalue("pg_url")
    broker = request.getfixturevalue("redis_url")
    runner_cli.env = distributed_env(runner_cli.env, store, broker)
    with workers(store, broker, tmp_path) as started:
        runner_cli.workers = started
        yield runner_cli
