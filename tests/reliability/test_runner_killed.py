"""A killed runner leaves no step of an attached job running, on any path.

Each test starts a step that prints nothing and waits (`echo $$ > PIDFILE; exec sleep`),
sends SIGKILL to the `runner run` process (or to a background job's worker), and polls
until the step's process is gone. The paths: the local connection, a `thread` job's
`local:` step, a background worker (the runner killed, or the worker itself), and steps
on real sshd hosts, in the step shell and on an exec channel (`runner_step_shell=false`).
Fleet hosts share this machine's filesystem and process table, so the pid file is read
and the pid checked from here; pid files are named per test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.e2e.e2e_helpers import wait_until

GONE_WITHIN = 30  # seconds; the requirement is 5, polled with room for a loaded machine
STEP = "echo $$ > {pidfile}; exec sleep 120"
LOCAL_INVENTORY = "[web]\nweb1 ansible_connection=local\n"


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie awaiting its reaper does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _pid_in(path: Path) -> int | None:
    """The pid a step wrote to `path`, once it has written the whole line."""
    text = path.read_text() if path.exists() else ""
    return int(text) if text.endswith("\n") else None


def _start(cli, tmp_path: Path, job: dict, inventory: str) -> tuple[subprocess.Popen, int]:
    """Start `runner run` of one job; return it and the step's pid once the step runs."""
    play = cli.playbook(json.dumps({"jobs": [job]}))
    run = cli.start("run", play, "-i", inventory)
    pidfile = tmp_path / "step.pid"
    try:
        pid = wait_until(lambda: _pid_in(pidfile), timeout=60, what="the step to start")
    except AssertionError:
        run.kill()
        raise AssertionError(run.communicate()) from None
    return run, pid


def _kill_and_check(run: subprocess.Popen, victim: int, step: int) -> None:
    """SIGKILL `victim`; the step's process must then end by itself."""
    try:
        os.kill(victim, signal.SIGKILL)
        run.wait(timeout=60) if victim == run.pid else None
        wait_until(lambda: not _alive(step), timeout=GONE_WITHIN, what=f"step {step} to end")
    finally:
        if _alive(step):
            os.kill(step, signal.SIGKILL)  # the test's own step, by its pid
        if run.poll() is None:
            run.kill()
        run.communicate()


def _local_inventory(tmp_path: Path) -> str:
    path = tmp_path / "local.ini"
    path.write_text(LOCAL_INVENTORY.replace("local\n", f"local runner_job_dir={tmp_path}/jobs\n"))
    return str(path)


def test_runner_killed_ends_a_step_on_the_local_connection(cli, tmp_path):
    pidfile = tmp_path / "step.pid"
    job = {"name": "k", "targets": "web1", "steps": [{"run": STEP.format(pidfile=pidfile)}]}
    run, step = _start(cli, tmp_path, job, _local_inventory(tmp_path))
    _kill_and_check(run, run.pid, step)


def test_runner_killed_ends_a_thread_jobs_local_step(cli, tmp_path):
    pidfile = tmp_path / "step.pid"
    job = {
        "name": "k",
        "type": "thread",
        "targets": "web1",
        "steps": [{"local": STEP.format(pidfile=pidfile)}],
    }
    run, step = _start(cli, tmp_path, job, _local_inventory(tmp_path))
    assert _ppid(step) == run.pid  # the step is the runner's own child
    _kill_and_check(run, run.pid, step)


@pytest.mark.parametrize("victim", ["runner", "worker"])
def test_killed_runner_or_background_worker_ends_the_workers_step(cli, tmp_path, victim):
    pidfile = tmp_path / "step.pid"
    job = {
        "name": "k",
        "type": "background",
        "targets": "web1",
        "steps": [{"run": STEP.format(pidfile=pidfile)}],
    }
    run, step = _start(cli, tmp_path, job, _local_inventory(tmp_path))
    worker = _ppid(step)
    assert worker != run.pid and _ppid(worker) == run.pid
    _kill_and_check(run, run.pid if victim == "runner" else worker, step)
    if victim == "worker":
        wait_until(lambda: run.poll() is not None, timeout=60, what="the run to end")


@pytest.mark.parametrize("step_shell", ["true", "false"])
def test_runner_killed_ends_a_step_on_an_ssh_host(cli, faulty_fleet, tmp_path, step_shell):
    """`true`: the step runs in the connection's step shell; `false`: on an exec channel."""
    inventory = faulty_fleet.write_inventory(
        tmp_path / "hosts.ini", names=["fault1"], extra_vars={"runner_step_shell": step_shell}
    )
    pidfile = tmp_path / "step.pid"
    job = {"name": "k", "targets": "fault1", "steps": [{"run": STEP.format(pidfile=pidfile)}]}
    run, step = _start(cli, tmp_path, job, str(inventory))
    _kill_and_check(run, run.pid, step)


def test_runner_killed_leaves_detached_jobs_running(cli, tmp_path):
    """The watchers end attached steps only: a detached job on the controller (kept in a
    job directory, and a background worker of its own) goes on after the runner's kill."""
    pids = {name: tmp_path / f"{name}.pid" for name in ("step", "kept", "worker")}
    jobs = [
        {
            "name": "attached",
            "targets": "web1",
            "steps": [{"run": STEP.format(pidfile=pids["step"])}],
        },
        {
            "name": "kept",
            "targets": "web1",
            "detach": True,
            "steps": [{"run": STEP.format(pidfile=pids["kept"])}],
        },
        {
            "name": "worker",
            "type": "background",
            "targets": "web1",
            "detach": True,
            "steps": [{"run": STEP.format(pidfile=pids["worker"])}],
        },
    ]
    play = cli.playbook(json.dumps({"jobs": jobs}))
    run = cli.start("run", play, "-i", _local_inventory(tmp_path))
    try:
        wait_until(lambda: all(_pid_in(p) for p in pids.values()), timeout=60, what="the steps")
        step, detached = _pid_in(pids["step"]), [_pid_in(pids["kept"]), _pid_in(pids["worker"])]
        _kill_and_check(run, run.pid, step)
        assert [_alive(pid) for pid in detached] == [True, True]
    finally:
        for pid in filter(None, map(_pid_in, pids.values())):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)  # the test's own steps, by their pids
