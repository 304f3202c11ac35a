"""The child-job seam: a background child's task survives the trip to its worker as JSON.
(That execution never imports the API is checked with every other layer rule in
tests/test_import_rules.py.)"""

from __future__ import annotations

import dataclasses
import json

from runner.execution.context import BackgroundTask
from runner.planning.request import PlanRequest


def test_a_background_task_is_the_same_after_json() -> None:
    task = BackgroundTask(
        request=PlanRequest(
            "play.yml",
            "hosts.ini",
            {"n": 3, "l": [1, "a"]},
            "web*",
            ("deploy",),
            ("slow",),
            "second",
            "ab" * 32,
        ),
        job="bg",
        host="web1",
        child=7,
        store="/tmp/jobs.db",
        registered={"out": {"rc": 0, "stdout": "hi", "stdout_lines": ["hi"]}},
        check=True,
        diff=True,
        detach=False,
        runner=4242,
    )
    sent = json.dumps(dataclasses.asdict(task))
    assert BackgroundTask.from_json(json.loads(sent)) == task
