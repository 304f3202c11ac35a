"""The order steps run in through blocks (`BlockFlow`), given which steps fail: the rules
Ansible's block/rescue/always follow, on playbooks loaded as a user writes them."""

from __future__ import annotations

from pathlib import Path

from runner.execution.blocks import BlockFlow
from runner.planning.planner import JobPlan
from runner.planning.playbook import load_playbook


def _ran(tmp_path: Path, steps: str, failing: set[str]) -> tuple[list[str], dict[str, int], bool]:
    """(the steps run, by their command; the counts; whether the child failed) when the
    steps whose command is in `failing` fail."""
    head = "jobs:\n  - name: j\n    targets: all\n    steps:\n"
    path = tmp_path / "play.yml"
    path.write_text(head + steps)
    job = load_playbook(path).jobs[0]
    counts = {"failed": 0}
    flow = BlockFlow(JobPlan(job, ("h",), job.steps), counts)
    ran = []
    for step in flow:
        ran.append(step.args)
        if step.args in failing:
            counts["failed"] += 1
            flow.fail(step.args)
    return ran, counts, flow.failure is not None


NESTED = """\
      - block:
          - run: a
          - block:
              - run: b
              - run: c
            always:
              - run: d
          - run: e
        rescue:
          - run: f
          - run: g
        always:
          - run: h
      - run: i
"""


def test_without_a_failure_rescue_is_skipped(tmp_path: Path) -> None:
    assert _ran(tmp_path, NESTED, set()) == (
        ["a", "b", "c", "d", "e", "h", "i"],
        {"failed": 0},
        False,
    )


def test_an_inner_failure_runs_the_inner_always_then_the_outer_rescue(tmp_path: Path) -> None:
    ran, counts, failed = _ran(tmp_path, NESTED, {"b"})
    assert ran == ["a", "b", "d", "f", "g", "h", "i"]
    assert counts == {"failed": 0, "rescued": 1} and not failed


def test_a_failure_in_rescue_skips_the_rest_but_always(tmp_path: Path) -> None:
    ran, counts, failed = _ran(tmp_path, NESTED, {"e", "f"})
    assert ran == ["a", "b", "c", "d", "e", "f", "h"]
    assert counts == {"failed": 1, "rescued": 1} and failed


def test_a_failure_in_always_fails_the_child(tmp_path: Path) -> None:
    ran, _, failed = _ran(tmp_path, NESTED, {"h"})
    assert ran == ["a", "b", "c", "d", "e", "h"] and failed


def test_steps_without_blocks_stop_at_the_first_failure(tmp_path: Path) -> None:
    steps = "      - run: a\n      - run: b\n      - run: c\n"
    assert _ran(tmp_path, steps, {"b"}) == (["a", "b"], {"failed": 1}, True)
