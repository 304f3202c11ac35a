"""The fleet's hosts are this machine: the suite's jobs keep their job directories in the
test's temp dir, never in the real ~/.runner (tests/conftest.py checks the whole session)."""

from __future__ import annotations

from pathlib import Path


def test_a_detached_job_on_the_fleet_keeps_its_job_directory_in_tmp_path(cli, inventory, tmp_path):
    play = cli.playbook(
        """
        jobs:
          - name: far
            targets: host1
            detach: true
            steps: [{run: "echo kept"}]
        """
    )
    cli("run", play, "-i", inventory, check=True)
    cli("job", "wait", "1", check=True)
    child = cli.jobs()[0]["ChildJobs"][0]
    directory = Path(cli.job(child)["RemoteDir"])
    assert tmp_path in directory.parents, directory
    assert (directory / "done").is_file()
    assert [r["data"] for r in cli.receive(1)] == ["kept\n"]
