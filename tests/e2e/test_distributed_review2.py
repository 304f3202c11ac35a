"""Found in a second review of the distributed mode (a pool of store connections per
process, per-family row locks, the unclaimed-child timeout, handlers, run_once and blocks
on workers): real PostgreSQL, Redis, `runner worker` processes and sshd, as a user runs
them."""

from __future__ import annotations

import functools
import json
import re
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.cli import Cli, wait_until
from tests.workers import workers

WORKERS = pytest.mark.parametrize("cli", ["workers"], indirect=True)


def parents(cli: Cli) -> list[int]:
    """The ids of the runs' parent jobs, oldest first."""
    return sorted(job["Id"] for job in cli.jobs() if job.get("ParentId") is None)


def children_of(cli: Cli, parent: int) -> list[dict[str, Any]]:
    """The child jobs of job `parent`."""
    return [job for job in cli.jobs("--children") if job.get("ParentId") == parent]


def lines_of(cli: Cli, job_id: int) -> list[str]:
    """Every line a job's children wrote (received: each is read once)."""
    return "".join(record["data"] for record in cli.receive(job_id)).splitlines()


def local_hosts(path: Path, count: int, extra: str = "") -> str:
    """An inventory of `count` hosts run on this machine (`ansible_connection=local`)."""
    rows = [f"h{n:03d} ansible_connection=local {extra}".rstrip() for n in range(count)]
    path.write_text("\n".join(rows) + "\n")
    return str(path)


@WORKERS
def test_a_rerun_after_editing_the_inventory_and_a_vars_file_runs_the_new_values(
    cli: Cli, tmp_path: Path
) -> None:
    # A worker plans each run again from the same files; editing the inventory or a
    # `vars_files` file between two runs must change what the second run does, as it does
    # when the children run in the runner.
    inventory = tmp_path / "hosts.ini"
    (cli.cwd / "extra.yml").write_text("colour: red\n")
    book = cli.playbook(
        """
        vars_files: [extra.yml]
        jobs:
          - name: greet
            type: thread
            targets: all
            steps:
              - local: "echo {{ greeting }} {{ colour }}"
        """
    )
    values = [("one", "red"), ("two", "blue"), ("three", "green"), ("four", "grey")]
    for greeting, colour in values:  # two workers: one of them runs two of these
        local_hosts(inventory, 1, f"greeting={greeting}")
        (cli.cwd / "extra.yml").write_text(f"colour: {colour}\n")
        cli("run", book, "-i", str(inventory), check=True)
    got = [lines_of(cli, parent) for parent in parents(cli)]
    assert got == [[f"{greeting} {colour}"] for greeting, colour in values]


