"""Beyond one controller: children on two real `runner worker` processes (Celery over a
real Redis), the job store on a real PostgreSQL, the hosts a real sshd fleet; seen from
the controller and from a second machine (another RUNNER_HOME with the same store URL).

The rest of the end-to-end behaviour runs in both modes (`BOTH_MODES` modules)."""

from __future__ import annotations

import functools
import json
import os
import random
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import processes_matching, wait_until

from tests.cli import Cli
from tests.workers import distributed_env, workers

WORKERS = pytest.mark.parametrize("cli", ["workers"], indirect=True)


def unique_sleep() -> str:
    """A `sleep` whose command line no other test's process has."""
    return f"sleep 6{random.randrange(100):02d}.{os.getpid() % 10000}{random.randrange(1000)}"


def second_home(cli: Cli, tmp_path: Path) -> Cli:
    """`runner` on "another machine": its own RUNNER_HOME, the same store and broker."""
    other = Cli(tmp_path / "elsewhere", cli.cwd)
    other.env = {**cli.env, "RUNNER_HOME": str(other.home)}
    return other


def child_of(cli: Cli, parent: int) -> dict[str, Any]:
    children = [job for job in cli.jobs("--children") if job.get("ParentId") == parent]
    assert len(children) == 1, children
    return children[0]


def play(cli: Cli, steps: str, targets: str = "host1", extra: str = "") -> str:
    return cli.playbook(
        f"""
        jobs:
          - name: work
            targets: "{targets}"
            {extra}
            steps:
"""
        + "".join(f"              - {line}\n" for line in steps.strip().splitlines())
    )


@WORKERS
def test_children_run_on_the_workers_and_another_machine_receives_partial_output_once(
    cli: Cli, inventory: str, tmp_path: Path
) -> None:
    flag = tmp_path / "go"
    book = play(
        cli,
        f'run: "echo first $PPID; while [ ! -e {flag} ]; do sleep 0.1; done; echo second"',
        targets="fleet",
    )
    run = cli.start("run", book, "-i", inventory, "-f", "5")
    other = second_home(cli, tmp_path)

    seen: list[dict[str, Any]] = []

    def five_firsts() -> bool:
        got = other("job", "receive", "1", "--format", "json")
        if got.returncode == 0:  # before the run recorded job 1 there is none to receive
            seen.extend(json.loads(got.stdout))
        return len([r for r in seen if "first" in r["data"]]) >= 5

    wait_until(five_firsts, 60, "each host's first line")
    assert not any("second" in r["data"] for r in seen)  # partial: the steps still wait
    flag.touch()
    out, err = run.communicate(timeout=120)
    assert run.returncode == 0, out + err
    rest = other.receive(1)
    assert sorted(r["data"].strip() for r in rest) == ["second"] * 5  # each line once
    assert not [r for r in rest if "first" in r["data"]]
    # The steps' shells were started over SSH by a worker process, not by `runner run`:
    # each child's sshd session is this machine's, so the worker is told by the store.
    states = {job["Location"]: job["State"] for job in cli.jobs("--children")}
    assert set(states.values()) == {"Completed"}


@WORKERS
def test_thread_steps_run_in_a_worker_process_and_both_workers_take_children(
    cli: Cli, inventory: str
) -> None:
    book = play(cli, 'local: "echo $PPID; sleep 1"', targets="fleet", extra="type: thread")
    result = cli("run", book, "-i", inventory, "-f", "5", check=True)
    parents = {int(r["data"].split()[0]) for r in cli.receive(1)}
    pids = {worker.pid for worker in cli.workers}
    assert parents <= pids, (parents, pids, result.output)
    assert len(parents) == 2  # five children of 1 s, ten slots: both workers took some


