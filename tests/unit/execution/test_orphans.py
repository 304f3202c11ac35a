"""Who owns a job, across machines and PID namespaces, and what reconcile ends when the
owner is gone: real processes, a real second PID namespace, a real SQLite file."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.api import jobs as api_jobs
from runner.errors import RunnerError
from runner.execution.orphans import end_processes
from runner.jobs.processes import Liveness, Owner, current_owner, judge, machine_id
from runner.jobs.sqlite import MIGRATIONS
from runner.jobs.sqlite import SCHEMA_VERSION as SQLITE_SCHEMA
from runner.jobs.states import JobState
from runner.jobs.store import JobStore
from tests.unit.jobs.test_store import _dead_pid

S = JobState


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "jobs.db"


@pytest.fixture
def store(db: Path) -> Iterator[JobStore]:
    """A store as `runner` opens it: it ends what a dead runner left running."""
    job_store = JobStore(db, end_processes=end_processes)
    yield job_store
    job_store.close()


ROOT = Path(__file__).resolve().parents[3]
needs_unshare = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare(1)"
)


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A real process that prints nothing, leading a process group of its own."""
    process = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield process
    process.kill()
    process.wait()


def _gone(process: subprocess.Popen[bytes], timeout: float = 30) -> bool:
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return False
    return True


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends: nothing listens


def _in_new_namespace(code: str, *, mount_proc: bool = True) -> str:
    """Run Python `code` in a second PID namespace; its stdout."""
    argv = [
        "unshare",
        "--pid",
        "--fork",
        *(["--mount-proc"] if mount_proc else []),
        sys.executable,
        "-c",
        code,
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, check=True)
    return done.stdout


# -- the owner's identity -------------------------------------------------------------------


def test_an_owner_is_this_machine_its_pid_namespace_pid_and_start_time() -> None:
    owner = current_owner()
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert owner.machine == machine_id() == f"{boot} {socket.gethostname()}"
    assert owner.pidns == os.stat("/proc/self/ns/pid").st_ino
    assert owner.pid == os.getpid() and owner.start is not None
    assert judge(owner) == Liveness.ALIVE


def test_only_an_owner_on_this_machine_and_in_this_namespace_is_judged() -> None:
    me = current_owner()
    dead = Owner(me.machine, me.pidns, _dead_pid(), me.start)
    assert judge(dead) == Liveness.GONE
    assert judge(Owner("another-boot another-host", me.pidns, dead.pid, None)) == Liveness.UNKNOWN
    assert judge(Owner(me.machine, me.pidns + 1, dead.pid, None)) == Liveness.UNKNOWN
    assert judge(Owner(me.machine, None, dead.pid, None)) == Liveness.UNKNOWN
    # a row from before owners carried their machine is judged by pid and start alone
    assert judge(Owner(None, None, dead.pid, None)) == Liveness.GONE


@needs_unshare
def test_an_owner_in_another_pid_namespace_is_not_judged_from_either_side() -> None:
    code = (
        "import json, os; from runner.jobs.processes import current_owner, judge; "
        "o = current_owner(); print(json.dumps([list(o.__dict__.values()), "
        "judge(o).value]))"
    )
    fields, inside = json.loads(_in_new_namespace(code))
    theirs = Owner(*fields)
    assert inside == "alive" and theirs.pid == 1  # pid 1 here is our init: not theirs
    assert theirs.pidns != current_owner().pidns
    assert judge(theirs) == Liveness.UNKNOWN
    mine = current_owner()
    code = (
        f"from runner.jobs.processes import Owner, judge; "
        f"print(judge(Owner({mine.machine!r}, {mine.pidns}, {mine.pid}, {mine.start})).value)"
    )
    assert _in_new_namespace(code).strip() == "unknown"


@needs_unshare
def test_a_proc_of_another_namespace_judges_nothing() -> None:
    """`unshare --pid --fork` without --mount-proc: /proc still lists the parent's pids."""
    mine = current_owner()
    code = (
        f"from runner.jobs.processes import Owner, judge, sees_own_namespace, current_owner; "
        f"me = current_owner(); "
        f"print(sees_own_namespace(), judge(Owner(me.machine, me.pidns, {mine.pid}, 0)).value)"
    )
    assert _in_new_namespace(code, mount_proc=False).split() == ["False", "unknown"]


# -- the store ----------------------------------------------------------------------------


def test_a_version_2_store_is_upgraded_in_place_and_its_jobs_kept(db: Path) -> None:
    db.parent.mkdir(parents=True)
    with sqlite3.connect(db) as raw:
        for statement in [*MIGRATIONS[0], *MIGRATIONS[1]]:
            raw.execute(statement)
        raw.execute("PRAGMA user_version = 2")
        raw.execute(
            "INSERT INTO jobs (name, type, state, location, command, results_to, owner_pid,"
            " created) VALUES ('old', 'thread', 'Running', 'localhost', 'sleep 9',"
            " 'controller', ?, 1.0)",
            (_dead_pid(),),
        )
    store = JobStore(db)
    try:
        assert store.get(1).name == "old" and store.get(1).owner_machine is None
        assert store.reconcile() == [1]  # judged by pid alone, as the runner that wrote it did
        assert store.get(1).state == S.Stopped
        new = store.create_job("new", "thread", "true", "localhost")
        assert store.get(new).owner == current_owner()
    finally:
        store.close()
    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SQLITE_SCHEMA
    JobStore(db).close()  # opening an upgraded store again changes nothing


