"""Detached jobs and results kept on the target, over real sshd: they survive the
runner, a later invocation reconnects, and no output is lost or delivered twice."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from pathlib import Path

import pytest
from e2e_helpers import processes_matching, started_job, wait_until

BOTH_MODES = True  # each test also runs with its children on two workers (conftest.py)

COUNTER = 'run: "for i in $(seq 1 {n}); do echo line $i; sleep {pause}; done"'


def _detached_play(cli, host: str, steps: list[str], extra: str = "detach: true") -> str:
    body = "".join(f"              - {s}\n" for s in steps)
    return cli.playbook(
        f"""
        jobs:
          - name: far
            targets: {host}
            {extra}
            steps:
"""
        + body
    )


def _lines(records: list[dict]) -> list[str]:
    return "".join(r["data"] for r in records if r["stream"] == "stdout").splitlines()


def _remote_dir(cli, child_id: int) -> Path:
    return Path(cli.job(child_id)["RemoteDir"]).expanduser()


def _printed(directory: Path) -> int:
    """Lines a kept job's steps have written so far, read on its host (this machine)."""
    return sum(len(out.read_bytes().splitlines()) for out in directory.glob("*.out"))


def _wait_finished(directory: Path, why: str) -> None:
    wait_until(lambda: (directory / "done").exists(), timeout=60, what=why)


def test_detached_job_survives_the_runner_and_is_disconnected_until_reconnected(cli, inventory):
    play = _detached_play(cli, "host1", [COUNTER.format(n=5, pause=0.3)])
    proc = cli("run", play, "-i", inventory, check=True)
    assert "job 1 far started (detached)" in proc.stdout
    child = cli.jobs()[0]["ChildJobs"][0]
    assert cli.job(1)["State"] == "Disconnected"  # nobody is attached to it now
    assert cli.job(child)["State"] == "Disconnected"
    listed = json.loads(cli("job", "list", "--refresh", "--format", "json", check=True).stdout)
    assert listed[0]["State"] in ("Running", "Completed")  # reconnected: the real state
    cli("job", "wait", "1", check=True)
    assert cli.job(1)["State"] == "Completed"
    assert _lines(cli.receive(1)) == [f"line {i}" for i in range(1, 6)]


def test_reconnect_delivers_what_was_produced_while_nobody_was_attached_once(cli, inventory):
    play = _detached_play(cli, "host2", [COUNTER.format(n=8, pause=0.1)])
    cli("run", play, "-i", inventory, check=True)
    directory = _remote_dir(cli, cli.jobs()[0]["ChildJobs"][0])
    _wait_finished(directory, "the job to finish on its host with nobody attached")
    first = _lines(cli.receive(1))
    second = _lines(cli.receive(1))
    assert first == [f"line {i}" for i in range(1, 9)]
    assert second == []
    assert cli.job(1)["HasMoreData"] is False


