"""The one step renderer (`runner.planning.render`), in-process: loops, `when`, env and cwd with
the loop's item, no_log, and an undefined variable failing the same way in `plan` and in
a run (attached, and kept on its target)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from runner.connections.local import LocalConnection
from runner.errors import TemplateError
from runner.execution.executor import Executor, RunOptions
from runner.execution.kept import script_steps
from runner.execution.steps import Control, StepRunner
from runner.jobs.store import JobStore
from runner.planning.inventory import load_inventory
from runner.planning.planner import Plan, build_plan, render_plan
from runner.planning.playbook import load_playbook
from runner.planning.render import NO_LOG_TEXT, HostScope, RenderedStep, render_step


def _plan(tmp_path: Path, steps: str, job: str = "", extra: dict | None = None) -> Plan:
    """A plan of one job `build` on host web1 (local), its steps as written."""
    (tmp_path / "hosts.ini").write_text("web1 ansible_connection=local colour=blue\n")
    body = textwrap.indent(textwrap.dedent(steps).strip("\n"), " " * 6)
    (tmp_path / "play.yml").write_text(
        f"jobs:\n  - name: build\n    targets: web1\n{job}    steps:\n{body}\n"
    )
    playbook = load_playbook(tmp_path / "play.yml")
    return build_plan(playbook, load_inventory(tmp_path / "hosts.ini"), extra)


def _render(plan: Plan, index: int = 0, registered: dict | None = None) -> RenderedStep:
    jp = plan.jobs[0]
    return render_step(HostScope(plan, jp.job, "web1", registered), jp.steps[index])


def test_a_loop_renders_its_args_env_and_cwd_per_item(tmp_path):
    plan = _plan(
        tmp_path,
        """
        - run: echo {{ item }} {{ colour }}
          loop: [a, b]
          env: {G: "{{ item }}", C: "{{ colour }}"}
          cwd: /tmp/{{ item }}
    """,
    )
    rendered = _render(plan)
    assert [(i.item, i.when, i.args, i.env, i.cwd) for i in rendered.items] == [
        ("a", True, "echo a blue", {"G": "a", "C": "blue"}, "/tmp/a"),
        ("b", True, "echo b blue", {"G": "b", "C": "blue"}, "/tmp/b"),
    ]
    assert [i.label for i in rendered.items] == ["run: echo a blue", "run: echo b blue"]
    assert rendered.label == "run: echo {{ item }} blue"  # the loop's own name


def test_when_is_read_per_item_and_a_false_one_renders_nothing_else(tmp_path):
    plan = _plan(
        tmp_path,
        """
        - run: echo {{ item }} {{ missing }}
          loop: [a, b]
          when: item == 'zzz'
        - run: echo {{ item }}
          loop: [a, b]
          when: item == 'b'
    """,
    )
    skipped = _render(plan, 0)
    assert [(i.when, i.args) for i in skipped.items] == [(False, None), (False, None)]
    assert [(i.item, i.when, i.args) for i in _render(plan, 1).items] == [
        ("a", False, None),
        ("b", True, "echo b"),
    ]
    rows = render_plan(plan)  # plan accepts what a run would skip
    assert [(r.item, r.skipped, r.command) for r in rows[2:]] == [
        ("a", True, "echo {{ item }}"),
        ("b", False, "echo b"),
    ]


def test_no_log_hides_the_command_behind_one_text(tmp_path):
    plan = _plan(
        tmp_path,
        """
        - run: echo {{ colour }}
          no_log: true
    """,
    )
    (item,) = _render(plan).items
    assert item.args == "echo blue"  # what runs
    assert item.command == NO_LOG_TEXT  # what is shown
    assert item.label == f"run: {NO_LOG_TEXT}"
    assert [r.command for r in render_plan(plan)] == [NO_LOG_TEXT]


def test_a_registered_value_is_deferred_at_plan_time_and_rendered_at_run_time(tmp_path):
    plan = _plan(
        tmp_path,
        """
        - run: hostname
          register: out
        - run: echo {{ out.stdout }}
          env: {O: "{{ out.rc }}"}
    """,
    )
    assert _render(plan, 1).deferred
    assert render_plan(plan)[1].deferred
    (item,) = _render(plan, 1, {"out": {"stdout": "web1", "rc": 0}}).items
    assert (item.args, item.env) == ("echo web1", {"O": "0"})


def test_a_loop_that_is_not_a_list_is_refused_at_the_step(tmp_path):
    plan = _plan(
        tmp_path,
        """
        - run: echo {{ item }}
          loop: "{{ colour }}"
    """,
    )
    with pytest.raises(TemplateError, match="loop must be a list, got str"):
        _render(plan)


UNDEFINED = """
    - run: echo "$G"
      loop: [a, b]
      env: {G: "{{ item }} {{ nowhere }}"}
"""


def _plan_error(plan: Plan) -> str:
    with pytest.raises(TemplateError) as caught:
        render_plan(plan)
    return str(caught.value)


def test_an_undefined_variable_fails_an_attached_run_as_it_fails_plan(tmp_path):
    plan = _plan(tmp_path, UNDEFINED)
    error = _plan_error(plan)
    assert "play.yml:5:9: jobs[0].steps[0]" in error and "nowhere" in error
    store = JobStore(tmp_path / "jobs.db")
    (child,) = store.create_children(None, "build", "remote", "echo", [("web1", None, None)])
    conn = LocalConnection("web1")
    runner = StepRunner(
        plan, plan.jobs[0], "web1", child, conn, conn, lambda *a: None, store, Control(), {}
    )
    assert runner.run_all().state == "Failed"
    (step,) = store.steps(child)
    assert step.error == error


def test_an_undefined_variable_fails_a_detached_start_as_it_fails_plan(tmp_path):
    plan = _plan(tmp_path, UNDEFINED, job="    detach: true\n")
    error = _plan_error(plan)
    executor = Executor(plan, JobStore(tmp_path / "jobs.db"), RunOptions(), events=None)
    with pytest.raises(TemplateError) as caught:
        script_steps(executor, plan.jobs[0], "web1", 1)
    assert str(caught.value) == error


def test_a_detached_loop_renders_env_with_each_item_as_plan_does(tmp_path):
    plan = _plan(
        tmp_path,
        """
        - run: echo "$G"
          loop: [a, b]
          env: {G: "{{ item }}"}
          cwd: /tmp/{{ item }}
    """,
        job="    detach: true\n",
    )
    executor = Executor(plan, JobStore(tmp_path / "jobs.db"), RunOptions(), events=None)
    (step,) = script_steps(executor, plan.jobs[0], "web1", 1)
    assert [(c.text, c.env, c.cwd) for c in step.commands] == [
        ('echo "$G"', {"G": "a"}, "/tmp/a"),
        ('echo "$G"', {"G": "b"}, "/tmp/b"),
    ]
