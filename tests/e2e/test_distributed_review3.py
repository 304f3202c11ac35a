"""Found in a third review of the distributed mode, as a user and as an attacker: store and
broker URLs with their password in a parameter or an unknown parameter, hostile names,
and kills at the worst moment. Real PostgreSQL, Redis, `runner worker` processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import processes_matching, wait_until

from runner.jobs.store import JobStore
from tests.cli import RUNNER, Cli, runner_env
from tests.conftest import skip_unless_installed
from tests.fleet import Fleet
from tests.services import RedisServer, redis_missing
from tests.workers import Worker, _beating, distributed_env, workers

CONNECT_TIMEOUT_S = 10  # a connection's default connect timeout
PLAY = "jobs: [{name: j, type: thread, steps: [{local: 'true'}]}]\n"


@pytest.mark.parametrize(
    "store, broker",
    [
        ("postgresql://runner@127.0.0.1:1/runner?password=qz7secret", None),
        ("postgresql://runner@127.0.0.1:1/runner?sslmode=disable&Password=qz7secret", None),
        ("a live store", "redis://127.0.0.1:1/0?password=qz7secret"),
    ],
)
def test_a_password_given_as_a_url_parameter_is_never_shown(
    runner_cli: Cli, request: pytest.FixtureRequest, store: str, broker: str | None
) -> None:
    # libpq and redis-py both take `?password=`: the one line naming the server that
    # cannot be reached printed the URL as typed, password and all.
    book = runner_cli.playbook(PLAY)
    if not store.startswith("postgresql:"):
        store = request.getfixturevalue("pg_url")
    runner_cli.env = {**runner_cli.env, "RUNNER_STORE": store}
    if broker:
        runner_cli.env["RUNNER_BROKER"] = broker
    result = runner_cli("run", book)
    assert result.returncode in (1, 5), result.output
    assert result.stderr.count("\n") == 1, result.stderr
    assert "qz7secret" not in result.output, result.output
    assert "qz7secret" not in runner_cli("job", "list").output


def test_an_unknown_store_url_parameter_is_one_line_exit_5_not_an_unexpected_error(
    runner_cli: Cli, pg_url: str, tmp_path: Path
) -> None:
    # `?foo=1` (or `?PASSWORD=`, which libpq does not know either) in RUNNER_STORE was
    # "runner: unexpected error: ProgrammingError: ...", exit 250, on every command.
    runner_cli.env = {**runner_cli.env, "RUNNER_STORE": f"{pg_url}?applicaton_name=x"}
    for command in (("job", "list"), ("store", "migrate"), ("run", runner_cli.playbook(PLAY))):
        result = runner_cli(*command)
        assert result.returncode == 5, result.output
        assert result.stderr.count("\n") == 1 and "applicaton_name" in result.stderr
        assert "unexpected" not in result.stderr, result.stderr


@pytest.fixture
def own_host(tmp_path: Path) -> Iterator[Fleet]:
    """One sshd of this test's own, as its processes are frozen (the shared fleet's not)."""
    with Fleet(1, prefix="frozen") as fleet:
        yield fleet


def test_a_stop_the_host_does_not_answer_leaves_the_child_stopped_not_unreachable(
    runner_cli: Cli, own_host: Fleet, tmp_path: Path
) -> None:
    # SIGTERM to a run whose host is too busy to answer the kill of the step's group (as
    # 120 hosts on two cores were): the child ended `Failed`, "unreachable: no answer
    # while ending process group N", and the recap counted the host unreachable. The
    # user's stop stands; sshd ends the group when the run closes its connection.
    inventory = own_host.write_inventory(tmp_path / "hosts.ini")
    book = runner_cli.playbook("jobs: [{name: j, targets: all, steps: [{run: sleep 600.31}]}]\n")
    run = runner_cli.start("run", book, "-i", str(inventory))
    wait_until(lambda: processes_matching("sleep 600.31"), what="the step on its host")
    sshds = [p for p in own_host.connection_pids(0) if "sshd" in _cmdline(p)]
    _signal(sshds, signal.SIGSTOP)
    try:
        run.send_signal(signal.SIGTERM)
        out, err = run.communicate(timeout=120)
    finally:
        _signal(sshds, signal.SIGCONT)
    assert run.returncode == 99, out + err
    (child,) = [job for job in runner_cli.jobs("--children") if job.get("ParentId")]
    assert child["State"] == "Stopped", runner_cli("job", "show", str(child["Id"])).stdout
    wait_until(lambda: not processes_matching("sleep 600.31"), 60, "the step ended")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis of this test's own, as it is stopped mid-run (the session's is shared)."""
    skip_unless_installed(redis_missing())
    with RedisServer() as server:
        yield server