def test_sigkill_runner_then_receives_deliver_every_line_once_in_order(cli, inventory):
    play = cli.playbook(
        """
        jobs:
          - name: attached
            targets: host3
            steps: [{run: "sleep 30.31"}]
          - name: counter
            targets: host3
            detach: true
            steps:
              - run: "for i in $(seq 1 50); do echo $i; sleep 0.3; done; exit 7"
        """
    )
    run = cli.start("run", play, "-i", inventory)
    started_job(cli, "attached")
    counter = started_job(cli, "counter")
    directory = wait_until(
        lambda: cli.job(counter["ChildJobs"][0])["RemoteDir"], what="the counter's job directory"
    )
    directory = Path(directory).expanduser()
    wait_until(lambda: _printed(directory) >= 5, what="the counter to print 5 lines, attached")
    os.kill(run.pid, signal.SIGKILL)
    at_kill = _printed(directory)
    run.wait(timeout=10)
    if cli.workers:  # its worker stops it once the runner's heartbeat lapses (6 s here)
        wait_until(lambda: cli.jobs()[0]["State"] == "Stopped", 40, "attached Stopped")
    jobs = {j["Name"]: j for j in cli.jobs()}
    assert jobs["attached"]["State"] == "Stopped"  # reconciled: its runner is gone
    assert jobs["counter"]["State"] in ("Disconnected", "Running")
    for pid in processes_matching("sleep 30.31"):  # the attached step's orphan
        os.kill(pid, signal.SIGKILL)
    wait_until(
        lambda: _printed(directory) > at_kill + 5,
        what="the counter to print 5 more lines with its runner gone",
    )
    early = cli.receive(counter["Id"])
    assert early, "the first receive found nothing"
    proc = cli("job", "wait", str(counter["Id"]), "--timeout", "30")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    late = cli.receive(counter["Id"])
    numbers = [int(line) for line in _lines(early) + _lines(late)]
    assert numbers == list(range(1, 51))
    job = cli.job(counter["Id"])
    assert job["State"] == "Failed"  # `exit 7`: the job ends with its exit status
    show = cli("job", "show", str(counter["Id"]), check=True).stdout
    assert "7" in show and "failed" in show


def test_host_going_down_leaves_the_child_disconnected_and_loses_nothing(cli, inventory, fleet):
    play = _detached_play(
        cli, "host5", [COUNTER.format(n=30, pause=0.6)]
    )  # outlasts a slow receive
    cli("run", play, "-i", inventory, check=True)
    child = cli.jobs()[0]["ChildJobs"][0]
    directory = _remote_dir(cli, child)
    wait_until(lambda: _printed(directory) > 0, what="the job's first line on its host")
    part1 = _lines(cli.receive(1))
    fleet.stop_host(4)
    try:
        proc = cli("job", "receive", "1", "--format", "json")
        assert proc.returncode == 0
        job = cli.job(child)
        assert job["State"] == "Disconnected"
        assert "host5" in job["Reason"]
        _wait_finished(directory, "the job to finish while its host's sshd is down")
    finally:
        fleet.start_host(4)
    cli("job", "wait", "1", "--timeout", "60", check=True)
    part2 = _lines(cli.receive(1))
    numbers = [int(line.split()[1]) for line in part1 + part2]
    assert numbers == list(range(1, 31))
    assert cli.job(child)["State"] == "Completed"


def test_receive_keep_twice_then_receive_then_nothing(cli, inventory):
    play = _detached_play(cli, "host1", [COUNTER.format(n=3, pause=0)])
    cli("run", play, "-i", inventory, check=True)
    cli("job", "wait", "1", check=True)
    kept1 = cli.receive(1, "--keep")
    kept2 = cli.receive(1, "--keep")
    assert _lines(kept1) == _lines(kept2) == ["line 1", "line 2", "line 3"]
    assert cli.job(1)["HasMoreData"] is True
    assert _lines(cli.receive(1)) == ["line 1", "line 2", "line 3"]
    assert cli.receive(1) == []
    assert cli.job(1)["HasMoreData"] is False


def test_stop_ends_the_remote_process_group_and_remove_deletes_the_directory(cli, inventory):
    play = _detached_play(cli, "host2", ['run: "sleep 600.41"'])
    cli("run", play, "-i", inventory, check=True)
    child = cli.jobs()[0]["ChildJobs"][0]
    directory = _remote_dir(cli, child)
    assert directory.is_dir() and oct(directory.stat().st_mode & 0o777) == "0o700"
    wait_until(lambda: processes_matching("sleep 600.41"), what="the detached sleep")
    cli("job", "stop", "1", check=True)
    assert cli.job(1)["State"] == "Stopped"
    assert processes_matching("sleep 600.41") == []
    cli("job", "remove", "1", check=True)
    assert cli.jobs() == []
    assert not directory.exists()


