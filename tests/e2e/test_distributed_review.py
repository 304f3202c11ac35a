"""Found in review of the distributed mode: relative playbook paths on workers started
elsewhere, and broker/store URLs a user mistypes (a password shown, an unexpected error)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from e2e_helpers import wait_until

from tests.cli import RUNNER, Cli, runner_env
from tests.workers import _beating, distributed_env


def test_a_worker_started_in_another_directory_runs_a_playbook_named_relatively(
    runner_cli: Cli, pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    # The README's own example, `runner run site.yml -i inventory/`, from a checkout; the
    # worker runs as a service whose working directory is "/", the files at the same paths.
    runner_cli.playbook(
        """
        jobs:
          - name: work
            type: thread
            steps:
              - local: echo ran
        """,
        name="site.yml",
    )
    (runner_cli.cwd / "hosts.ini").write_text("localhost ansible_connection=local\n")
    runner_cli.env = distributed_env(runner_cli.env, pg_url, redis_url)
    env = distributed_env(runner_env(tmp_path / "worker"), pg_url, redis_url)
    with (tmp_path / "worker.log").open("w") as log:
        worker = subprocess.Popen(
            [*RUNNER, "worker", "--name", "w1"], env=env, cwd="/", stdout=log, stderr=log
        )
    try:
        wait_until(lambda: _beating(pg_url) >= 1, 60, "the worker's heartbeat")
        result = runner_cli("run", "site.yml", "-i", "hosts.ini")
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert result.returncode == 0, result.output
    assert [r["data"].strip() for r in runner_cli.receive(1)] == ["ran"]


def test_a_password_that_is_not_url_encoded_is_never_shown(runner_cli: Cli) -> None:
    book = runner_cli.playbook("jobs: [{name: j, type: thread, steps: [{local: 'true'}]}]\n")
    for store, broker in (
        ("postgresql://runner:pa55@wqzd@127.0.0.1:1/runner", None),
        ("postgresql://runner@127.0.0.1:1/runner", "redis://:pa55 wqzd@127.0.0.1:1/0"),
        ("postgresql://runner@127.0.0.1:1/runner", "redis://:pa55/wqzd@127.0.0.1:1/0"),
    ):
        env = {**runner_cli.env, "RUNNER_STORE": store}
        if broker:
            env["RUNNER_BROKER"] = broker
        runner_cli.env = env
        result = runner_cli("run", book)
        assert result.returncode == 5, result.output  # a malformed URL: a bad option value
        assert result.stderr.count("\n") == 1 and "percent-encode" in result.stderr
        assert "wqzd" not in result.output and "pa55" not in result.output, result.output


def test_a_malformed_broker_url_is_one_line_not_an_unexpected_error(
    runner_cli: Cli, pg_url: str
) -> None:
    book = runner_cli.playbook("jobs: [{name: j, type: thread, steps: [{local: 'true'}]}]\n")
    runner_cli.env = distributed_env(runner_cli.env, pg_url, "redis://u:s3cret@[::1:6379/0")
    result = runner_cli("run", book)
    assert result.returncode in (1, 5), result.output
    assert result.stderr.count("\n") == 1 and "s3cret" not in result.output