def test_a_broker_lost_mid_run_fails_the_later_children_naming_it(
    runner_cli: Cli, pg_url: str, own_redis: RedisServer, tmp_path: Path
) -> None:
    # Redis stopped while the first job runs on a worker: the second job's children
    # ended `Failed`, "internal error: OperationalError: ...", naming neither the broker
    # nor where it is.
    hosts = tmp_path / "hosts.ini"
    hosts.write_text("".join(f"h{n} ansible_connection=local\n" for n in range(3)))
    go = tmp_path / "go"
    wait = f"while [ ! -e {go} ]; do sleep 0.1; done"
    book = runner_cli.playbook(
        f"""
        jobs:
          - name: first
            type: thread
            targets: all
            steps:
              - local: "touch {tmp_path}/ran-{{{{ inventory_hostname }}}}; {wait}"
          - name: second
            type: thread
            targets: all
            needs: [first]
            steps:
              - local: echo second
        """
    )
    broker = own_redis.url(0)
    runner_cli.env = distributed_env(runner_cli.env, pg_url, broker)
    with workers(pg_url, broker, tmp_path / "workers", 1):
        run = runner_cli.start("run", book, "-i", str(hosts))
        wait_until(lambda: len(list(tmp_path.glob("ran-*"))) == 3, 120, "the first job's steps")
        own_redis.stop()
        go.touch()
        out, err = run.communicate(timeout=600)
    assert run.returncode == 2, out + err
    second = [
        j for j in runner_cli.jobs("--children") if j["Name"] == "second" and j.get("ParentId")
    ]
    assert len(second) == 3 and {j["State"] for j in second} == {"Failed"}, second
    for job in second:
        shown = runner_cli("job", "show", str(job["Id"])).stdout
        assert f"127.0.0.1:{own_redis.port}" in shown and "internal error" not in shown, shown


def _sql(store: str, query: str) -> Any:
    """The first column of the first row `query` returns from `store` (None if none):
    read directly, as any `runner` command would settle a dead controller's children."""
    import psycopg

    with psycopg.connect(store, autocommit=True) as conn:
        try:
            row = conn.execute(query).fetchone()
        except psycopg.errors.UndefinedTable:  # the run has not set the store up yet
            return None
    return row[0] if row else None


def _queued_tasks(broker: str, queue: str) -> int:
    import redis

    client = redis.Redis.from_url(broker)
    try:
        return int(client.llen(queue))
    finally:
        client.close()


