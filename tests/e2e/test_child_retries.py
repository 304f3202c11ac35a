"""A job's `retries`: a child that ended without a step's own failure (its host out of
reach, its worker lost) runs again from its first step, as many more times as the job
allows; a step that failed on its own never does. Local mode on the shared fleet (host5),
and one test on two real workers, one of them SIGKILLed mid-step."""

from __future__ import annotations

import contextlib
import os
import re
import signal
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import processes_matching, wait_until
from test_distributed import WORKERS, child_of, unique_sleep

from tests.cli import Cli

HOST = 4  # host5 of the fleet


def play(cli: Cli, step: str, retries: int | None, targets: str = "host5", extra: str = "") -> str:
    retry = "" if retries is None else f"retries: {retries}"
    return cli.playbook(
        f"""
        jobs:
          - name: work
            targets: {targets}
            {retry}
            {extra}
            steps:
              - {step}
        """
    )


def once_then_again(done: Path, marker: str, local: bool = False) -> str:
    """A step that, on its first attempt, leaves `done` and runs `marker` (a long sleep to
    be cut off); on a later one sees `done` and ends at once."""
    key = "local" if local else "run"
    return (
        f'{key}: "echo attempt $PPID; if [ -e {done} ]; then echo again;'
        f' else touch {done}; {marker}; fi"'
    )


def cut_connections(fleet: Any, marker: str) -> None:
    """The host's sshd ends the run's connection mid-step (its per-connection processes
    SIGKILLed, by PID); its listener stays up, so the host can be reached again."""
    wait_until(lambda: processes_matching(marker), 60, "the step on host5")
    for pid in fleet.connection_pids(HOST):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def show(cli: Cli, job_id: int) -> str:
    return cli("job", "show", str(job_id), check=True).stdout


def run_cut_mid_step(cli: Cli, fleet: Any, tmp_path: Path, retries: int | None) -> str:
    """Run `once_then_again` on host5 with `retries`, its connection cut mid-step:
    "exit N" and the run's output."""
    marker = unique_sleep()
    book = play(cli, once_then_again(tmp_path / "done", marker), retries)
    inventory = str(fleet.write_inventory(tmp_path / "hosts.ini"))
    run = cli.start("run", book, "-i", inventory)
    cut_connections(fleet, marker)
    out, err = run.communicate(timeout=120)
    assert not processes_matching(marker)
    return f"exit {run.returncode}\n{out}{err}"


def test_a_connection_lost_mid_step_runs_the_child_again_with_retries(
    cli: Cli, fleet: Any, tmp_path: Path
) -> None:
    output = run_cut_mid_step(cli, fleet, tmp_path, 1)
    assert output.startswith("exit 0\n"), output
    assert "retrying host5: unreachable" in output and "(attempt 2 of 2)" in output
    assert cli.job(2)["State"] == "Completed"
    assert "attempt 2 of 2" in show(cli, 2)
    data = "".join(record["data"] for record in cli.receive(1))
    assert len(re.findall(r"^attempt \d+$", data, re.M)) == 2, data  # the first one's kept
    assert "again" in data and "retrying host5" in data  # the retry told in its output


def test_without_retries_a_connection_lost_mid_step_ends_the_child_unreachable(
    cli: Cli, fleet: Any, tmp_path: Path
) -> None:
    output = run_cut_mid_step(cli, fleet, tmp_path, None)
    assert output.startswith("exit 3\n"), output
    assert "retrying" not in output
    child = cli.job(2)
    assert child["State"] == "Failed" and "unreachable" in child["Reason"]


def test_a_host_down_through_every_attempt_is_tried_retries_plus_one_times(
    cli: Cli, fleet: Any, tmp_path: Path
) -> None:
    inventory = str(fleet.write_inventory(tmp_path / "hosts.ini"))
    fleet.stop_host(HOST)
    try:
        result = cli("run", play(cli, "run: echo hi", 2), "-i", inventory)
    finally:
        fleet.start_host(HOST)
    assert result.returncode == 3, result.output
    assert "(attempt 2 of 3)" in result.output and "(attempt 3 of 3)" in result.output
    child = cli.job(2)
    assert child["State"] == "Failed" and "unreachable" in child["Reason"]
    assert "attempt 3 of 3" in child["Reason"]


def test_a_step_that_fails_on_its_own_is_not_run_again_by_retries(
    cli: Cli, fleet: Any, tmp_path: Path
) -> None:
    count = tmp_path / "count"
    book = play(cli, f'run: "echo ran >> {count}; exit 1"', 2)
    result = cli("run", book, "-i", str(fleet.write_inventory(tmp_path / "hosts.ini")))
    assert result.returncode == 2, result.output
    assert count.read_text() == "ran\n"
    assert "retrying" not in result.output
    assert "attempt" not in (cli.job(2)["Reason"] or "")


@pytest.mark.parametrize(
    ("value", "extra", "says"),
    [
        ("-1", "", "-1"),
        ("11", "", "11"),
        ("'2'", "", "'2'"),
        ("1", "detach: true", "kept on its target"),
    ],
)
def test_a_bad_retries_is_one_located_line_exit_4(
    cli: Cli, fleet: Any, tmp_path: Path, value: str, extra: str, says: str
) -> None:
    book = cli.playbook(
        f"""
        jobs:
          - name: work
            targets: host5
            {extra}
            retries: {value}
            steps:
              - run: echo hi
        """
    )
    result = cli("run", book, "-i", str(fleet.write_inventory(tmp_path / "hosts.ini")))
    assert result.returncode == 4, result.output
    assert result.stderr.count("\n") == 1, result.stderr
    assert "play.yml:6" in result.stderr and "jobs[0].retries:" in result.stderr
    assert says in result.stderr
    assert "Traceback" not in result.output
    assert cli.jobs() == []


@WORKERS
@pytest.mark.own_workers  # it kills one of its workers
def test_a_child_whose_worker_is_killed_runs_again_on_another_with_retries(
    cli: Cli, inventory: str, tmp_path: Path
) -> None:
    marker = unique_sleep()
    step = once_then_again(tmp_path / "done", marker, local=True)
    run = cli.start("run", play(cli, step, 1, "host1", "type: thread"), "-i", inventory)
    wait_until(lambda: processes_matching(marker), 60, "the step on a worker")
    first = wait_until(lambda: cli.receive(1, "--keep"), 30, "its first line")[0]["data"]
    owner = int(first.split()[1])
    victim = next(worker for worker in cli.workers if worker.pid == owner)
    other = next(worker for worker in cli.workers if worker.pid != owner)
    victim.kill()
    out, err = run.communicate(timeout=120)
    assert run.returncode == 0, out + err
    assert f"retrying host1: worker {victim.name} lost" in out + err
    child = child_of(cli, 1)
    assert child["State"] == "Completed"
    assert "attempt 2 of 2" in child["Reason"]
    data = "".join(record["data"] for record in cli.receive(1))
    assert f"attempt {owner}" in data and f"attempt {other.pid}" in data and "again" in data
