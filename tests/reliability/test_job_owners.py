"""Who owns a job, and what happens to its processes when the owner is gone.

A `runner job list` in another PID namespace (a container sharing the store) must not
take a live run's jobs for orphans; a run whose job is stopped from outside exits 99; a
runner killed outright leaves no step running once the next command has reconciled, and
a target that cannot be reached is named, its process group kept for a later stop.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
from collections.abc import Iterator

import pytest

from tests.cli import run_runner
from tests.e2e.e2e_helpers import processes_matching, wait_until
from tests.fleet import Fleet, sshd_available

EXIT_INTERRUPTED = 99


@pytest.fixture(scope="module")
def owner_fleet() -> Iterator[Fleet]:
    """Two sshd hosts (owner1, owner2) whose listener a test may stop and start again."""
    if not sshd_available():
        pytest.skip("OpenSSH server not installed (/usr/sbin/sshd, ssh-keygen): run tests/run.sh")
    with Fleet(2, prefix="owner") as running:
        yield running


def _play(cli, targets: str, command: str) -> str:
    job = {"name": "work", "targets": targets, "steps": [{"run": command}]}
    return cli.playbook(json.dumps({"jobs": [job]}))


def _local_inventory(cli) -> str:
    path = cli.cwd / "local.ini"
    path.write_text("box ansible_connection=local\n")
    return str(path)


def _child(cli) -> dict:
    return next(j for j in cli.jobs("--children") if not j["ChildJobs"])


def _recorded_group(cli, job_id: int, field: str) -> int | None:
    """The process group the store holds for a child (what a later stop will end)."""
    from runner.jobs.store import JobStore

    store = JobStore(cli.home / "jobs.db")
    try:
        return getattr(store.get(job_id), field)
    finally:
        store.close()


def _end(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare(1)"
)
def test_job_list_in_another_pid_namespace_leaves_a_live_run_running(cli):
    flag = cli.cwd / "go"
    play = _play(cli, "box", f"while [ ! -e {flag} ]; do sleep 0.1; done; echo finished")
    run = cli.start("run", play, "-i", _local_inventory(cli))
    try:
        wait_until(lambda: cli.jobs() and _child(cli)["State"] == "Running", what="the run")
        listed = run_runner(
            "job",
            "list",
            "--children",
            "--format",
            "json",
            cwd=cli.cwd,
            env=cli.env,
            under=["unshare", "--pid", "--fork", "--mount-proc"],
        )
        assert listed.returncode == 0, listed.stderr
        assert {j["State"] for j in json.loads(listed.stdout)} == {"Running"}
        assert {j["State"] for j in cli.jobs("--children")} == {"Running"}
        flag.touch()
        out, err = run.communicate(timeout=120)
    finally:
        run.kill()
    assert run.returncode == 0, out + err
    assert {j["State"] for j in cli.jobs("--children")} == {"Completed"}
    assert [r["data"] for r in cli.receive(1)] == ["finished\n"]


def test_a_run_whose_job_is_stopped_from_another_process_exits_99(cli):
    run = cli.start("run", _play(cli, "box", "sleep 600.41"), "-i", _local_inventory(cli))
    try:
        wait_until(lambda: processes_matching("sleep 600.41"), what="the step to start")
        cli("job", "stop", "1", check=True)
        out, err = run.communicate(timeout=120)
    finally:
        run.kill()
    assert run.returncode == EXIT_INTERRUPTED, out + err
    assert "Stopped" in out and "stopped by 'runner job stop'" in out
    assert processes_matching("sleep 600.41") == []


def test_a_killed_runners_ssh_step_is_ended_before_its_job_is_stopped(cli, owner_fleet):
    inventory = owner_fleet.write_inventory(cli.cwd / "hosts.ini")
    run = cli.start("run", _play(cli, "owner1", "sleep 600.42"), "-i", str(inventory))
    try:
        wait_until(lambda: processes_matching("sleep 600.42"), what="the remote sleep")
        child = _child(cli)["Id"]
        wait_until(lambda: _recorded_group(cli, child, "remote_pgid"), what="its group")
        run.send_signal(signal.SIGKILL)  # no stop, no clean-up: the step goes on alone
        run.wait(timeout=30)
        states = {j["State"] for j in cli.jobs("--children")}
        assert states == {"Stopped"}
        assert processes_matching("sleep 600.42") == []
    finally:
        run.kill()
        _end(processes_matching("sleep 600.42"))


def test_an_unreachable_target_is_named_and_a_later_stop_ends_its_step(cli, owner_fleet):
    inventory = owner_fleet.write_inventory(cli.cwd / "hosts.ini")
    run = cli.start("run", _play(cli, "owner2", "sleep 600.43"), "-i", str(inventory))
    host = owner_fleet.host(1)
    try:
        wait_until(lambda: processes_matching("sleep 600.43"), what="the remote sleep")
        child = _child(cli)["Id"]
        wait_until(lambda: _recorded_group(cli, child, "remote_pgid"), what="its group")
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=30)
        assert host.process is not None
        host.process.kill()  # the listener only: the step's session lives on, unreachable
        host.process.wait()
        host.process = None
        job = _child(cli)
        assert job["State"] == "Disconnected"
        assert "cannot reach owner2" in job["Reason"]
        stop = cli("job", "stop", str(child))
        assert stop.returncode == 1
        assert stop.stderr.count("\n") == 1 and "cannot reach owner2" in stop.stderr
        assert _child(cli)["State"] == "Disconnected"  # never Stopped over a live step
        owner_fleet.start_host(1)
        cli("job", "stop", str(child), check=True)
        assert _child(cli)["State"] == "Stopped"
        assert processes_matching("sleep 600.43") == []
    finally:
        run.kill()
        _end(processes_matching("sleep 600.43"))
        owner_fleet.start_host(1)
