"""What a run tells whoever watches it: the events the executor and step runners send.

The command line's console implements `RunEvents` to print step lines and the recap; a
library caller that wants nothing printed gets `NullEvents`. Execution never imports the
command line: it only calls these methods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from runner.execution.executor import ChildResult
    from runner.execution.steps import StepOutcome
    from runner.planning.model import Step
    from runner.planning.planner import JobPlan


class StepEvents(Protocol):
    """What one child's steps tell as they run: all a background worker relays."""

    def command(self, jp: JobPlan, host: str, step: Step, rendered: str) -> None: ...
    def diff(self, jp: JobPlan, host: str, step: Step, text: str) -> None: ...
    def step_done(
        self, jp: JobPlan, host: str, step: Step, outcome: StepOutcome, seconds: float
    ) -> None: ...
    def output(self, jp: JobPlan, host: str, stream: str, text: str) -> None: ...


class RunEvents(StepEvents, Protocol):
    """The events of one run, in the order they happen for each job and host."""

    def job_started(self, job_id: int, jp: JobPlan) -> None: ...
    def host_started(self, jp: JobPlan, host: str) -> None: ...
    def host_done(self, jp: JobPlan, host: str, result: ChildResult) -> None: ...
    def job_done(self, job_id: int, jp: JobPlan, state: str) -> None: ...
    def error(self, message: str) -> None: ...
    def warning(self, message: str) -> None: ...
    def note(self, message: str) -> None: ...


class NullEvents:
    """Events nobody watches: every one is dropped."""

    def job_started(self, job_id: int, jp: JobPlan) -> None:
        pass

    def host_started(self, jp: JobPlan, host: str) -> None:
        pass

    def command(self, jp: JobPlan, host: str, step: Step, rendered: str) -> None:
        pass

    def diff(self, jp: JobPlan, host: str, step: Step, text: str) -> None:
        pass

    def step_done(
        self, jp: JobPlan, host: str, step: Step, outcome: StepOutcome, seconds: float
    ) -> None:
        pass

    def output(self, jp: JobPlan, host: str, stream: str, text: str) -> None:
        pass

    def host_done(self, jp: JobPlan, host: str, result: ChildResult) -> None:
        pass

    def job_done(self, job_id: int, jp: JobPlan, state: str) -> None:
        pass

    def error(self, message: str) -> None:
        pass

    def warning(self, message: str) -> None:
        pass

    def note(self, message: str) -> None:
        pass