@WORKERS
def test_stop_from_another_machine_ends_the_step_on_its_target(
    cli: Cli, inventory: str, tmp_path: Path
) -> None:
    marker = unique_sleep()
    run = cli.start("run", play(cli, f'run: "{marker}"'), "-i", inventory)
    wait_until(lambda: processes_matching(marker), 60, "the step on host1")
    other = second_home(cli, tmp_path)
    other("job", "stop", "1", check=True)
    wait_until(lambda: not processes_matching(marker), 10, "the step ended on host1")
    out, err = run.communicate(timeout=60)
    assert run.returncode == 99, out + err  # stopped from outside: interrupted
    assert cli.job(1)["State"] == "Stopped"


@WORKERS
@pytest.mark.own_workers  # a late worker of the queue joins its store
def test_a_child_stopped_while_queued_never_runs(cli: Cli, inventory: str, tmp_path: Path) -> None:
    mark = tmp_path / "ran"
    book = play(cli, f'run: "touch {mark}"', extra="queue: nobody-takes-this")
    # the run fails an unclaimed child after two heartbeat timeouts: longer than the stop
    cli.env = {**cli.env, "RUNNER_HEARTBEAT_TIMEOUT": "30"}
    run = cli.start("run", book, "-i", inventory)
    wait_until(lambda: cli.jobs() and cli.jobs()[0]["State"] == "NotStarted", 60, "queued")
    second_home(cli, tmp_path)("job", "stop", "1", check=True)
    out, err = run.communicate(timeout=60)
    assert cli.job(1)["State"] == "Stopped", out + err
    assert "no worker takes queue 'nobody-takes-this'" in out + err  # said, not a silent wait
    # A worker of that queue now gets the task: it finds the child stopped and skips it.
    store, broker = cli.env["RUNNER_STORE"], cli.env["RUNNER_BROKER"]
    late_args = ("--queue", "nobody-takes-this", "--loglevel", "INFO")
    with workers(store, broker, tmp_path / "late", 1, *late_args) as late:
        log = late[0].log
        wait_until(lambda: "'skipped'" in log.read_text(), 30, "the late worker to skip it")
    assert not mark.exists()
    assert cli.job(1)["State"] == "Stopped"


@WORKERS
@pytest.mark.own_workers  # it kills one of its workers
def test_a_worker_killed_mid_step_fails_its_child_and_the_step_ends(
    cli: Cli, inventory: str, tmp_path: Path
) -> None:
    marker = unique_sleep()
    book = play(cli, f'local: "echo $PPID; {marker}"', extra="type: thread")
    run = cli.start("run", book, "-i", inventory)
    wait_until(lambda: processes_matching(marker), 60, "the step on a worker")
    owner = int(wait_until(lambda: cli.receive(1, "--keep"), 30, "its first line")[0]["data"])
    victim = next(worker for worker in cli.workers if worker.pid == owner)
    victim.kill()
    out, err = run.communicate(timeout=90)
    assert run.returncode == 2, out + err
    child = child_of(cli, 1)
    assert child["State"] == "Failed"
    assert "lost" in child["Reason"] and victim.name in child["Reason"]
    wait_until(lambda: not processes_matching(marker), 30, "the dead worker's step ended")


@WORKERS
def test_the_controller_killed_stops_its_attached_children_on_the_workers(
    cli: Cli, inventory: str, tmp_path: Path
) -> None:
    marker = unique_sleep()
    run = cli.start("run", play(cli, f'run: "{marker}"'), "-i", inventory)
    wait_until(lambda: processes_matching(marker), 60, "the step on host1")
    run.send_signal(signal.SIGKILL)
    run.communicate()
    # The heartbeat lapses (6 s in the tests, 30 s at most): the worker stops the child.
    wait_until(lambda: not processes_matching(marker), 40, "the attached step ended")
    wait_until(lambda: cli.job(1)["State"] == "Stopped", 30, "the child recorded Stopped")


@WORKERS
def test_a_detached_child_goes_on_when_its_controller_is_killed(
    cli: Cli, inventory: str, tmp_path: Path
) -> None:
    done = tmp_path / "done"
    book = play(
        cli, f'local: "sleep 8; touch {done}"', extra="type: background\n            detach: true"
    )
    result = cli("run", book, "-i", inventory)
    assert result.returncode == 0, result.output
    wait_until(done.exists, 60, "the detached child's step")
    wait_until(lambda: cli.job(1)["State"] == "Completed", 30, "Completed")


