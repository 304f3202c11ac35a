"""The planner in-process: playbook and inventory files in, a Plan out, nothing run."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.api.plans import plan
from runner.errors import TemplateError
from runner.planning.planner import render_plan

ROOT = Path(__file__).resolve().parents[3]
LOCAL = str(ROOT / "inventory" / "local.ini")


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "play.yml"
    path.write_text(text)
    return str(path)


def test_hello_is_planned_for_every_host_in_inventory_order() -> None:
    the_plan = plan(str(ROOT / "playbooks" / "hello.yml"), LOCAL)
    assert [jp.name for jp in the_plan.jobs] == ["hello"]
    assert the_plan.jobs[0].hosts == ("localhost", "web1", "web2", "db1")
    rows = render_plan(the_plan)
    assert [row.host for row in rows] == ["localhost", "web1", "web2", "db1"]
    assert rows[1].command == 'echo "hello from web1 ($(uname -s))"'


def test_extra_vars_win_over_inventory_vars_and_limit_narrows(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
name: p
jobs:
  - name: show
    targets: webservers
    steps:
      - run: echo {{ http_port }} {{ env }}
""",
    )
    rows = render_plan(plan(path, LOCAL, extra_vars=["env=staging"], limit="web2"))
    assert [(row.host, row.command) for row in rows] == [("web2", "echo 8081 staging")]


def test_tags_keep_only_the_tagged_steps(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
name: p
jobs:
  - name: j
    targets: localhost
    steps:
      - {name: a, run: echo a, tags: [x]}
      - {name: b, run: echo b}
""",
    )
    rows = render_plan(plan(path, LOCAL, tags=["x"]))
    assert [row.step for row in rows] == ["a"]


def test_a_loop_is_planned_per_item(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
name: p
jobs:
  - name: j
    targets: localhost
    steps:
      - run: echo {{ item }}
        loop: [one, two]
""",
    )
    rows = render_plan(plan(path, LOCAL))
    assert [row.command for row in rows] == ["echo one", "echo two"]


def test_an_undefined_variable_is_a_plan_error_naming_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
name: p
jobs:
  - name: j
    targets: localhost
    steps:
      - run: echo {{ nowhere }}
""",
    )
    with pytest.raises(TemplateError) as caught:
        render_plan(plan(path, LOCAL))
    assert "nowhere" in str(caught.value) and caught.value.file == path
    assert caught.value.line == 7 and caught.value.exit_code == 4


def test_a_pattern_selecting_no_host_plans_no_rows(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
name: p
jobs:
  - name: j
    targets: "webservers:&dbservers"
    steps:
      - run: echo never
""",
    )
    the_plan = plan(path, LOCAL)
    assert the_plan.jobs[0].hosts == ()
    assert render_plan(the_plan) == []