def test_claim_records_the_whole_identity(store: JobStore) -> None:
    job = store.create_job("bg", "remote", "sleep 9", "a", detach=True, owner_pid=_dead_pid())
    store.claim(job)
    assert store.get(job).owner == current_owner()


@needs_unshare
def test_reconcile_leaves_a_job_owned_in_another_namespace_alone(db: Path) -> None:
    JobStore(db).close()
    code = (
        f"from runner.jobs.store import JobStore; s = JobStore({str(db)!r}); "
        f"j = s.create_job('theirs', 'thread', 'sleep 9', 'localhost'); "
        f"s.set_state(j, 'Running'); print(j)"
    )
    job = int(_in_new_namespace(code))
    store = JobStore(db)
    try:
        assert store.reconcile() == []  # its owner has ended, but not where we can see
        assert store.get(job).state == S.Running
    finally:
        store.close()


# -- reconcile ends what it knows of --------------------------------------------------------


def _orphan(store: JobStore, spec: dict | None = None, **runtime: int) -> int:
    """A Running job whose runner has ended, with a process group recorded on it."""
    job = store.create_job("work", "remote", "sleep 60", "web1", owner_pid=_dead_pid(), spec=spec)
    store.set_state(job, S.Running)
    store.set_runtime(job, **runtime)
    return job


def test_reconcile_ends_a_dead_runners_local_process_group_before_stopped(
    store: JobStore, sleeper: subprocess.Popen[bytes]
) -> None:
    job = _orphan(store, local_pid=sleeper.pid)
    assert store.reconcile() == [job]
    assert _gone(sleeper)
    assert store.get(job).state == S.Stopped and store.get(job).local_pid is None


def test_a_store_not_told_how_to_end_processes_never_calls_their_job_stopped(
    db: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    bare = JobStore(db)  # as a library caller might open it, without end_processes
    try:
        job = _orphan(bare, local_pid=sleeper.pid)
        assert bare.reconcile() == []
        assert bare.get(job).state == S.Running and sleeper.poll() is None
    finally:
        bare.close()
    owned = JobStore(db, end_processes=end_processes)
    try:
        assert owned.reconcile() == [job]
        assert _gone(sleeper)
    finally:
        owned.close()


def test_reconcile_never_signals_a_group_whose_pid_was_reused(
    store: JobStore, db: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    job = _orphan(store, local_pid=sleeper.pid)
    with sqlite3.connect(db) as raw:  # as if the group had ended and its pid been reused
        raw.execute("UPDATE jobs SET local_start = local_start - 1 WHERE id = ?", (job,))
    assert store.reconcile() == [job]
    assert sleeper.poll() is None


def test_reconcile_ends_a_group_recorded_on_a_target_it_can_reach(
    store: JobStore, sleeper: subprocess.Popen[bytes]
) -> None:
    # the target here is the controller itself, reached over the local transport
    job = _orphan(store, {"connection": {"connection": "local"}}, remote_pgid=sleeper.pid)
    assert store.reconcile() == [job]
    assert _gone(sleeper)
    assert store.get(job).state == S.Stopped and store.get(job).remote_pgid is None


def test_an_unreachable_target_is_named_and_a_later_stop_still_tries(
    store: JobStore, runner_home: Path
) -> None:
    spec = {
        "connection": {
            "connection": "ssh",
            "address": "127.0.0.1",
            "port": _closed_port(),
            "user": "root",
            "key_file": None,
            "connect_timeout": 5,
        }
    }
    job = _orphan(store, spec, remote_pgid=424242)
    assert store.reconcile() == [job]
    record = store.get(job)
    assert record.state == S.Disconnected and record.remote_pgid == 424242
    assert "cannot reach web1" in record.reason and "424242" in record.reason
    assert store.reconcile() == []  # Disconnected: not tried again on every command
    with pytest.raises(RunnerError, match="job .* on web1: cannot reach web1"):
        api_jobs.stop(store, [job], timeout=1)
    assert store.get(job).state == S.Disconnected and store.get(job).remote_pgid == 424242


def test_nothing_to_do_costs_one_query(store: JobStore) -> None:
    job = store.create_job("mine", "thread", "sleep 9", "localhost")
    store.set_state(job, S.Running)
    statements: list[str] = []
    conn = store._pool.take()  # the connection the next query is lent (the last idle)
    conn.set_trace_callback(statements.append)
    store._pool.give(conn)
    assert store.reconcile() == []
    assert len([s for s in statements if s.startswith("SELECT")]) == 1
    assert not [s for s in statements if "IMMEDIATE" in s]  # no write lock taken
