"""The controller under faults: `runner run` killed outright, and runners sharing one store.

A SIGKILL gives the runner no chance to clean up, so what is left is exactly what the
job store guarantees on its own: the file opens and is consistent, no job stays Running
for an owner that is gone, and every output record already committed is kept, once,
in order. Several runners writing one store at once must not see "database is locked".
Every host uses the local connection: no SSH server is needed.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cli import CliResult, run_runner, runner_env, start_runner

LINES = 12  # numbered lines each job prints
TYPES = ("remote", "thread", "background")
TERMINAL = {"Completed", "Failed", "Stopped"}
LINE = re.compile(r"^(\S+) line (\d+)$")

INVENTORY = """\
localhost ansible_connection=local
[web]
web1 ansible_connection=local
web2 ansible_connection=local
"""


def playbook(prefix: str, jobs: int, lines: int = LINES, pause: float = 0.03) -> str:
    """`jobs` jobs, types in turn remote / thread / background, each printing numbered lines."""
    hosts = ("localhost", "web1", "web2")
    text = ["name: faults", "jobs:"]
    for number in range(jobs):
        name = f"{prefix}{number:02d}"
        loop = f'for i in $(seq 1 {lines}); do echo "{name} line $i"; sleep {pause}; done'
        text += [
            f"  - name: {name}",
            f"    type: {TYPES[number % len(TYPES)]}",
            f"    targets: {hosts[number % len(hosts)]}",
            "    steps:",
            f"      - run: {loop}",
        ]
    return "\n".join(text) + "\n"


class Runner:
    """`python -m runner` with one RUNNER_HOME, as a user in a shell would call it."""

    def __init__(self, tmp_path: Path) -> None:
        self.home = tmp_path / "home"
        self.cwd = tmp_path
        self.inventory = tmp_path / "hosts.ini"
        self.inventory.write_text(INVENTORY)
        self.env = runner_env(self.home)

    def write(self, name: str, text: str) -> str:
        path = self.cwd / name
        path.write_text(text)
        return str(path)

    def __call__(self, *args: str) -> CliResult:
        return run_runner(*args, cwd=self.cwd, env=self.env)

    def start_run(self, play: str) -> subprocess.Popen[str]:
        return start_runner("run", play, "-i", str(self.inventory), cwd=self.cwd, env=self.env)

    def jobs(self) -> list[dict[str, Any]]:
        proc = self("job", "list", "--children", "--format", "json")
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        # mode=rw: never create the file (runner refuses an empty jobs.db as truncated)
        conn = sqlite3.connect(f"file:{self.home / 'jobs.db'}?mode=rw", uri=True, timeout=30)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()

    def leftovers(self) -> list[int]:
        """Processes still running with this RUNNER_HOME: step shells and background
        workers of a killed run (all started, indirectly, by this test)."""
        marker = f"RUNNER_HOME={self.home}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
        return found

    def end_leftovers(self, timeout: float = 15.0) -> list[str]:
        """Let a killed run's processes end (their steps are short); end the stragglers
        and return their command lines."""
        deadline = time.monotonic() + timeout
        while self.leftovers() and time.monotonic() < deadline:
            time.sleep(0.1)
        stragglers = []
        for pid in self.leftovers():
            try:
                stragglers.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" "))
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        return [command.decode(errors="replace") for command in stragglers]


def numbered_lines(records: list[tuple[int, int, str]]) -> dict[int, list[int]]:
    """Job id -> the line numbers its output holds, in stored (id) order."""
    per_job: dict[int, list[str]] = {}
    for _id, job_id, data in sorted(records):
        per_job.setdefault(job_id, []).append(data)
    numbers: dict[int, list[int]] = {}
    for job_id, chunks in per_job.items():
        for line in "".join(chunks).splitlines():
            match = LINE.match(line)
            assert match, f"job {job_id}: unexpected output line {line!r}"
            numbers.setdefault(job_id, []).append(int(match.group(2)))
    return numbers


def assert_store_sound(runner: Runner, before: dict[int, tuple[int, str]]) -> dict:
    """The checks after each kill; returns the output table as the next round's snapshot."""
    if (runner.home / "jobs.db").exists():  # a run killed early may not have made it yet
        assert runner.query("PRAGMA integrity_check") == [("ok",)]
    listed = runner.jobs()  # opens the store and reconciles the dead run's jobs
    unsettled = [(j["Id"], j["State"]) for j in listed if j["State"] not in TERMINAL]
    assert not unsettled, f"jobs left unfinished by a dead runner: {unsettled}"
    records = runner.query("SELECT id, job_id, data FROM output")
    now = {row[0]: (row[1], row[2]) for row in records}
    lost = {rid: rec for rid, rec in before.items() if now.get(rid) != rec}
    assert not lost, f"output records lost or changed after a kill: {lost}"
    for job_id, numbers in numbered_lines(records).items():
        # Batches commit whole and in order: what is kept is a prefix, never a gap.
        assert numbers == list(range(1, len(numbers) + 1)), (job_id, numbers)
    return now


