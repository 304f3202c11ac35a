"""Shared fixtures: the real sshd fleet (one per test session), a fresh RUNNER_HOME, the
`runner` command line (`runner_cli`, alias `cli`), the distributed mode's real servers
(`postgres_server` and `pg_url`, `redis_server` and `redis_url`), and session checks that
the suite leaves nothing in the real ~/.runner of this machine (every fleet host's home)
and no server of tests/services.py running."""

from __future__ import annotations

import itertools
import os
import pwd
import sqlite3
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis.configuration import set_hypothesis_home_dir

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `from tests.fleet import ...` from any test module
    sys.path.insert(0, str(ROOT))

from tests.cli import Cli
from tests.fleet import Fleet, sshd_available
from tests.services import (
    PostgresServer,
    RedisServer,
    left_running,
    postgres_missing,
    redis_missing,
)

FLEET_SIZE = 5

# Hypothesis keeps a cache in `.hypothesis/` of the working directory, the repository's:
# under xdist it appeared there while another process checked the README's commands
# create nothing else. It lives in the temporary directory instead.
set_hypothesis_home_dir(
    os.path.join(tempfile.gettempdir(), f"runner-tests-hypothesis-{os.getuid()}")
)


@pytest.fixture(scope="session")
def fleet() -> Iterator[Fleet]:
    """Five real sshd hosts on 127.0.0.2-6, stopped (with their children) at the end."""
    if not sshd_available():
        pytest.skip("OpenSSH server not installed (/usr/sbin/sshd, ssh-keygen): run tests/run.sh")
    with Fleet(FLEET_SIZE) as running:
        yield running


def skip_unless_installed(missing: str | None) -> None:
    """Skip the test when a server it needs cannot run here; in CI (`CI` set) fail instead,
    since tests/run.sh installs every one of them."""
    if missing is None:
        return
    reason = f"{missing}: run tests/run.sh"
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL on 127.0.0.1 for the session, stopped by its PID at the end."""
    skip_unless_installed(postgres_missing())
    with PostgresServer() as server:
        yield server


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> str:
    """The URL of an empty database of its own for this test only."""
    return postgres_server.fresh_database()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real Redis on 127.0.0.1 for the session, stopped by its PID at the end."""
    skip_unless_installed(redis_missing())
    with RedisServer() as server:
        yield server


_REDIS_DBS = itertools.cycle(range(15))  # Redis's logical databases 0-14 (15: e2e's shared)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of a Redis database emptied for this test."""
    db = next(_REDIS_DBS)
    redis_server.cli("flushdb", db=db)
    return redis_server.url(db)


@pytest.fixture(scope="session", autouse=True)
def no_server_left_running() -> Iterator[None]:
    """Fail the session if a PostgreSQL or Redis that a test started still runs at its end
    (set up first, so checked after every session fixture has stopped its server)."""
    yield
    left = left_running()
    if left:
        pytest.fail(f"servers left running: {', '.join(map(repr, left))}", pytrace=False)


@pytest.fixture
def runner_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty RUNNER_HOME for this test only (job store, known_hosts...)."""
    home = tmp_path / "runner-home"
    home.mkdir()
    monkeypatch.setenv("RUNNER_HOME", str(home))
    return home


@pytest.fixture
def runner_cli(tmp_path: Path) -> Cli:
    """`runner` as a user runs it, with RUNNER_HOME tmp_path/home, in tmp_path/work."""
    work = tmp_path / "work"
    work.mkdir()
    return Cli(tmp_path / "home", work)


@pytest.fixture
def cli(runner_cli: Cli) -> Cli:
    """The name most tests use for `runner_cli`."""
    return runner_cli


@pytest.fixture(scope="session", autouse=True)
def nothing_left_in_the_real_runner_home(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[None]:
    """Fail the session if a job of this suite left its job directory in a real home.

    Other suites may run on this machine at the same time, so a plain before/after listing
    of ~/.runner would blame them too: the check takes the job directories this session's
    job stores (under its base temp dir) recorded, and fails on any that sits in the real
    ~/.runner and is still there.
    """
    yield
    left = _left_in_real_homes(tmp_path_factory.getbasetemp())
    if left:
        pytest.fail(
            "the suite left job directories in the real ~/.runner (give the inventory"
            f" runner_job_dir under the test's tmp_path): {', '.join(left)}",
            pytrace=False,
        )


def real_runner_homes() -> set[Path]:
    """The ~/.runner of this user as sshd sees it (passwd) and as a local step sees it."""
    homes = {Path(pwd.getpwuid(os.getuid()).pw_dir), Path(os.environ.get("HOME", "/"))}
    return {home / ".runner" for home in homes}


def _left_in_real_homes(base: Path) -> list[str]:
    """Job directories recorded under `base` that exist in a real ~/.runner."""
    roots = real_runner_homes()
    left = []
    for remote_dir in _recorded_job_directories(base):
        candidates = (
            [root.parent / remote_dir[2:] for root in roots]
            if remote_dir.startswith("~/")
            else [Path(remote_dir)]
        )
        for path in candidates:
            if any(root in path.parents for root in roots) and path.is_dir():
                left.append(str(path))
    return sorted(set(left))


def _recorded_job_directories(base: Path) -> list[str]:
    """Every job directory named in a job store under `base` (stores that cannot be read,
    such as the deliberately broken ones of the fault tests, are skipped)."""
    found = []
    for store in base.rglob("jobs.db"):
        try:
            conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
            try:
                rows = conn.execute("SELECT remote_dir FROM jobs WHERE remote_dir IS NOT NULL")
                found += [row[0] for row in rows]
            finally:
                conn.close()
        except sqlite3.Error:
            continue
    return found
