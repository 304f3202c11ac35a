"""The child-job seam: execution code never reaches back into the library layer, and a
background child's task survives the trip to its worker as JSON."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

from runner.children import BackgroundTask, PlanRequest

RUNNER = Path(__file__).resolve().parents[2] / "runner"
EXECUTION = ("executor", "children", "background", "kept", "remote", "reconnect", "steps",
             "sessions", "output")


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (lazy imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_execution_modules_never_import_the_api() -> None:
    for name in EXECUTION:
        assert "runner.api" not in _imports(RUNNER / f"{name}.py"), name


def test_a_background_task_is_the_same_after_json() -> None:
    task = BackgroundTask(
        request=PlanRequest("play.yml", "hosts.ini", {"n": 3, "l": [1, "a"]}, "web*",
                            ("deploy",), ("slow",), "second", "ab" * 32),
        job="bg", host="web1", child=7, store="/tmp/jobs.db",
        registered={"out": {"rc": 0, "stdout": "hi", "stdout_lines": ["hi"]}},
        check=True, diff=True, detach=False, runner=4242,
    )
    sent = json.dumps(dataclasses.asdict(task))
    assert BackgroundTask.from_json(json.loads(sent)) == task
