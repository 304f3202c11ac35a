"""The executor in-process, over the local connection: a Plan in, jobs in a real store.

No subprocess stands between the test and the code: `runner.api.plans.run` plans the
playbook, runs it with an events recorder, and the store it wrote is read back.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from runner.api.jobs import open_store
from runner.api.plans import run

ROOT = Path(__file__).resolve().parents[3]
LOCAL = str(ROOT / "inventory" / "local.ini")


class Recorder:
    """Every event the run sends, as (name, host or job) tuples, in order."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        def record(*args: Any) -> None:
            with self._lock:
                self.seen.append((name, args))

        return record

    def names(self, event: str) -> list[tuple[Any, ...]]:
        return [args for name, args in self.seen if name == event]


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RUNNER_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def playbook(tmp_path: Path, text: str) -> str:
    path = tmp_path / "play.yml"
    path.write_text(text)
    return str(path)


def test_a_run_leaves_completed_jobs_with_their_output(tmp_path: Path) -> None:
    events = Recorder()
    the_plan, report = run(str(ROOT / "playbooks" / "hello.yml"), LOCAL, events=events)
    assert not report.any_failed and not report.interrupted
    store = open_store()
    [job] = store.list_jobs()
    assert (job.name, job.state) == ("hello", "Completed")
    children = store.children(job.id)
    assert sorted(c.location for c in children) == ["db1", "localhost", "web1", "web2"]
    text = "".join(r.data for r in store.iter_receive(job.id, keep=True))
    assert "hello from web2 (Linux)" in text
    assert sorted(args[1] for args in events.names("host_done")) == sorted(the_plan.jobs[0].hosts)
    assert len(events.names("step_done")) == 4


def test_a_registered_value_reaches_the_next_job_and_when_skips(tmp_path: Path) -> None:
    path = playbook(
        tmp_path,
        """
name: p
jobs:
  - name: first
    targets: web1
    steps:
      - run: echo 42
        register: answer
  - name: second
    type: thread
    needs: [first]
    targets: web1
    steps:
      - run: echo "got {{ answer.stdout }}"
      - run: echo never
        when: answer.stdout == "41"
""",
    )
    _, report = run(path, LOCAL, events=Recorder())
    assert not report.any_failed
    store = open_store()
    second = next(j for j in store.list_jobs() if j.name == "second")
    [child] = store.children(second.id)
    assert [s.status for s in store.steps(child.id)] == ["changed", "skipped"]
    text = "".join(r.data for r in store.iter_receive(second.id, keep=True))
    assert "got 42" in text


def test_a_failing_step_fails_its_host_and_stops_its_steps(tmp_path: Path) -> None:
    path = playbook(
        tmp_path,
        """
name: p
jobs:
  - name: j
    targets: webservers
    steps:
      - run: "[ {{ inventory_hostname }} != web2 ]"
      - run: echo after
""",
    )
    _, report = run(path, LOCAL, events=Recorder())
    assert report.any_failed
    store = open_store()
    [job] = store.list_jobs()
    assert job.state == "Failed"
    by_host = {c.location: c for c in store.children(job.id)}
    assert by_host["web1"].state == "Completed" and by_host["web2"].state == "Failed"
    assert [s.status for s in store.steps(by_host["web2"].id)] == ["failed"]