def test_an_unreachable_broker_or_store_is_one_line_exit_1_and_nothing_recorded(
    runner_cli: Cli, inventory: str, pg_url: str, redis_url: str
) -> None:
    book = play(runner_cli, "run: echo hi")
    runner_cli.env = distributed_env(runner_cli.env, pg_url, "redis://:s3cret@127.0.0.1:1/0")
    result = runner_cli("run", book, "-i", inventory)
    assert result.returncode == 1, result.output
    assert result.stderr.count("\n") == 1 and "127.0.0.1:1" in result.stderr
    assert "s3cret" not in result.output and "Traceback" not in result.output
    assert runner_cli.jobs() == []
    away = "postgresql://runner:s3cret@127.0.0.1:1/runner"
    runner_cli.env = distributed_env(runner_cli.env, away, redis_url)
    for args in (("run", book, "-i", inventory), ("job", "list")):
        result = runner_cli(*args)
        assert result.returncode == 1, result.output
        assert result.stderr.count("\n") == 1 and "127.0.0.1:1" in result.stderr
        assert "s3cret" not in result.output and "Traceback" not in result.output


def test_a_broker_beside_a_sqlite_store_is_refused(runner_cli: Cli, inventory: str) -> None:
    runner_cli.env["RUNNER_BROKER"] = "redis://127.0.0.1:1/0"
    result = runner_cli("run", play(runner_cli, "run: echo hi"), "-i", inventory)
    assert result.returncode == 5, result.output
    assert "PostgreSQL" in result.stderr and "Traceback" not in result.output
    local = runner_cli(
        "run", play(runner_cli, "run: echo hi"), "-i", inventory, "--dispatch", "local"
    )
    assert local.returncode == 0, local.output