def test_remove_keep_remote_leaves_the_directory(cli, inventory):
    play = _detached_play(cli, "host2", ['run: "echo kept"'])
    cli("run", play, "-i", inventory, check=True)
    cli("job", "wait", "1", check=True)
    directory = _remote_dir(cli, cli.jobs()[0]["ChildJobs"][0])
    cli("job", "remove", "1", "--keep-remote", check=True)
    assert (directory / "0.out").read_text() == "kept\n"


def test_failing_step_ends_the_detached_job_failed_with_status_and_stderr(cli, inventory):
    play = _detached_play(
        cli, "host3", ['run: "echo ok"', 'run: "echo broken >&2; exit 3"', 'run: "echo never"']
    )
    cli("run", play, "-i", inventory, check=True)
    cli("job", "wait", "1", check=True)
    assert cli.job(1)["State"] == "Failed"
    records = cli.receive(1)
    assert "".join(r["data"] for r in records if r["stream"] == "stderr") == "broken\n"
    assert _lines(records) == ["ok"]
    show = cli("job", "show", "1", check=True).stdout
    assert "step 1 exited with status 3" in show


@pytest.mark.parametrize("detach", ["detach: true", "detach: false"])
def test_results_kept_on_the_target_never_enter_the_store(cli, inventory, detach):
    play = _detached_play(
        cli,
        "host4",
        [COUNTER.format(n=4, pause=0)],
        extra=f"{detach}\n            results: {{to: remote}}",
    )
    cli("run", play, "-i", inventory, check=True)
    cli("job", "wait", "1", check=True)
    assert cli.job(1)["State"] == "Completed"
    assert _stored_output(cli) == 0
    assert cli.job(1)["HasMoreData"] is True
    assert _lines(cli.receive(1, "--keep")) == [f"line {i}" for i in range(1, 5)]
    assert _lines(cli.receive(1)) == [f"line {i}" for i in range(1, 5)]
    assert cli.receive(1) == []
    assert _stored_output(cli) == 0


def _stored_output(cli) -> int:
    """How many output records the job store holds (its SQLite file, or PostgreSQL)."""
    url = cli.env.get("RUNNER_STORE")
    if url:
        import psycopg

        with psycopg.connect(url) as conn:
            return conn.execute("SELECT COUNT(*) FROM output").fetchone()[0]
    with sqlite3.connect(cli.home / "jobs.db") as store:
        return store.execute("SELECT COUNT(*) FROM output").fetchone()[0]


def test_wait_returns_for_a_disconnected_job_unless_force(cli, inventory, fleet):
    play = _detached_play(cli, "host5", ['run: "sleep 5"'])
    cli("run", play, "-i", inventory, check=True)
    fleet.stop_host(4)
    try:
        proc = cli("job", "wait", "1", "--timeout", "20")
        assert proc.returncode == 0
        assert cli.job(1)["State"] == "Disconnected"
        forced = cli("job", "wait", "1", "--force", "--timeout", "1")
        assert forced.returncode == 124
    finally:
        fleet.start_host(4)
    cli("job", "wait", "1", "--force", check=True)
    assert cli.job(1)["State"] == "Completed"


def test_detached_background_job_outlives_the_runner(cli, inventory):
    play = cli.playbook(
        """
        jobs:
          - name: bg
            type: background
            targets: host1
            detach: true
            steps:
              - local: "sleep 1; echo background done"
        """
    )
    proc = cli("run", play, "-i", inventory, check=True)
    assert "(detached)" in proc.stdout
    assert cli.job(1)["State"] == "Running"  # its own worker process runs it
    cli("job", "wait", "1", "--timeout", "30", check=True)
    assert cli.job(1)["State"] == "Completed"
    assert _lines(cli.receive(1)) == ["background done"]


