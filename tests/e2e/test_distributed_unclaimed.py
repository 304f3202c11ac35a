"""A child that no worker ever claims: `runner run` ends it Failed, naming its queue, after
a bounded wait, instead of waiting for ever (real Redis and PostgreSQL, no worker)."""

from __future__ import annotations

import subprocess

from tests.cli import Cli
from tests.workers import distributed_env


def test_a_child_no_live_worker_takes_ends_failed_naming_its_queue(
    cli: Cli, inventory: str, pg_url: str, redis_url: str
) -> None:
    cli.env = {**distributed_env(cli.env, pg_url, redis_url), "RUNNER_HEARTBEAT_TIMEOUT": "3"}
    book = cli.playbook(
        """
        jobs:
          - name: work
            targets: host1
            queue: no-worker-here
            steps:
              - run: "true"
        """
    )
    run = cli.start("run", book, "-i", inventory)
    try:
        out, err = run.communicate(timeout=90)  # the bound is 2 x 3 s; generous for a slow CI
    except subprocess.TimeoutExpired:
        run.kill()
        run.communicate()
        raise AssertionError("runner run still waits for a child no worker will take") from None
    assert run.returncode == 2, out + err  # a host failed
    child = [job for job in cli.jobs("--children") if job.get("ParentId") == 1][0]
    assert child["State"] == "Failed"
    assert "no live worker took queue 'no-worker-here'" in child["Reason"]
    assert "no-worker-here" in out + err  # said on the console too