def test_a_queue_sends_children_only_to_that_queues_workers(
    runner_cli: Cli, inventory: str, pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    runner_cli.env = distributed_env(runner_cli.env, pg_url, redis_url)
    book = play(runner_cli, 'local: "echo $PPID"', extra="type: thread\n            queue: dc1")
    with (
        workers(pg_url, redis_url, tmp_path / "any", 1),
        workers(pg_url, redis_url, tmp_path / "dc1", 1, "--queue", "dc1") as dc1,
    ):
        runner_cli("run", book, "-i", inventory, check=True)
    assert int(runner_cli.receive(1)[0]["data"]) == dc1[0].pid


def test_store_and_broker_passwords_are_never_shown(
    runner_cli: Cli, inventory: str, pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    store = pg_url.replace("postgresql://runner@", "postgresql://runner:hunter2@")
    runner_cli.env = distributed_env(runner_cli.env, store, redis_url)
    with workers(store, redis_url, tmp_path, 1) as started:
        run = runner_cli("run", play(runner_cli, "run: echo hi"), "-i", inventory, "-v")
        shown = [run, runner_cli("job", "show", "1"), runner_cli("job", "list", "--format", "json")]
        log = started[0].log.read_text()
    assert run.returncode == 0, run.output
    assert all("hunter2" not in result.output for result in shown)
    assert "hunter2" not in log
    migrate = runner_cli("store", "migrate")
    assert migrate.returncode == 0 and "up to date" in migrate.stdout
    assert "hunter2" not in migrate.output and "***" in migrate.stdout


def test_a_worker_takes_only_json_tasks_of_runner_s_own_name(
    runner_cli: Cli, inventory: str, pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    from celery import Celery

    mark = tmp_path / "pickled"
    with workers(pg_url, redis_url, tmp_path, 1, "--loglevel", "INFO") as started:
        app = Celery("intruder", broker=redis_url, set_as_current=False)
        app.conf.accept_content = ["pickle", "json"]
        send = functools.partial(app.send_task, queue="runner")
        send("runner.child", args=[{"pickle": True}], serializer="pickle")
        send("os.system", args=[f"touch {mark}"], serializer="json")
        send("celery.backend_cleanup", serializer="json")  # Celery's own: not runner's
        send("runner.child", args=[{"child": "1; DROP TABLE jobs"}], serializer="json")
        log = started[0].log
        wait_until(lambda: "malformed" in log.read_text(), 30, "the malformed task refused")
        wait_until(lambda: log.read_text().count("ERROR") >= 4, 30, "the worker's refusals")
        assert started[0].proc.poll() is None  # still working
        text = log.read_text()
    assert not mark.exists()
    assert not re.search(r"(celery\.backend_cleanup|os\.system)\[[^\]]*\] succeeded", text)
    assert "ContentDisallowed" in text or "pickle" in text


@pytest.mark.parametrize("cli", ["local"], indirect=True)
def test_a_store_restarted_mid_run_loses_no_output(
    cli: Cli, inventory: str, redis_url: str, tmp_path: Path
) -> None:
    from tests.services import PostgresServer

    with PostgresServer() as server:
        store = server.fresh_database()
        cli.env = distributed_env(cli.env, store, redis_url)
        with workers(store, redis_url, tmp_path, 1):
            book = play(cli, 'run: "for i in $(seq 1 40); do echo line $i; sleep 0.2; done"')
            run = cli.start("run", book, "-i", inventory)
            wait_until(
                lambda: "line 3" in cli("job", "receive", "1", "--keep").stdout, 60, "line 3"
            )
            server.restart()
            out, err = run.communicate(timeout=120)
            assert run.returncode == 0, out + err
            lines = "".join(r["data"] for r in cli.receive(1)).splitlines()
    assert lines == [f"line {i}" for i in range(1, 41)]


@pytest.mark.parametrize("cli", ["local"], indirect=True)
def test_a_store_that_stops_answering_ends_the_run_with_one_line_not_a_hang(
    cli: Cli, inventory: str, redis_url: str, tmp_path: Path
) -> None:
    from tests.services import PostgresServer

    with PostgresServer() as server:
        store = server.fresh_database()
        cli.env = {**distributed_env(cli.env, store, redis_url), "RUNNER_STORE_TIMEOUT": "2"}
        with workers(store, redis_url, tmp_path, 1):
            run = cli.start("run", play(cli, 'run: "echo one; sleep 3; echo two"'), "-i", inventory)
            wait_until(lambda: cli.jobs(), 60, "the run's job")
            frozen = [server.pid, *_children(server.pid)]  # a frozen host: no answer at all
            for pid in frozen:
                os.kill(pid, signal.SIGSTOP)
            try:
                out, err = run.communicate(timeout=240)  # bounded: no wait is endless
            except subprocess.TimeoutExpired:
                run.kill()
                out, err = run.communicate()
                pytest.fail(f"the run hung on a frozen store:\n{out}{err}")
            finally:
                for pid in frozen:
                    os.kill(pid, signal.SIGCONT)
    assert run.returncode == 1, out + err
    assert err.count("\n") == 1 and "cannot use the job store at 127.0.0.1:" in err
    assert "Traceback" not in out + err


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


@WORKERS
def test_a_job_that_needs_a_detached_child_on_a_worker_waits_for_it(
    cli: Cli, inventory: str, tmp_path: Path
) -> None:
    done = tmp_path / "done"
    book = cli.playbook(
        f"""
        jobs:
          - name: far
            type: background
            detach: true
            targets: host1
            steps: [{{local: "sleep 3; touch {done}"}}]
          - name: after
            type: thread
            targets: host1
            needs: [far]
            steps: [{{local: "test -e {done} && echo after"}}]
        """
    )
    result = cli("run", book, "-i", inventory)
    assert result.returncode == 0, result.output
    assert [r["data"].strip() for r in cli.receive(3)] == ["after"]
