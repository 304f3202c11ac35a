"""A child's step events as JSON, for a child that runs in another process: a background
child's worker on this machine (one line each on its stdout) or a child on a worker
machine (one row each in the job store's `events`). `JsonEvents` is the worker's side;
`relay` turns one line back into a call on the runner's events, as if the steps ran here.
The last line a worker sends has no "event" key: how the child ended and what it
registered (`ending`).
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from runner.execution.steps import ChildReport, StepOutcome

if TYPE_CHECKING:
    from runner.execution.events import StepEvents
    from runner.planning.model import Step
    from runner.planning.planner import JobPlan


class JsonEvents:
    """The worker's side: each event a StepRunner sends, as one JSON text to `emit`."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self._emit = emit
        self._lock = threading.Lock()

    def send(self, line: dict[str, Any]) -> None:
        text = json.dumps(line, default=str)
        with self._lock:
            self._emit(text)

    def command(self, jp: JobPlan, host: str, step: Step, text: str) -> None:
        self.send({"event": "command", "step": step.index, "text": text})

    def diff(self, jp: JobPlan, host: str, step: Step, text: str) -> None:
        self.send({"event": "diff", "step": step.index, "text": text})

    def output(self, jp: JobPlan, host: str, stream: str, text: str) -> None:
        self.send({"event": "output", "stream": stream, "text": text})

    def step_done(
        self, jp: JobPlan, host: str, step: Step, outcome: StepOutcome, seconds: float
    ) -> None:
        shown = {
            "status": outcome.status,
            "rc": outcome.rc,
            "error": outcome.error,
            "stderr_tail": outcome.stderr_tail,
            "message": outcome.message,
        }
        self.send(
            {
                "event": "step_done",
                "step": step.index,
                "name": step.name,
                "outcome": shown,
                "seconds": seconds,
            }
        )

    def ending(self, report: ChildReport, registered: dict[str, Any]) -> None:
        """The last line: how the child ended, and what its steps registered."""
        self.send(
            {
                "state": report.state,
                "reason": report.reason,
                "unreachable": report.unreachable,
                "counts": report.counts,
                "registered": registered,
            }
        )


def relay(events: StepEvents, jp: JobPlan, host: str, line: dict[str, Any]) -> None:
    """One event line from a worker, told to the runner's `events`."""
    kind = line["event"]
    step = next((s for s in jp.steps + jp.handlers if s.index == line.get("step", -1)), None)
    if kind == "output":
        events.output(jp, host, line["stream"], line["text"])
    elif step is None:
        return
    elif kind == "step_done":
        outcome = StepOutcome(**line["outcome"])
        labelled = dataclasses.replace(step, name=line["name"])
        events.step_done(jp, host, labelled, outcome, line["seconds"])
    elif kind in ("command", "diff"):
        getattr(events, kind)(jp, host, step, line["text"])


def report_of(line: dict[str, Any]) -> ChildReport:
    """The `ChildReport` of a worker's last line (KeyError when it is not one)."""
    return ChildReport(
        line["state"], line.get("reason"), bool(line.get("unreachable")), line.get("counts", {})
    )