@WORKERS
def test_a_block_rescue_notifying_a_handler_and_run_once_run_on_the_workers(
    cli: Cli, inventory: str, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    host = "{{ inventory_hostname }}"
    book = cli.playbook(
        f"""
        jobs:
          - name: deploy
            targets: host1:host2
            steps:
              - run: echo once > {marks}/once-{host}
                run_once: true
                register: first
              - block:
                  - run: exit 3
                rescue:
                  - run: touch {marks}/rescued-{host}
                    notify: restart
                always:
                  - run: echo "{{{{ first.stdout | default('none') }}}}" > {marks}/always-{host}
            handlers:
              - name: restart
                run: touch {marks}/restarted-{host}
        """
    )
    result = cli("run", book, "-i", inventory)
    assert result.returncode == 0, result.output
    assert sorted(p.name for p in marks.iterdir()) == [
        "always-host1",
        "always-host2",
        "once-host1",
        "rescued-host1",
        "rescued-host2",
        "restarted-host1",
        "restarted-host2",
    ]
    children = children_of(cli, 1)
    assert {job["State"] for job in children} == {"Completed"}
    shown = cli("job", "show", "deploy", check=True).stdout
    assert "handler: restart" in shown


@WORKERS
def test_a_child_of_a_queue_no_live_worker_takes_fails_while_other_queues_workers_live(
    cli: Cli, inventory: str
) -> None:
    # The module's two workers take queue `runner` and beat; none takes `nowhere`.
    cli.env = {**cli.env, "RUNNER_HEARTBEAT_TIMEOUT": "3"}
    book = cli.playbook(
        """
        jobs:
          - name: work
            targets: host1
            queue: nowhere
            steps:
              - run: "true"
        """
    )
    run = cli.start("run", book, "-i", inventory)
    try:
        out, err = run.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        run.kill()
        run.communicate()
        raise AssertionError("the run waits for ever on a queue no live worker takes") from None
    assert run.returncode == 2, out + err
    (child,) = children_of(cli, 1)
    assert child["State"] == "Failed"
    assert "no live worker took queue 'nowhere'" in child["Reason"]


@pytest.mark.parametrize("cli", ["workers"], indirect=True)
@pytest.mark.own_workers  # one worker of concurrency 100 of its own
def test_a_hundred_forks_on_one_worker_of_concurrency_100_end_without_a_hang(
    cli: Cli, tmp_path: Path
) -> None:
    for worker in cli.workers:  # the fixture's two: this test wants one only
        worker.kill()
    store, broker = cli.env["RUNNER_STORE"], cli.env["RUNNER_BROKER"]
    inventory = local_hosts(tmp_path / "hosts.ini", 100)
    book = cli.playbook(
        """
        jobs:
          - name: wide
            type: thread
            targets: all
            steps:
              - local: "echo a {{ inventory_hostname }}"
              - local: "sleep 1; echo b {{ inventory_hostname }}"
        """
    )
    with workers(store, broker, tmp_path / "big", 1, "--concurrency", "100"):
        run = cli.start("run", book, "-i", inventory, "-f", "100")
        try:
            out, err = run.communicate(timeout=400)
        except subprocess.TimeoutExpired:
            run.kill()
            run.communicate()
            raise AssertionError("a hundred forks on one worker hang") from None
    assert run.returncode == 0, out + err
    lines = lines_of(cli, 1)
    assert sorted(lines) == sorted(
        [f"a h{n:03d}" for n in range(100)] + [f"b h{n:03d}" for n in range(100)]
    )


@WORKERS
def test_two_controllers_at_once_another_machine_receives_every_line_once_in_order(
    cli: Cli, inventory: str, tmp_path: Path
) -> None:
    book = cli.playbook(
        """
        jobs:
          - name: chatty
            targets: fleet
            steps:
              - run: "for i in $(seq 1 60); do echo {{ inventory_hostname }} $i; sleep 0.02; done"
        """
    )
    runs = [cli.start("run", book, "-i", inventory, "-f", "5") for _ in range(2)]
    other = Cli(tmp_path / "elsewhere", cli.cwd)
    other.env = {**cli.env, "RUNNER_HOME": str(other.home)}
    wait_until(lambda: len(parents(other)) == 2, 60, "both runs' parent jobs")
    seen: dict[int, list[str]] = {parent: [] for parent in parents(other)}

    def receive_some() -> None:
        for parent in seen:
            got = other("job", "receive", str(parent), "--format", "json")
            if got.returncode == 0:
                seen[parent] += "".join(r["data"] for r in json.loads(got.stdout)).splitlines()

    while any(run.poll() is None for run in runs):
        receive_some()
    receive_some()
    for run in runs:
        out, err = run.communicate()
        assert run.returncode == 0, out + err
    for parent, lines in seen.items():
        for host in ("host1", "host2", "host3", "host4", "host5"):
            mine = [line for line in lines if line.split()[0] == host]
            assert mine == [f"{host} {i}" for i in range(1, 61)], (parent, host, mine)


def test_background_children_on_the_sqlite_store_with_many_forks_all_end_once(
    runner_cli: Cli, tmp_path: Path
) -> None:
    inventory = local_hosts(tmp_path / "hosts.ini", 40)
    book = runner_cli.playbook(
        """
        jobs:
          - name: forked
            type: background
            targets: all
            steps:
              - local: "echo x {{ inventory_hostname }}"
              - local: "echo y {{ inventory_hostname }}"
          - name: threads
            type: thread
            targets: all
            needs: [forked]
            steps:
              - local: "echo z {{ inventory_hostname }}"
        """
    )
    result = runner_cli("run", book, "-i", inventory, "-f", "40", timeout=400)
    assert result.returncode == 0, result.output
    states: dict[str, Any] = {job["State"] for job in runner_cli.jobs("--children")}
    assert states == {"Completed"}
    forked, threads = parents(runner_cli)
    assert sorted(lines_of(runner_cli, forked)) == sorted(
        [f"x h{n:03d}" for n in range(40)] + [f"y h{n:03d}" for n in range(40)]
    )
    assert sorted(lines_of(runner_cli, threads)) == sorted(f"z h{n:03d}" for n in range(40))


@WORKERS
@pytest.mark.own_workers  # it kills its workers
def test_a_worker_killed_after_its_claim_while_it_connects_fails_the_child_as_lost(
    cli: Cli, tmp_path: Path
) -> None:
    # A target that accepts TCP and never says a word: the worker's claim commits while
    # its connection still waits for the banner, and the worker dies in that moment.
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(16)
        port = mute.getsockname()[1]
        inventory = tmp_path / "mute.ini"
        inventory.write_text(f"mute ansible_host=127.0.0.1 ansible_port={port}\n")
        mark = tmp_path / "ran"
        book = cli.playbook(
            f"""
            jobs:
              - name: work
                targets: mute
                steps:
                  - run: "touch {mark}"
            """
        )
        run = cli.start("run", book, "-i", str(inventory))
        wait_until(lambda: _child_state(cli) == "Running", 60, "a worker's claim")
        for worker in cli.workers:
            worker.kill()
        try:
            out, err = run.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            run.kill()
            run.communicate()
            raise AssertionError("the run waits for ever on a child whose worker died") from None
    assert run.returncode == 2, out + err
    (child,) = children_of(cli, 1)
    assert child["State"] == "Failed"
    assert re.search(r"worker w[12] lost", child["Reason"]), child
    assert not mark.exists()


def _new_parent(cli: Cli, earlier: int) -> int | None:
    """The newest parent job once there are more than `earlier`."""
    found = parents(cli)
    return found[-1] if len(found) > earlier else None


def _child_state(cli: Cli) -> str | None:
    children = children_of(cli, 1)
    return children[0]["State"] if children else None


@WORKERS
def test_a_stop_racing_the_claim_stops_the_child_and_its_step_never_ends_normally(
    cli: Cli, inventory: str, tmp_path: Path
) -> None:
    other = Cli(tmp_path / "elsewhere", cli.cwd)
    other.env = {**cli.env, "RUNNER_HOME": str(other.home)}
    for round_ in range(3):
        mark = tmp_path / f"ran{round_}"
        # long enough that a `job stop` process starting on a loaded machine lands first
        step = f'{{run: "sleep 20; touch {mark}"}}'
        book = cli.playbook(f"jobs: [{{name: w{round_}, targets: host1, steps: [{step}]}}]\n")
        run = cli.start("run", book, "-i", inventory)
        parent = wait_until(functools.partial(_new_parent, other, round_), 60, "the run's job")
        other("job", "stop", str(parent), check=True)
        out, err = run.communicate(timeout=120)
        assert run.returncode == 99, out + err
        (child,) = children_of(cli, parent)
        assert child["State"] == "Stopped", child
        assert not mark.exists(), (out, err, cli("job", "show", str(child["Id"])).stdout)


@WORKERS
@pytest.mark.own_workers  # a late worker of the queue joins its store
def test_a_child_removed_while_queued_is_skipped_by_a_late_worker_without_an_error(
    cli: Cli, inventory: str, tmp_path: Path
) -> None:
    mark = tmp_path / "ran"
    book = cli.playbook(
        f"""
        jobs:
          - name: work
            targets: host1
            queue: later
            steps:
              - run: "touch {mark}"
        """
    )
    cli.env = {**cli.env, "RUNNER_HEARTBEAT_TIMEOUT": "30"}
    run = cli.start("run", book, "-i", inventory)
    wait_until(lambda: _child_state(cli) == "NotStarted", 60, "queued")
    cli("job", "remove", "--force", "1", check=True)
    run.communicate(timeout=60)
    assert cli.jobs("--children") == []
    store, broker = cli.env["RUNNER_STORE"], cli.env["RUNNER_BROKER"]
    late_args = ("--queue", "later", "--loglevel", "INFO")
    with workers(store, broker, tmp_path / "late", 1, *late_args) as late:
        log = late[0].log
        wait_until(
            lambda: (
                "runner.child" in log.read_text()
                and ("succeeded" in log.read_text() or "raised" in log.read_text())
            ),
            30,
            "the task",
        )
        text = log.read_text()
    assert not mark.exists()
    assert "Traceback" not in text and "raised" not in text, text


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_stop_between_a_parent_and_its_children_keeps_a_worker_from_claiming_them(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # `runner job stop` from another machine lands after `runner run` recorded the job
    # and before it recorded its children (two transactions): the children must not be
    # taken by a worker as if no stop had been asked.
    from runner.jobs.store import JobStore

    url = request.getfixturevalue("pg_url") if kind == "postgresql" else tmp_path / "jobs.db"
    store = JobStore(url)
    try:
        parent = store.create_job("work", "remote", "true", "host1")
        store.request_stop(parent)
        (child,) = store.create_children(parent, "work", "remote", "true", [("host1", None, None)])
        assert not store.claim_for_worker(child, "w1")
        assert store.stop_requested_among([child]) == [child]
        assert store.get(child).state == "Stopping"
    finally:
        store.close()


@pytest.mark.parametrize("cli", ["local"], indirect=True)
def test_a_store_restarted_while_two_workers_write_five_hosts_loses_and_repeats_no_line(
    cli: Cli, inventory: str, redis_url: str, tmp_path: Path
) -> None:
    from tests.services import PostgresServer
    from tests.workers import distributed_env

    with PostgresServer() as server:
        store = server.fresh_database()
        cli.env = distributed_env(cli.env, store, redis_url)
        with workers(store, redis_url, tmp_path, 2):
            book = cli.playbook(
                """
                jobs:
                  - name: chatty
                    targets: fleet
                    steps:
                      - run: "for i in $(seq 30); do echo $HOST $i; sleep .2; done"
                        env: {HOST: "{{ inventory_hostname }}"}
                """
            )
            run = cli.start("run", book, "-i", inventory, "-f", "5")
            wait_until(lambda: "host1 3" in cli("job", "receive", "1", "--keep").stdout, 60, "3")
            server.restart()
            out, err = run.communicate(timeout=180)
            assert run.returncode == 0, out + err
            lines = lines_of(cli, 1)
    for host in ("host1", "host2", "host3", "host4", "host5"):
        mine = [line for line in lines if line.split()[0] == host]
        assert mine == [f"{host} {i}" for i in range(1, 31)], (host, mine)


def _ssh_peers(pid: int, port: int) -> list[str]:
    """The remote ends of process `pid`'s TCP connections to `port`."""
    shown = subprocess.run(
        ["ss", "-Htnp", "state", "established", f"( dport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line for line in shown.splitlines() if f"pid={pid}," in line]


@WORKERS
def test_the_controller_opens_no_ssh_connection_for_children_sent_to_workers(
    cli: Cli, inventory: str, fleet: Any, tmp_path: Path
) -> None:
    flag = tmp_path / "go"
    book = cli.playbook(
        f"""
        jobs:
          - name: work
            targets: fleet
            steps:
              - run: "echo up; while [ ! -e {flag} ]; do sleep 0.1; done"
        """
    )
    run = cli.start("run", book, "-i", inventory, "-f", "5")
    try:
        wait_until(lambda: cli("job", "receive", "1", "--keep").stdout.count("up") == 5, 60, "5")
        port = fleet.host(0).port
        assert _ssh_peers(run.pid, port) == []
        assert any(_ssh_peers(worker.pid, port) for worker in cli.workers)
    finally:
        flag.touch()
    out, err = run.communicate(timeout=120)
    assert run.returncode == 0, out + err


_LEFT_BEHIND = (
    "SELECT (SELECT count(*) FROM output WHERE job_id NOT IN (SELECT id FROM jobs))"
    " + (SELECT count(*) FROM steps WHERE child_id NOT IN (SELECT id FROM jobs))"
    " + (SELECT count(*) FROM events WHERE child_id NOT IN (SELECT id FROM jobs))"
)


@WORKERS
def test_a_job_removed_while_its_workers_write_leaves_no_rows_and_the_workers_go_on(
    cli: Cli, inventory: str, tmp_path: Path
) -> None:
    import psycopg

    book = cli.playbook(
        """
        jobs:
          - name: chatty
            targets: fleet
            steps:
              - run: "while true; do echo more; sleep 0.05; done"
        """
    )
    run = cli.start("run", book, "-i", inventory, "-f", "5")
    wait_until(lambda: cli("job", "receive", "1", "--keep").stdout.count("more") > 20, 60, "output")
    other = Cli(tmp_path / "elsewhere", cli.cwd)
    other.env = {**cli.env, "RUNNER_HOME": str(other.home)}
    other("job", "remove", "--force", "1", check=True)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 99, out + err
    assert "Traceback" not in out + err
    with psycopg.connect(cli.env["RUNNER_STORE"], autocommit=True) as conn:
        left = conn.execute(_LEFT_BEHIND).fetchone()
    assert left is not None and left[0] == 0
    again = cli(
        "run",
        cli.playbook("jobs: [{name: j, targets: host1, steps: [{run: echo ok}]}]\n"),
        "-i",
        inventory,
    )
    assert again.returncode == 0, again.output


@WORKERS
@pytest.mark.parametrize("where", ["block", "include"])
def test_run_once_inside_a_block_or_an_included_file_runs_once_with_workers(
    cli: Cli, inventory: str, tmp_path: Path, where: str
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    once = f"{{run: 'touch {marks}/once-{{{{ inventory_hostname }}}}', run_once: true}}"
    steps = f"[{{block: [{once}]}}]"
    if where == "include":
        (cli.cwd / "once.yml").write_text(f"[{once}]\n")
        steps = "[{include: once.yml}]"
    book = cli.playbook(f"jobs: [{{name: j, targets: 'host1:host2:host3', steps: {steps}}}]\n")
    result = cli("run", book, "-i", inventory, "-f", "3")
    assert result.returncode == 0, result.output
    assert sorted(p.name for p in marks.iterdir()) == ["once-host1"]