def test_sigkill_at_random_points_loses_no_stored_output_and_strands_no_job(tmp_path):
    runner = Runner(tmp_path)
    play = runner.write("thirty.yml", playbook("k", 30))
    rng = random.Random(7)
    snapshot: dict[int, tuple[int, str]] = {}
    reasons = set()
    for _round in range(10):
        run = runner.start_run(play)
        time.sleep(rng.uniform(0.4, 3.0))
        run.send_signal(signal.SIGKILL)
        run.communicate()
        assert run.returncode == -signal.SIGKILL
        snapshot = assert_store_sound(runner, snapshot)
        # Background workers die with the runner; step commands end on their own.
        assert runner.end_leftovers() == []
        reasons |= {r[0] for r in runner.query("SELECT reason FROM jobs WHERE state = 'Stopped'")}
    assert any(r and "ended without stopping it" in r for r in reasons), reasons
    # The store is still fully usable: a run to the end completes every job.
    first_new = runner.query("SELECT COALESCE(MAX(id), 0) FROM jobs")[0][0]
    done = runner("run", play, "-i", str(runner.inventory))
    assert done.returncode == 0, done.stdout + done.stderr
    snapshot = assert_store_sound(runner, snapshot)
    ids = [job["Id"] for job in runner.jobs()]
    assert len(ids) == len(set(ids))
    fresh = [j for j in runner.jobs() if j["Id"] > first_new]
    assert len(fresh) == 60 and {j["State"] for j in fresh} == {"Completed"}
    children = {j["Id"] for j in fresh if not j["ChildJobs"]}
    complete = numbered_lines(
        [(rid, job_id, data) for rid, (job_id, data) in snapshot.items() if job_id in children]
    )
    assert sorted(complete) == sorted(children)
    assert all(numbers == list(range(1, LINES + 1)) for numbers in complete.values())


@pytest.mark.parametrize("runs", [2, 4])
def test_runners_sharing_one_store_at_once_lose_nothing(tmp_path, runs):
    runner = Runner(tmp_path)
    per_run = 15
    plays = [
        runner.write(f"p{n}.yml", playbook(f"r{n}-", per_run, lines=8, pause=0.01))
        for n in range(runs)
    ]
    started = [runner.start_run(play) for play in plays]
    finished = [(proc, *proc.communicate(timeout=180)) for proc in started]
    for proc, out, err in finished:
        assert proc.returncode == 0, out + err
        assert "database is locked" not in err and "Traceback" not in err, err
    listed = runner.jobs()
    ids = [job["Id"] for job in listed]
    assert len(ids) == len(set(ids))
    parents = [job for job in listed if job["ChildJobs"]]
    assert sorted(job["Name"] for job in parents) == sorted(
        f"r{n}-{i:02d}" for n in range(runs) for i in range(per_run)
    )
    assert {job["State"] for job in listed} == {"Completed"}
    children = {job["Id"]: job["Name"] for job in listed if not job["ChildJobs"]}
    records = runner.query("SELECT id, job_id, data FROM output")
    numbers = numbered_lines(records)
    assert sorted(numbers) == sorted(children)
    assert all(lines == list(range(1, 9)) for lines in numbers.values()), numbers
    names = {job_id: LINE.match(data.splitlines()[0]).group(1) for _i, job_id, data in records}
    assert names == children  # each child's output is its own job's


# Raises SIGTERM while Control.stop holds its lock, as a burst of signals does (a killed
# runner's background workers get PR_SET_PDEATHSIG once per exiting runner thread).
SIGNAL_INSIDE_STOP = """
import signal, sys
from runner.execution.steps import Control

control = Control()
signal.signal(signal.SIGTERM, lambda *_: control.stop("signal"))
code = Control.stop.__code__

def trace(frame, event, arg):
    if frame.f_code is code and event == "line" and frame.f_lineno > code.co_firstlineno + 1:
        sys.settrace(None)
        frame.f_trace = None
        signal.raise_signal(signal.SIGTERM)
    return trace

sys.settrace(trace)
control.stop("first")
sys.settrace(None)
print("stopped:", control.reason)
"""


def test_a_stop_signal_arriving_during_a_stop_does_not_hang_the_process():
    proc = subprocess.run(
        [sys.executable, "-c", SIGNAL_INSIDE_STOP],
        check=False,
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("stopped:")
