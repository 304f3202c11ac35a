"""End-to-end fixtures: the fleet's inventory (`cli`, the `runner` command, is in
tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli import Cli
from tests.workers import distributed_env, workers


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


@pytest.fixture
def cli(runner_cli: Cli, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cli]:
    """`runner` as a user runs it; in "workers" mode with RUNNER_STORE and RUNNER_BROKER
    set and two workers taking its children (`cli.workers`)."""
    if getattr(request, "param", "local") == "local":
        runner_cli.workers = []
        yield runner_cli
        return
    store = request.getfixturevalue("pg_url")
    broker = request.getfixturevalue("redis_url")
    runner_cli.env = distributed_env(runner_cli.env, store, broker)
    with workers(store, broker, tmp_path) as started:
        runner_cli.workers = started
        yield runner_cli
