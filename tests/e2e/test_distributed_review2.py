"""Found in a second review of the distributed mode (a pool of store connections per
process, per-family row locks, the unclaimed-child timeout, handlers, run_once and blocks
on workers): real PostgreSQL, Redis, `runner worker` processes and sshd, as a user runs
them."""

from __future__ import annotations

import json
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
    children = [job for job in cli.jobs("--children") if job.get("ParentId") == 1]
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
    (child,) = [job for job in cli.jobs("--children") if job.get("ParentId") == 1]
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
