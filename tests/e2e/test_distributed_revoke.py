"""A child stopped while its task waits in the broker has that task revoked: it ends
Stopped without running, and a worker that comes to it discards it instead of spending a
slot on it. Real Redis and PostgreSQL, two `runner worker` processes of one slot each, the
sshd fleet; the stop from a second RUNNER_HOME with the same store and broker."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import processes_matching, wait_until

from tests.cli import Cli
from tests.services import free_port
from tests.workers import Worker, distributed_env, workers

REVOKED = "was revoked"  # the worker's own log line for a task it discarded unrun
SKIPPED = "'skipped'"  # Celery's log of a task that ran and found its child stopped


@dataclass
class Cluster:
    """The controller's `runner`, another machine's, the workers and where steps mark."""

    cli: Cli
    other: Cli
    workers: list[Worker]
    broker: str
    marks: Path
    flag: Path

    def book(self, targets: str) -> str:
        """A job whose every child marks that it started, prints, then waits for `flag`."""
        step = (
            f"touch {self.marks}/{{{{ inventory_hostname }}}}; echo begun;"
            f" while [ ! -e {self.flag} ]; do sleep 0.1; done"
        )
        return self.cli.playbook(
            f"""
            jobs:
              - name: work
                targets: "{targets}"
                steps:
                  - run: "{step}"
            """
        )

    def started(self) -> set[str]:
        return {mark.name for mark in self.marks.iterdir()}

    def waiting_tasks(self) -> int:
        """Tasks queued in the broker, and taken but not acknowledged."""
        import redis

        client = redis.Redis.from_url(self.broker)
        try:
            return int(client.llen("runner")) + int(client.hlen("unacked"))
        finally:
            client.close()

    def logs(self) -> str:
        return "".join(worker.log.read_text() for worker in self.workers)

    def children(self) -> dict[str, dict[str, Any]]:
        return {job["Location"]: job for job in self.cli.jobs("--children") if job["ParentId"]}


@pytest.fixture
def cluster(cli: Cli, pg_url: str, redis_url: str, fleet: Any, tmp_path: Path) -> Iterator[Cluster]:
    """Two workers of one slot each (so a third child waits in the broker), logging at
    INFO; the controller and a second machine with the same store and broker."""
    cli.env = distributed_env(cli.env, pg_url, redis_url)
    other = Cli(tmp_path / "elsewhere", cli.cwd)
    other.env = {**cli.env, "RUNNER_HOME": str(other.home)}
    marks = tmp_path / "started"
    marks.mkdir()
    args = ("--concurrency", "1", "--loglevel", "INFO")
    with workers(pg_url, redis_url, tmp_path / "workers", 2, *args) as started:
        yield Cluster(cli, other, started, redis_url, marks, tmp_path / "go")


def busy_with_queued(cluster: Cluster, hosts: int, inventory: str) -> subprocess.Popen[str]:
    """A run of `hosts` children: two on the workers' two slots, the rest queued."""
    targets = ":".join(f"host{n}" for n in range(1, hosts + 1))
    run = cluster.cli.start("run", cluster.book(targets), "-i", inventory, "-f", str(hosts))
    wait_until(lambda: len(cluster.started()) == 2, 60, "both workers busy")
    wait_until(lambda: cluster.waiting_tasks() == hosts, 30, "the other tasks queued")
    return run


def assert_never_ran(cluster: Cluster, child: dict[str, Any]) -> None:
    """Stopped, with no output, no step record and nothing done on its host."""
    assert child["State"] == "Stopped", child
    assert child["Location"] not in cluster.started()
    assert cluster.other.receive(child["Id"]) == []
    shown = cluster.other("job", "show", str(child["Id"]), check=True).stdout
    assert "Steps on" not in shown, shown


def test_a_child_stopped_while_queued_is_revoked_and_no_worker_spends_a_slot_on_it(
    cluster: Cluster, inventory: str
) -> None:
    run = busy_with_queued(cluster, 3, inventory)
    queued = [c for c in cluster.children().values() if c["State"] == "NotStarted"]
    assert len(queued) == 1, queued
    cluster.other("job", "stop", str(queued[0]["Id"]), check=True)
    assert cluster.cli.job(queued[0]["Id"])["State"] == "Stopped"
    cluster.flag.touch()  # both workers free up: one of them comes to the revoked task
    wait_until(lambda: REVOKED in cluster.logs(), 60, "a worker to discard the revoked task")
    out, err = run.communicate(timeout=120)
    assert run.returncode == 99, out + err  # stopped from outside: interrupted
    assert_never_ran(cluster, cluster.cli.job(queued[0]["Id"]))
    assert sorted(c["State"] for c in cluster.children().values()) == [
        "Completed",
        "Completed",
        "Stopped",
    ]
    assert SKIPPED not in cluster.logs()  # not taken, prepared and skipped: discarded
    wait_until(lambda: cluster.waiting_tasks() == 0, 30, "no task left in the broker")


def test_stopping_a_running_job_revokes_its_queued_children(
    cluster: Cluster, inventory: str
) -> None:
    run = busy_with_queued(cluster, 5, inventory)
    busy = cluster.started()
    cluster.other("job", "stop", "1", check=True)
    wait_until(lambda: not processes_matching(str(cluster.flag)), 30, "the running steps ended")
    out, err = run.communicate(timeout=120)
    assert run.returncode == 99, out + err
    children = cluster.children()
    assert {c["State"] for c in children.values()} == {"Stopped"}, children
    for host, child in children.items():
        if host not in busy:
            assert_never_ran(cluster, child)
    wait_until(lambda: cluster.logs().count(REVOKED) == 3, 60, "the three queued tasks discarded")
    assert SKIPPED not in cluster.logs()
    wait_until(lambda: cluster.waiting_tasks() == 0, 30, "no task left in the broker")


def test_ctrl_c_of_a_run_revokes_its_queued_children(cluster: Cluster, inventory: str) -> None:
    run = busy_with_queued(cluster, 3, inventory)
    busy = cluster.started()
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 99, out + err
    children = cluster.children()
    (queued,) = [child for host, child in children.items() if host not in busy]
    assert_never_ran(cluster, queued)
    wait_until(lambda: REVOKED in cluster.logs(), 60, "a worker to discard the revoked task")
    assert SKIPPED not in cluster.logs()
    wait_until(lambda: cluster.waiting_tasks() == 0, 30, "no task left in the broker")


def test_a_stop_whose_revoke_cannot_reach_the_broker_still_stops_the_queued_child(
    cluster: Cluster, inventory: str
) -> None:
    run = busy_with_queued(cluster, 3, inventory)
    (queued,) = [c for c in cluster.children().values() if c["State"] == "NotStarted"]
    gone = f"redis://127.0.0.1:{free_port()}/0"  # no broker listens there
    cluster.other.env = {**cluster.other.env, "RUNNER_BROKER": gone}
    stopped = cluster.other("job", "stop", str(queued["Id"]))
    assert stopped.returncode == 0, stopped.output  # the store is the truth: no error
    assert stopped.stderr == ""
    cluster.flag.touch()
    out, err = run.communicate(timeout=120)
    assert run.returncode == 99, out + err
    assert_never_ran(cluster, cluster.cli.job(queued["Id"]))
