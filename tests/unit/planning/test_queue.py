"""A job's `queue:` and the inventory's `runner_queue`: which workers' queue a child goes
to in the distributed mode, and a bad name refused where it is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.api.plans import plan
from runner.errors import InventoryError, PlaybookError
from runner.planning.planner import queue_for
from tests.cli import run_runner

PLAYBOOK = """
name: p
jobs:
  - name: routed
    targets: all
    queue: gpu.large-1
    steps: [{run: "true"}]
  - name: by-inventory
    targets: all
    steps: [{run: "true"}]
  - name: on-controller
    type: thread
    steps: [{local: "true"}]
"""
INVENTORY = """
[web]
web1 runner_queue=web-host
web2
[db]
db1
[web:vars]
runner_queue=web-group
"""


def write(tmp_path: Path, playbook: str, inventory: str = INVENTORY) -> tuple[str, str]:
    (tmp_path / "play.yml").write_text(playbook)
    (tmp_path / "hosts.ini").write_text(inventory)
    return str(tmp_path / "play.yml"), str(tmp_path / "hosts.ini")


def queues(tmp_path: Path, playbook: str = PLAYBOOK) -> dict[tuple[str, str], str | None]:
    the_plan = plan(*write(tmp_path, playbook))
    return {(jp.name, h): queue_for(the_plan, jp, h) for jp in the_plan.jobs for h in jp.hosts}


def test_the_jobs_queue_wins_over_the_inventorys(tmp_path: Path) -> None:
    found = queues(tmp_path)
    assert {found[("routed", host)] for host in ("web1", "web2", "db1")} == {"gpu.large-1"}


def test_runner_queue_comes_from_the_host_then_its_group_else_none(tmp_path: Path) -> None:
    found = queues(tmp_path)
    assert found[("by-inventory", "web1")] == "web-host"
    assert found[("by-inventory", "web2")] == "web-group"
    assert found[("by-inventory", "db1")] is None
    assert found[("on-controller", "localhost")] is None


def test_runner_queue_is_not_warned_about(tmp_path: Path) -> None:
    the_plan = plan(*write(tmp_path, PLAYBOOK))
    assert not [w for w in the_plan.warnings if "runner_queue" in w]


@pytest.mark.parametrize("name", ["has space", "", "x" * 101, "a/b", "{{ q }}"])
def test_a_bad_queue_name_in_the_playbook_is_refused_at_its_line(tmp_path: Path, name: str) -> None:
    playbook = PLAYBOOK.replace("queue: gpu.large-1", f"queue: {name!r}")
    with pytest.raises(PlaybookError) as caught:
        plan(*write(tmp_path, playbook))
    assert (caught.value.line, caught.value.path) == (6, "jobs[0].queue")


@pytest.mark.parametrize("name", ["has;semicolon", "x" * 101, "a/b"])
def test_a_bad_runner_queue_in_the_inventory_is_refused_at_its_line(
    tmp_path: Path, name: str
) -> None:
    inventory = INVENTORY.replace("runner_queue=web-group", f"runner_queue={name}")
    with pytest.raises(InventoryError) as caught:
        plan(*write(tmp_path, PLAYBOOK, inventory))
    assert caught.value.line == 8
    assert "runner_queue" in caught.value.message


def test_runner_validate_names_the_file_line_and_key_of_a_bad_queue(tmp_path: Path) -> None:
    playbook, _ = write(tmp_path, PLAYBOOK.replace("gpu.large-1", "'gpu large'"))
    proc = run_runner("validate", playbook, cwd=tmp_path)
    assert proc.returncode == 4, proc.output
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"{playbook}:6:"), lines[0]
    assert "jobs[0].queue" in lines[0] and "gpu large" in lines[0]
    assert "Traceback" not in proc.output