def test_a_queued_child_of_a_killed_controller_never_runs_on_a_late_worker(
    runner_cli: Cli, pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    # `runner run` SIGKILLed while its attached child waits for a worker of its queue;
    # a worker of that queue started once the controller's heartbeat lapsed (no `runner`
    # command ran meanwhile to settle the child) took the child and ran its step:
    # `Completed`, behind the back of a user whose run had died.
    hosts = tmp_path / "hosts.ini"
    hosts.write_text("h1 ansible_connection=local runner_queue=late\n")
    marker = tmp_path / "ran"
    book = runner_cli.playbook(
        f"jobs: [{{name: j, type: thread, targets: all, steps: [{{local: 'touch {marker}'}}]}}]\n"
    )
    runner_cli.env = distributed_env(runner_cli.env, pg_url, redis_url)
    run = runner_cli.start("run", book, "-i", str(hosts))
    queued = "SELECT count(*) FROM jobs WHERE queue = 'late' AND owner_id IS NOT NULL"
    wait_until(lambda: _sql(pg_url, queued) == 1, 60, "the child dispatched to queue 'late'")
    wait_until(lambda: _queued_tasks(redis_url, "late") == 1, 60, "its task in the broker")
    run.kill()
    run.communicate()
    silent = "SELECT extract(epoch FROM now()) - max(beat) FROM owners WHERE kind <> 'worker'"
    wait_until(lambda: float(_sql(pg_url, silent)) > 8, 60, "the controller's heartbeat lapsed")
    state = "SELECT state FROM jobs WHERE queue = 'late'"
    with workers(pg_url, redis_url, tmp_path / "workers", 1, "--queue", "late"):
        wait_until(lambda: _sql(pg_url, state) not in ("NotStarted", "Running"), 60, "its end")
    assert _sql(pg_url, state) == "Stopped"
    assert not marker.exists()


def test_a_worker_given_urls_with_passwords_on_its_command_line_hides_them_from_ps(
    pg_url: str, own_redis: RedisServer, tmp_path: Path
) -> None:
    # `runner worker --store postgresql://u:PW@... --broker redis://:PW@...` showed both
    # passwords in `ps` to every user of the machine for as long as the worker ran.
    own_redis.cli("config", "set", "requirepass", "rq7pass")
    broker = own_redis.url(0).replace("redis://", "redis://:rq7pass@")
    store = pg_url.replace("runner@", "runner:pg7pass@")  # trust: any password goes
    options = ["--store", store, f"--broker={broker}"]
    with (tmp_path / "worker.log").open("w") as log:
        worker = subprocess.Popen(
            [*RUNNER, "worker", "--name", "wps", *options],
            env=runner_env(tmp_path / "home"),
            stdout=log,
            stderr=log,
        )
    try:
        wait_until(lambda: _beating(pg_url) >= 1, 60, "the worker's heartbeat")
        shown = Path(f"/proc/{worker.pid}/cmdline").read_bytes().decode()
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    assert "wps" in shown
    assert "rq7pass" not in shown and "pg7pass" not in shown, shown


@pytest.fixture
def mute_host() -> Iterator[int]:
    """The port of a server that accepts TCP and never says a word (sshd hung before its
    banner)."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                accepted.append(server.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1]
    server.close()
    for conn in accepted:
        conn.close()


def _mute_run(cli: Cli, tmp_path: Path, port: int, session: bool) -> subprocess.Popen:
    """A run of one remote job on the mute host (in a session with a 600 s connect
    timeout, or with the default 10 s), its child waiting on the handshake."""
    hosts = tmp_path / "mute.ini"
    hosts.write_text(f"mute ansible_host=127.0.0.1 ansible_port={port} ansible_user=root\n")
    if session:
        book = cli.playbook(
            "sessions: {slow: {targets: all, connect_timeout: 600}}\n"
            "jobs: [{name: work, session: slow, steps: [{run: 'true'}]}]\n"
        )
    else:
        book = cli.playbook("jobs: [{name: work, targets: all, steps: [{run: 'true'}]}]\n")
    run = cli.start("run", book, "-i", str(hosts), "--format", "json")
    wait_until(lambda: [j for j in cli.jobs("--children") if j.get("ParentId")], what="a child")
    return run


def test_a_job_stop_while_a_host_never_answers_ends_the_run_without_its_handshake(
    runner_cli: Cli, tmp_path: Path, mute_host: int
) -> None:
    # The run waited out the whole connect timeout (a session's 600 s) before it ended:
    # only Ctrl-C and SIGTERM dropped a pending handshake.
    run = _mute_run(runner_cli, tmp_path, mute_host, session=True)
    parent = next(j["Id"] for j in runner_cli.jobs() if j.get("ParentId") is None)
    runner_cli("job", "stop", str(parent))
    try:
        out, err = run.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        run.kill()
        out, err = run.communicate()
        pytest.fail(f"the run went on waiting for the handshake: {err}")
    assert run.returncode == 99, out + err
    assert json.loads(out)["stats"]["mute"]["stopped"] == 1


def test_a_child_stopped_while_its_worker_connects_is_counted_stopped_as_without_workers(
    runner_cli: Cli, pg_url: str, redis_url: str, tmp_path: Path, mute_host: int
) -> None:
    # It ended `unreachable: connection ... timed out`, counted unreachable in the recap
    # and the JSON report, where without workers the same stop is counted stopped.
    runner_cli.env = distributed_env(runner_cli.env, pg_url, redis_url)
    with workers(pg_url, redis_url, tmp_path / "workers", 1):
        run = _mute_run(runner_cli, tmp_path, mute_host, session=False)
        # Read straight from the store: the stop must come within the 10 s connect timeout.
        claimed = "SELECT count(*) FROM jobs WHERE worker_id IS NOT NULL AND state = 'Running'"
        wait_until(lambda: _sql(pg_url, claimed) == 1, 60, "the worker's claim")
        claimed_at = time.monotonic()  # its handshake began just before the claim
        # What `runner job stop 1` asks, without its seconds of start-up on a busy machine.
        JobStore(pg_url).request_stop(1)
        late = time.monotonic() - claimed_at > CONNECT_TIMEOUT_S - 3  # it may have failed
        out, err = run.communicate(timeout=300)
    if late:
        pytest.skip("this machine was too slow: the stop may have come after the handshake failed")
    assert run.returncode == 99, out + err
    stats = json.loads(out)["stats"]["mute"]
    assert (stats["stopped"], stats["unreachable"]) == (1, 0), stats


def test_a_numeric_runner_queue_in_an_ini_inventory_names_that_queue(
    runner_cli: Cli, pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    # `runner_queue=2024` (an INI inventory reads it as a number) was refused, exit 4:
    # "queue name 2024 must be 1 to 100 letters, digits, ..." while `runner worker
    # --queue 2024` takes that queue.
    hosts = tmp_path / "hosts.ini"
    hosts.write_text("h1 ansible_connection=local runner_queue=2024\n")
    book = runner_cli.playbook(
        "jobs: [{name: j, type: thread, targets: all, steps: [{local: echo ran}]}]\n"
    )
    runner_cli.env = distributed_env(runner_cli.env, pg_url, redis_url)
    with workers(pg_url, redis_url, tmp_path / "workers", 1, "--queue", "2024"):
        result = runner_cli("run", book, "-i", str(hosts))
    assert result.returncode == 0, result.output
    assert [r["data"].strip() for r in runner_cli.receive(1)] == ["ran"]


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A directory on a 1 MB tmpfs already full."""
    full = tmp_path / "full"
    full.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(full)], check=True)
    try:
        with contextlib.suppress(OSError), (full / "fill").open("wb") as fill:
            fill.write(b"\0" * 2_000_000)
        yield full
    finally:
        subprocess.run(["umount", str(full)], check=True)


def test_a_worker_whose_home_is_full_names_its_known_hosts_file(
    runner_cli: Cli, fleet: Fleet, pg_url: str, redis_url: str, tmp_path: Path, full_disk: Path
) -> None:
    # A worker whose RUNNER_HOME is on a full disk cannot record a new host key: the child
    # said "unreachable: cannot connect to ADDR: [Errno 28] No space left on device", as if
    # the host were down, without naming the file.
    hosts = fleet.write_inventory(tmp_path / "hosts.ini", names=[fleet.host(0).name])
    book = runner_cli.playbook("jobs: [{name: j, targets: all, steps: [{run: echo hi}]}]\n")
    runner_cli.env = distributed_env(runner_cli.env, pg_url, redis_url)
    home = full_disk / "worker-home"
    env = distributed_env(runner_env(home), pg_url, redis_url)
    worker = Worker("wfull", env, tmp_path / "worker.log")
    try:
        wait_until(lambda: _beating(pg_url) >= 1, 60, "the worker's heartbeat")
        result = runner_cli("run", book, "-i", str(hosts))
    finally:
        worker.kill()
    assert result.returncode == 3, result.output
    assert f"{home}/known_hosts" in result.stdout, result.stdout
