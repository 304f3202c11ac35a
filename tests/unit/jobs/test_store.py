"""The job store, on a real SQLite file and a real PostgreSQL database: jobs, state,
output and receive, several processes. Every test runs on both unless it is about the
file itself (`sqlite_only`)."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import stat
import subprocess
import sys
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from runner.errors import JobNotFoundError, JobStateError
from runner.jobs.states import JobState
from runner.jobs.store import JobStore
from runner.settings import runner_home, store_path

S = JobState
FORK = multiprocessing.get_context("fork")


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """Where the store is: a file (a Path), or a fresh PostgreSQL database (its URL)."""
    if request.param == "postgresql":
        if request.node.get_closest_marker("sqlite_only"):
            pytest.skip("about the SQLite file itself")
        return request.getfixturevalue("pg_url")
    return tmp_path / "state" / "jobs.db"


sqlite_only = pytest.mark.sqlite_only


@pytest.fixture
def store(db: Path):
    job_store = JobStore(db)
    yield job_store
    job_store.close()


def make_parent(store: JobStore, hosts: list[str], name: str = "deploy") -> tuple[int, list[int]]:
    """A remote parent job with one child per host, as the executor creates them."""
    parent = store.create_job(name, "remote", "echo hi", ",".join(hosts))
    children = [store.create_job(name, "remote", "echo hi", h, parent_id=parent) for h in hosts]
    return parent, children


def run_children(store: JobStore, children: list[int], outcomes: list[JobState]) -> None:
    """Start every child, then end each with its outcome."""
    for child, outcome in zip(children, outcomes, strict=True):
        store.set_state(child, S.Running)
        if outcome == S.Stopped:
            store.set_state(child, S.Stopping)
        if outcome != S.Running:
            store.set_state(child, outcome)


def texts(records) -> list[str]:
    return [record.data for record in records]


# -- jobs and their states ---------------------------------------------------------------


def test_a_job_over_three_hosts_has_three_children_and_completes_when_all_do(
    store: JobStore,
) -> None:
    parent, children = make_parent(store, ["web1", "web2", "db1"])
    assert [c.location for c in store.children(parent)] == ["web1", "web2", "db1"]
    assert store.get(parent).location == "web1,web2,db1"
    assert store.get(parent).child_ids == tuple(children)
    assert store.get(parent).state == S.NotStarted

    run_children(store, children, [S.Completed, S.Completed, S.Running])
    assert store.get(parent).state == S.Running
    store.set_state(children[2], S.Completed)
    assert store.get(parent).state == S.Completed
    assert store.get(parent).ended is not None


def test_one_failed_child_fails_the_parent_and_the_others_output_is_kept(
    store: JobStore,
) -> None:
    parent, children = make_parent(store, ["a", "b", "c"])
    store.append_output(
        [(c, h, 0, "stdout", f"out {h}", 1.0) for c, h in zip(children, "abc", strict=True)]
    )
    run_children(store, children, [S.Completed, S.Failed, S.Completed])
    assert store.get(parent).state == S.Failed
    assert texts(store.receive(parent)) == ["out a", "out b", "out c"]


def test_a_stopped_child_and_no_failed_one_stop_the_parent(store: JobStore) -> None:
    parent, children = make_parent(store, ["a", "b"])
    run_children(store, children, [S.Completed, S.Stopped])
    assert store.get(parent).state == S.Stopped


def test_completed_to_running_is_refused_by_the_store(store: JobStore) -> None:
    job = store.create_job("one", "thread", "true", "localhost")
    store.set_state(job, S.Running)
    store.set_state(job, S.Completed, reason=None)
    with pytest.raises(JobStateError, match=f"job {job}: .*finished"):
        store.set_state(job, S.Running)
    assert store.get(job).state == S.Completed


def test_set_state_records_start_end_and_reason(store: JobStore) -> None:
    job = store.create_job("one", "background", "false", "localhost")
    assert store.get(job).started is None
    store.set_state(job, S.Running)
    assert store.get(job).started is not None and store.get(job).ended is None
    store.set_state(job, S.Failed, reason="step 0 exited 1")
    record = store.get(job)
    assert (record.state, record.reason) == (S.Failed, "step 0 exited 1")
    assert record.ended >= record.started


def test_a_parents_state_cannot_be_set_directly(store: JobStore) -> None:
    parent, _ = make_parent(store, ["a"])
    with pytest.raises(JobStateError, match="parent"):
        store.set_state(parent, S.Running)


def test_unknown_job_ids_raise_job_not_found(store: JobStore) -> None:
    for call in (store.get, store.receive, store.remove, store.request_stop):
        with pytest.raises(JobNotFoundError, match="42"):
            call(42)


def test_job_record_carries_what_job_list_shows(store: JobStore) -> None:
    job = store.create_job(
        "backup", "background", "tar c /srv", "localhost", detach=True,
        results_to="file", results_path="out/{{ host }}.log", playbook="site.yml",
        spec={"steps": 2},
    )  # fmt: skip
    record = store.get(job)
    assert (record.name, record.ps_type_name, record.command) == (
        "backup", "BackgroundJob", "tar c /srv",
    )  # fmt: skip
    assert record.detach and record.results_to == "file" and record.spec == {"steps": 2}
    assert record.owner_pid == os.getpid()
    assert record.has_more_data is True  # not finished: it can still give output


def test_has_more_data_until_finished_and_everything_received(store: JobStore) -> None:
    parent, (child,) = make_parent(store, ["a"])
    run_children(store, [child], [S.Running])
    assert store.get(parent).has_more_data and store.has_more_data(child)  # nothing unread
    store.set_state(child, S.Disconnected)
    assert store.get(parent).has_more_data  # a Disconnected job may still give output
    store.set_state(child, S.Completed)
    assert not store.get(parent).has_more_data and not store.has_more_data(child)


def test_list_filters_by_state_name_children_and_newest(store: JobStore) -> None:
    web, web_children = make_parent(store, ["w1", "w2"], name="web-deploy")
    db, db_children = make_parent(store, ["d1"], name="DB-backup")
    run_children(store, web_children, [S.Completed, S.Failed])
    run_children(store, db_children, [S.Completed])

    assert [j.id for j in store.list_jobs()] == [web, db]
    assert [j.id for j in store.list_jobs(state="Failed")] == [web]
    assert [j.id for j in store.list_jobs(name="web*")] == [web]
    assert [j.id for j in store.list_jobs(name="db-?ackup")] == [db]
    assert [j.id for j in store.list_jobs(include_children=True)] == [
        web, *web_children, db, *db_children,
    ]  # fmt: skip
    assert [j.id for j in store.list_jobs(include_children=True, state=S.Failed)] == [
        web, web_children[1],
    ]  # fmt: skip
    assert [j.id for j in store.list_jobs(newest=1)] == [db]


def test_list_filters_by_end_time_and_has_more_data(store: JobStore) -> None:
    first, (first_child,) = make_parent(store, ["a"])
    run_children(store, [first_child], [S.Completed])
    ended = store.get(first).ended
    second, (second_child,) = make_parent(store, ["b"])
    store.append_output([(second_child, "b", 0, "stdout", "x", 1.0)])
    assert [j.id for j in store.list_jobs(before=ended + 1)] == [first]
    assert store.list_jobs(after=ended + 1) == []
    assert [j.id for j in store.list_jobs(has_more_data=True)] == [second]
    assert [j.id for j in store.list_jobs(has_more_data=False)] == [first]


def test_list_newest_by_end_time_child_state_and_command(store: JobStore) -> None:
    first, (first_child,) = make_parent(store, ["a"], name="first")
    second, second_children = make_parent(store, ["b", "c"], name="second")
    running, (running_child,) = make_parent(store, ["d"], name="running")
    run_children(store, second_children, [S.Completed, S.Failed])
    run_children(store, [first_child, running_child], [S.Completed, S.Running])
    assert [j.id for j in store.list_jobs(newest=1)] == [first]  # created first, ended last
    assert [j.id for j in store.list_jobs(newest=3)] == [first, second, running]
    assert [j.id for j in store.list_jobs(child_state=S.Failed)] == [second]
    assert [j.id for j in store.list_jobs(child_state="Failed", include_children=True)] == [
        second, second_children[1],
    ]  # fmt: skip
    assert [j.id for j in store.list_jobs(command="ECHO *")] == [first, second, running]
    assert store.list_jobs(command="sleep*") == []


# -- ids ----------------------------------------------------------------------------------


def test_ids_are_unique_and_increasing_across_store_instances(db: Path) -> None:
    one, two = JobStore(db), JobStore(db)
    ids = [s.create_job(f"j{i}", "thread", "true", "localhost") for i, s in
           enumerate([one, two, one, two])]  # fmt: skip
    assert ids == sorted(set(ids))
    one.close()
    two.close()


def test_ids_are_never_reused_after_remove(store: JobStore) -> None:
    first = store.create_job("a", "thread", "true", "localhost")
    newest = store.create_job("b", "thread", "true", "localhost")
    store.remove(newest, force=True)
    assert store.create_job("c", "thread", "true", "localhost") > newest > first


def _create_jobs(path: str, count: int, queue) -> None:
    store = JobStore(path)
    queue.put([store.create_job(f"p{os.getpid()}", "remote", "true", "h") for _ in range(count)])
    store.close()


def test_ids_are_unique_and_increasing_across_processes(db: Path) -> None:
    JobStore(db).close()
    queue = FORK.Queue()
    workers = [FORK.Process(target=_create_jobs, args=(str(db), 25, queue)) for _ in range(4)]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    every_id = [job_id for ids in results for job_id in ids]
    assert len(set(every_id)) == 100
    assert all(ids == sorted(ids) for ids in results)
    code = (
        "from runner.jobs.store import JobStore; "
        f"print(JobStore({str(db)!r}).create_job('x', 'thread', 't', 'h'))"
    )
    repo = Path(__file__).resolve().parents[3]
    later = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo
    )
    assert int(later.stdout) > max(every_id)


# -- output and receive -----------------------------------------------------------------


def test_receive_on_a_running_job_returns_output_so_far_then_only_what_came_after(
    store: JobStore,
) -> None:
    parent, (child,) = make_parent(store, ["a"])
    store.set_state(child, S.Running)
    store.append_output(
        [(child, "a", 0, "stdout", "one", 1.0), (child, "a", 0, "stdout", "two", 2.0)]
    )
    assert texts(store.receive(parent)) == ["one", "two"]
    store.append_output([(child, "a", 1, "stdout", "three", 3.0)])
    assert texts(store.receive(parent)) == ["three"]
    assert store.receive(parent) == []


def test_receive_keep_twice_returns_the_same_and_has_more_data_stays_true(store: JobStore) -> None:
    parent, (child,) = make_parent(store, ["a"])
    store.append_output([(child, "a", 0, "stdout", "kept", 1.0)])
    first = store.receive(parent, keep=True)
    assert store.receive(parent, keep=True) == first and texts(first) == ["kept"]
    assert store.get(parent).has_more_data and store.get(child).has_more_data


def test_receive_then_receive_is_empty_and_has_more_data_false(store: JobStore) -> None:
    parent, (child,) = make_parent(store, ["a"])
    store.append_output([(child, "a", 0, "stdout", "once", 1.0)])
    run_children(store, [child], [S.Completed])
    assert texts(store.receive(parent)) == ["once"]
    assert store.receive(parent) == []
    assert not store.get(parent).has_more_data and not store.has_more_data(child)


def test_parent_receive_returns_every_childs_records_tagged_by_host_in_order(
    store: JobStore,
) -> None:
    parent, (web, db) = make_parent(store, ["web", "db"])
    store.append_output([(web, "web", 0, "stdout", "w1", 1.0), (db, "db", 0, "stderr", "d1", 1.1)])
    store.append_output([(db, "db", 0, "stdout", "d2", 1.2), (web, "web", 0, "stderr", "w2", 1.3)])
    records = store.receive(parent)
    assert [(r.host, r.job_id, r.stream, r.data) for r in records] == [
        ("web", web, "stdout", "w1"), ("db", db, "stderr", "d1"),
        ("db", db, "stdout", "d2"), ("web", web, "stderr", "w2"),
    ]  # fmt: skip
    assert [r.id for r in records] == sorted(r.id for r in records)


def test_stdout_and_stderr_stay_apart_and_ordered_within_each_host(store: JobStore) -> None:
    parent, children = make_parent(store, ["a", "b"])
    rows = [
        (children[i % 2], "ab"[i % 2], 0, ("stdout", "stderr")[i % 3 == 0], f"{'ab'[i % 2]}{i}", i)
        for i in range(30)
    ]
    for start in range(0, 30, 7):
        store.append_output(rows[start : start + 7])
    records = store.receive(parent)
    for host in "ab":
        for stream in ("stdout", "stderr"):
            got = [r.data for r in records if r.host == host and r.stream == stream]
            assert got == [r[4] for r in rows if r[1] == host and r[3] == stream]


def test_receive_from_one_host_leaves_the_others_unreceived(store: JobStore) -> None:
    parent, (a, b) = make_parent(store, ["a", "b"])
    store.append_output(
        [(a, "a", 0, "stdout", "from a", 1.0), (b, "b", 0, "stdout", "from b", 1.0)]
    )
    run_children(store, [a, b], [S.Completed, S.Completed])
    assert texts(store.receive(parent, host="a")) == ["from a"]
    assert not store.get(a).has_more_data and store.get(b).has_more_data
    assert texts(store.receive(parent)) == ["from b"]


def test_receive_with_a_limit_delivers_the_rest_next_time(store: JobStore) -> None:
    parent, (a, b) = make_parent(store, ["a", "b"])
    store.append_output([((a, b)[i % 2], "ab"[i % 2], 0, "stdout", str(i), i) for i in range(5)])
    assert texts(store.receive(parent, limit=3)) == ["0", "1", "2"]
    assert texts(store.receive(parent, keep=True)) == ["3", "4"]
    assert texts(store.receive(parent)) == ["3", "4"]


def test_receiving_from_a_child_advances_what_the_parent_returns(store: JobStore) -> None:
    parent, (a, b) = make_parent(store, ["a", "b"])
    store.append_output([(a, "a", 0, "stdout", "x", 1.0), (b, "b", 0, "stdout", "y", 1.0)])
    assert texts(store.receive(a)) == ["x"]
    assert texts(store.receive(parent)) == ["y"]


def test_bytes_output_comes_back_as_text(store: JobStore) -> None:
    job = store.create_job("one", "thread", "cat", "localhost")
    store.append_output([(job, "localhost", 0, "stdout", "héllo\n".encode(), 1.0)])
    store.append_output([(job, "localhost", 0, "stdout", b"bad \xff byte", 1.0)])
    assert texts(store.receive(job)) == ["héllo\n", "bad \ufffd byte"]


def test_an_unknown_stream_is_refused(store: JobStore) -> None:
    job = store.create_job("one", "thread", "cat", "localhost")
    with pytest.raises(ValueError, match="stdout or stderr"):
        store.append_output([(job, "localhost", 0, "stdin", "x", 1.0)])


def test_iter_receive_of_100k_records_returns_them_all_in_bounded_memory(
    store: JobStore,
) -> None:
    job = store.create_job("big", "remote", "yes", "h")
    line = "y" * 200
    for _ in range(0, 100_000, 20_000):
        store.append_output([(job, "h", 0, "stdout", line, 0.0)] * 20_000)
    tracemalloc.start()
    count, last_id, ordered = 0, 0, True
    for record in store.iter_receive(job, batch=1000):
        ordered = ordered and record.id > last_id
        count, last_id = count + 1, record.id
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert count == 100_000 and ordered
    assert peak < 5_000_000  # all of it at once would be well over 20 MB
    run_children(store, [job], [S.Completed])
    assert not store.get(job).has_more_data


def test_iter_receive_with_keep_marks_nothing(store: JobStore) -> None:
    job = store.create_job("one", "thread", "cat", "localhost")
    store.append_output([(job, "localhost", 0, "stdout", str(i), i) for i in range(25)])
    assert len(list(store.iter_receive(job, keep=True, batch=10))) == 25
    assert len(list(store.iter_receive(job, batch=10))) == 25
    assert list(store.iter_receive(job)) == []


def _receive_all(path: str, job_id: int, queue) -> None:
    store = JobStore(path)
    got: list[int] = []
    while chunk := store.receive(job_id, limit=7):
        got.extend(record.id for record in chunk)
    queue.put(got)
    store.close()


def test_two_concurrent_receivers_never_get_a_record_twice(store: JobStore, db: Path) -> None:
    parent, children = make_parent(store, ["a", "b", "c"])
    for start in range(0, 3000, 300):
        store.append_output(
            [
                (children[i % 3], "abc"[i % 3], 0, "stdout", str(i), i)
                for i in range(start, start + 300)
            ]
        )
    queue = FORK.Queue()
    receivers = [FORK.Process(target=_receive_all, args=(str(db), parent, queue)) for _ in range(2)]
    for receiver in receivers:
        receiver.start()
    first, second = queue.get(timeout=60), queue.get(timeout=60)
    for receiver in receivers:
        receiver.join(timeout=60)
    assert not set(first) & set(second)
    assert len(first) + len(second) == 3000
    run_children(store, children, [S.Completed] * 3)
    assert not store.get(parent).has_more_data


def _write_output(path: str, job_id: int, writer: int) -> None:
    store = JobStore(path)
    for start in range(0, 2000, 10):
        store.append_output(
            [
                (job_id, f"h{writer}", 0, "stdout", f"{writer}:{i}", i)
                for i in range(start, start + 10)
            ]
        )
    store.close()


def test_four_processes_writing_at_once_lose_nothing(store: JobStore, db: Path) -> None:
    parent, children = make_parent(store, ["h0", "h1", "h2", "h3"])
    writers = [
        FORK.Process(target=_write_output, args=(str(db), child, n))
        for n, child in enumerate(children)
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
        assert writer.exitcode == 0  # a "database is locked" error would exit 1
    records = store.receive(parent)
    assert len(records) == 8000
    for n in range(4):
        assert [r.data for r in records if r.host == f"h{n}"] == [f"{n}:{i}" for i in range(2000)]


def test_one_store_shared_by_many_threads(store: JobStore) -> None:
    parent, children = make_parent(store, [f"h{n}" for n in range(8)])

    def work(n: int) -> None:
        for i in range(50):
            store.append_output([(children[n], f"h{n}", 0, "stdout", str(i), i)])
        store.set_state(children[n], S.Running)
        store.set_state(children[n], S.Completed)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(work, range(8)))
    assert len(store.receive(parent)) == 400
    assert store.get(parent).state == S.Completed


# -- steps, stop, remove ------------------------------------------------------------------


def test_steps_are_recorded_and_replaced_by_index(store: JobStore) -> None:
    _, (child,) = make_parent(store, ["a"])
    store.record_step(child, 1, "restart", None, "skipped", None, None)
    store.record_step(child, 0, "install", 1, "failed", 1.0, 2.0, error="exit 1")
    store.record_step(child, 1, "restart", 0, "changed", 2.0, 3.0)
    assert [(s.index, s.name, s.rc, s.status, s.error) for s in store.steps(child)] == [
        (0, "install", 1, "failed", "exit 1"), (1, "restart", 0, "changed", None),
    ]  # fmt: skip
    with pytest.raises(ValueError):
        store.record_step(child, 2, "x", 0, "great", None, None)


def test_stop_moves_running_children_to_stopping_then_stopped(store: JobStore) -> None:
    parent, (a, b) = make_parent(store, ["a", "b"])
    run_children(store, [a, b], [S.Completed, S.Running])
    assert not store.stop_requested(parent)
    assert store.request_stop(parent) == [b]
    assert store.stop_requested(b) and store.stop_requested(parent)
    assert store.get(parent).state == S.Stopping
    assert store.finish(b, S.Completed) == S.Stopped  # the stop won the race
    assert store.get(parent).state == S.Stopped


def test_stop_on_a_finished_job_changes_nothing(store: JobStore) -> None:
    job = store.create_job("one", "thread", "true", "localhost")
    store.set_state(job, S.Running)
    store.set_state(job, S.Completed)
    assert store.request_stop(job) == []
    assert store.get(job).state == S.Completed


def test_stop_before_start_goes_through_stopping(store: JobStore) -> None:
    job = store.create_job("one", "thread", "true", "localhost")
    assert store.request_stop(job) == [job]
    assert store.finish(job, S.Failed) == S.Stopped


def test_finishing_a_running_job_as_stopped_passes_through_stopping(store: JobStore) -> None:
    job = store.create_job("one", "thread", "true", "localhost")
    store.set_state(job, S.Running)
    assert store.finish(job, S.Stopped, reason="skipped: an earlier job failed") == S.Stopped
    assert store.get(job).reason == "skipped: an earlier job failed"
    with pytest.raises(JobStateError, match="finished"):
        store.finish(job, S.Completed)


def test_runtime_details_are_kept_and_cleared(store: JobStore) -> None:
    _, (child,) = make_parent(store, ["a"])
    store.set_runtime(child, remote_pgid=4321, remote_dir="~/.runner/jobs/x")
    store.set_runtime(child, local_pid=99)
    store.set_runtime(child, local_pid=None)
    record = store.get(child)
    assert (record.remote_pgid, record.local_pid, record.remote_dir) == (
        4321, None, "~/.runner/jobs/x",
    )  # fmt: skip


def test_remove_refuses_a_running_job_and_it_stays_listed(store: JobStore) -> None:
    parent, (child,) = make_parent(store, ["a"])
    store.set_state(child, S.Running)
    with pytest.raises(JobStateError, match=f"job {parent} is Running"):
        store.remove(parent)
    assert [j.id for j in store.list_jobs()] == [parent]


def test_remove_force_deletes_the_job_its_children_steps_and_output(store: JobStore) -> None:
    parent, (child,) = make_parent(store, ["a"])
    store.set_state(child, S.Running)
    store.append_output([(child, "a", 0, "stdout", "x", 1.0)])
    store.record_step(child, 0, "s", 0, "ok", 1.0, 2.0)
    store.remove(parent, force=True)
    assert store.list_jobs(include_children=True) == []
    assert store.steps(child) == []
    with pytest.raises(JobNotFoundError):
        store.receive(child)
    assert store.stop_requested(child)  # an owner still polling learns it must stop


def test_remove_a_finished_job(store: JobStore) -> None:
    parent, children = make_parent(store, ["a"])
    run_children(store, children, [S.Failed])
    store.remove(parent)
    assert store.list_jobs() == []


# -- reconcile ----------------------------------------------------------------------------


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_reconcile_stops_attached_jobs_of_a_dead_runner(store: JobStore) -> None:
    pid = _dead_pid()
    parent = store.create_job("web", "remote", "sleep 9", "a,b", owner_pid=pid)
    a = store.create_job("web", "remote", "sleep 9", "a", parent_id=parent, owner_pid=pid)
    b = store.create_job("web", "remote", "sleep 9", "b", parent_id=parent, owner_pid=pid)
    store.set_state(a, S.Running)
    assert sorted(store.reconcile()) == [a, b]
    for child in (a, b):
        record = store.get(child)
        assert record.state == S.Stopped
        assert record.reason == f"runner process {pid} ended without stopping it"
    assert store.get(parent).state == S.Stopped
    assert store.reconcile() == []


def test_reconcile_turns_a_dead_runners_detached_job_disconnected(store: JobStore) -> None:
    pid = _dead_pid()
    job = store.create_job("bg", "remote", "sleep 9", "a", detach=True, owner_pid=pid)
    store.set_state(job, S.Running)
    assert store.reconcile() == [job]
    assert store.get(job).state == S.Disconnected
    assert store.reconcile() == []


def test_reconcile_leaves_jobs_of_a_live_runner_alone(store: JobStore) -> None:
    job = store.create_job("mine", "thread", "sleep 9", "localhost")
    store.set_state(job, S.Running)
    assert store.reconcile() == []
    assert store.get(job).state == S.Running


@sqlite_only
def test_reconcile_does_not_mistake_a_reused_pid_for_the_owner(store: JobStore, db: Path) -> None:
    job = store.create_job("old", "thread", "sleep 9", "localhost")
    store.set_state(job, S.Running)
    with sqlite3.connect(db) as raw:  # as if an earlier process had had our pid
        raw.execute("UPDATE jobs SET owner_start = owner_start - 1 WHERE id = ?", (job,))
    assert store.reconcile() == [job]
    assert store.get(job).state == S.Stopped


def test_claiming_a_job_makes_reconcile_judge_it_by_the_new_owner(store: JobStore) -> None:
    job = store.create_job("bg", "remote", "sleep 9", "a", detach=True, owner_pid=_dead_pid())
    store.set_state(job, S.Running)
    store.claim(job)
    assert store.reconcile() == []


# -- files and location -------------------------------------------------------------------


@sqlite_only
def test_store_files_are_private(store: JobStore, db: Path) -> None:
    job = store.create_job("one", "thread", "true", "localhost")
    store.append_output([(job, "localhost", 0, "stdout", "secret", 1.0)])
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    wal = db.with_name("jobs.db-wal")
    assert wal.exists() and stat.S_IMODE(wal.stat().st_mode) == 0o600


@sqlite_only
def test_a_store_from_a_newer_runner_is_refused(db: Path) -> None:
    JobStore(db).close()
    with sqlite3.connect(db) as raw:
        raw.execute("PRAGMA user_version = 99")
    with pytest.raises(Exception, match="newer"):
        JobStore(db)


def test_runner_home_prefers_runner_home_then_xdg_then_home(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path / "u"), "XDG_STATE_HOME": str(tmp_path / "x")}
    assert runner_home({**env, "RUNNER_HOME": str(tmp_path / "r")}) == tmp_path / "r"
    assert runner_home(env) == tmp_path / "x" / "runner"
    assert runner_home({**env, "XDG_STATE_HOME": ""}) == tmp_path / "u/.local/state/runner"
    assert store_path({"RUNNER_HOME": str(tmp_path / "r")}) == tmp_path / "r" / "jobs.db"
    assert stat.S_IMODE((tmp_path / "x" / "runner").stat().st_mode) == 0o700


def test_runner_home_keeps_the_mode_of_an_existing_directory(tmp_path: Path) -> None:
    existing = tmp_path / "shared"
    existing.mkdir(mode=0o755)
    existing.chmod(0o755)
    assert runner_home({"RUNNER_HOME": str(existing)}) == existing
    assert stat.S_IMODE(existing.stat().st_mode) == 0o755


def test_a_postgresql_store_from_a_newer_runner_is_refused_and_an_older_waits_for_migrate(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    from runner.errors import StoreError
    from runner.jobs import postgres

    store = JobStore(pg_url)
    kept = store.create_job("kept", "thread", "true", "localhost")
    store.close()
    with psycopg.connect(pg_url, autocommit=True) as raw:
        raw.execute("UPDATE runner_schema SET version = %s", (postgres.SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="newer than this runner"):
        JobStore(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as raw:
        raw.execute("UPDATE runner_schema SET version = %s", (postgres.SCHEMA_VERSION,))
    # A runner one schema version ahead: it waits for `runner store migrate`, which
    # applies the new step and keeps every job.
    step = ["CREATE TABLE added_later (id INTEGER)"]
    monkeypatch.setattr(postgres, "MIGRATIONS", [*postgres.MIGRATIONS, step])
    monkeypatch.setattr(postgres, "SCHEMA_VERSION", postgres.SCHEMA_VERSION + 1)
    with pytest.raises(StoreError, match="runner store migrate"):
        JobStore(pg_url)
    upgraded = JobStore(pg_url, upgrade=True)
    try:
        assert upgraded.migrated == 1
        assert upgraded.get(kept).name == "kept"
    finally:
        upgraded.close()
    again = JobStore(pg_url)
    assert again.migrated == 0
    again.close()


def test_a_postgresql_password_never_shows_in_the_store_or_its_errors(pg_url: str) -> None:
    from runner.errors import StoreError

    secret = pg_url.replace("postgresql://runner@", "postgresql://runner:hunter2@")
    store = JobStore(secret)  # trust authentication: the password is not needed, only kept
    try:
        assert "hunter2" not in store.path
        assert "***" in store.path
    finally:
        store.close()
    closed = secret.rsplit(":", 1)[0] + ":1/postgres"  # nothing listens on port 1
    with pytest.raises(StoreError) as caught:
        JobStore(closed)
    assert "hunter2" not in str(caught.value)
    assert "127.0.0.1:1" in str(caught.value)


def _silence(store: JobStore, owner_id: str, seconds: float) -> None:
    """As if `owner_id` last beat `seconds` ago."""
    store.beat(owner_id, "worker", owner_id)
    with store._write() as conn:
        conn.execute("UPDATE owners SET beat = beat - ? WHERE id = ?", (seconds, owner_id))


def test_children_on_workers_are_judged_by_heartbeats_not_pids(store: JobStore) -> None:
    dead = _dead_pid()
    parent = store.create_job("work", "remote", "sleep 9", "a,b,c", owner_pid=dead)
    running, queued, fresh = (
        store.create_job("work", "remote", "sleep 9", host, parent_id=parent, owner_pid=dead)
        for host in ("a", "b", "c")
    )
    store.beat("ctl", "runner", "ctl-host:1")
    for child in (running, queued, fresh):
        store.dispatch(child, "ctl", None)
    assert store.claim_for_worker(running, "w-gone")
    assert not store.claim_for_worker(running, "w-other")  # a second delivery: never twice
    assert store.claim_for_worker(fresh, "w-alive")
    _silence(store, "w-gone", 120)
    store.beat("w-alive", "worker", "w-alive")
    # The controller's pid is long gone, but it beats: nothing queued is touched.
    assert store.reconcile() == [running]
    assert store.get(running).state == S.Failed
    assert "worker w-gone lost" in (store.get(running).reason or "")
    assert store.get(queued).state == S.NotStarted
    assert store.get(fresh).state == S.Running
    _silence(store, "ctl", 120)
    assert store.reconcile() == [queued]
    assert store.get(queued).state == S.Stopped
    assert "runner" in (store.get(queued).reason or "")
    assert not store.claim_for_worker(queued, "w-alive")  # stopped while queued: never runs


def test_begin_retry_is_the_one_way_back_and_keeps_what_the_attempt_recorded(
    store: JobStore,
) -> None:
    parent, (lost, local, done, stopped) = make_parent(store, ["a", "b", "c", "d"])
    store.dispatch(lost, "ctl", None)
    assert store.claim_for_worker(lost, "w-gone")
    store.record_step(lost, 0, "sleep", None, "running", 1.0, None)
    store.append_output([(lost, "a", 0, "stdout", "first\n", 1.0)])
    assert store.begin_retry(lost, "retrying a: worker w-gone lost (attempt 2 of 2)", True)
    assert store.get(lost).state == S.NotStarted and store.steps(lost) == []
    assert "attempt 2 of 2" in (store.get(lost).reason or "")
    kept = "".join(r.data for r in store.receive(lost))
    assert "first" in kept and "retrying a" in kept and "'sleep': running" in kept
    assert store.claim_for_worker(lost, "w-alive")  # its worker cleared: claimed afresh
    store.set_state(local, S.Running)
    assert store.begin_retry(local, "retrying b: unreachable", False)
    assert store.get(local).state == S.Running
    run_children(store, [done], [S.Failed])
    assert not store.begin_retry(done, "retrying c", False)  # a finished job stays so
    store.set_state(stopped, S.Running)
    store.request_stop(stopped)
    assert not store.begin_retry(stopped, "retrying d", False)  # a stop wins
    assert store.get(stopped).state == S.Stopping
    assert store.get(parent).state == S.Stopping


def test_output_kept_on_a_target_is_fetched_once_and_sizes_only_grow(store: JobStore) -> None:
    job = store.create_job("far", "remote", "echo hi", "h1")
    store.set_remote_sizes(job, {(0, "stdout"): 10})
    store.set_remote_sizes(job, {(0, "stdout"): 4})  # an older look at the target
    assert store.remote_streams(job) == {(0, "stdout"): (10, 0, 0)}
    assert store.append_fetched(job, "h1", 0, "stdout", 0, b"hello")
    assert not store.append_fetched(job, "h1", 0, "stdout", 0, b"hello")  # taken already
    assert store.append_fetched(job, "h1", 0, "stdout", 5, b"world!")
    assert store.remote_streams(job) == {(0, "stdout"): (11, 11, 0)}
    assert store.advance_received(job, 0, "stdout", 0, 11)
    assert not store.advance_received(job, 0, "stdout", 0, 11)
    assert [r.data for r in store.receive(job)] == ["hello", "world!"]