def test_a_job_that_needs_a_detached_job_waits_for_it_to_finish(cli, inventory):
    play = cli.playbook(
        """
        jobs:
          - name: far
            targets: host1
            detach: true
            steps: [{run: "sleep 1; date +%s.%N"}]
          - name: after
            targets: host1
            needs: [far]
            steps: [{run: "date +%s.%N"}]
        """
    )
    cli("run", play, "-i", inventory, check=True)
    jobs = {j["Name"]: j for j in cli.jobs()}
    assert jobs["far"]["State"] == "Completed" and jobs["after"]["State"] == "Completed"
    far_end = float(_lines(cli.receive(jobs["far"]["Id"]))[0])
    after_start = float(_lines(cli.receive(jobs["after"]["Id"]))[0])
    assert after_start > far_end


def test_a_detached_loop_with_env_from_its_item_runs_as_plan_shows(cli, tmp_path):
    """`plan` and `run` render a detached step alike: `env` sees the loop's `item`."""
    hosts = tmp_path / "local.ini"
    hosts.write_text(f"web1 ansible_connection=local runner_job_dir={tmp_path}/jobs\n")
    play = cli.playbook(
        """
        jobs:
          - name: far
            targets: web1
            detach: true
            steps:
              - run: echo "got $G in $PWD"
                loop: [a, b, c]
                env: {G: "{{ item }}"}
                cwd: /
        """
    )
    planned = cli("plan", play, "-i", str(hosts), "--format", "json", check=True)
    assert [row["item"] for row in json.loads(planned.stdout)["steps"]] == ["a", "b", "c"]
    proc = cli("run", play, "-i", str(hosts))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "job 1 far started (detached)" in proc.stdout
    cli("job", "wait", "1", "--timeout", "60", check=True)
    assert cli.job(1)["State"] == "Completed"
    assert _lines(cli.receive(1)) == ["got a in /", "got b in /", "got c in /"]


def _recap(stdout: str, host: str) -> list[int]:
    """The host's row of the recap: ok, changed, failed, skipped, unreachable, stopped, rescued."""
    (row,) = [line.split() for line in stdout.splitlines() if line.startswith(f"{host} ")]
    return [int(n) for n in row[1:]]


def test_an_attached_job_kept_on_its_target_shows_each_step_and_counts_it(cli, inventory):
    """`results: {to: remote}` without detach is followed: a line per step as it ends on
    the target, with -v its command and output, counted in the recap; its output still
    waits on the target for `receive`."""
    play = _detached_play(
        cli,
        "host2",
        [
            "name: greet\n                run: echo hello from {{ inventory_hostname }}",
            'name: never\n                run: "echo no"\n                when: false',
            'name: shrug\n                run: "echo tolerated >&2; exit 4"\n'
            "                ignore_errors: true",
            'name: break\n                run: "echo it broke >&2; exit 3"',
            'name: after\n                run: "echo not reached"',
        ],
        extra="results: {to: remote}",
    )
    proc = cli("run", play, "-i", inventory)
    assert proc.returncode == 2, proc.output
    lines = proc.stdout.splitlines()
    shown = [line.split()[:5] for line in lines if line.startswith("  ") and " | " in line]
    assert shown == [
        ["changed", "host2", "far", "|", "greet"],
        ["skipped", "host2", "far", "|", "never"],
        ["ignored", "host2", "far", "|", "shrug"],
        ["failed", "host2", "far", "|", "break"],
    ]
    failed = next(i for i, line in enumerate(lines) if "| break rc=3" in line)
    assert lines[failed + 1] == "    host2 ! it broke"
    assert _recap(proc.stdout, "host2") == [1, 1, 1, 1, 0, 0, 0]
    verbose = cli("run", play, "-i", inventory, "-v").stdout.splitlines()
    assert "    host2 $ echo hello from {{ inventory_hostname }}" in verbose
    greeted = verbose.index("    host2 | hello from host2")
    assert "| greet" in verbose[greeted + 1]
    assert "    host2 ! tolerated" in verbose
    assert _lines(cli.receive(1)) == ["hello from host2"]
