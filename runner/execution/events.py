"""What a run tells whoever watches it: the events the executor and step runners send.

The command line's console implements `RunEvents` to print step lines and the recap; a
library caller that wants nothing printed gets `NullEvents`. Execution never imports the
command line: it only calls these methods.
"""

from __future__ import annotations

from typing import Any, Protocol


class RunEvents(Protocol):
    """The events of one run, in the order they happen for each job and host."""

    def job_started(self, job_id: int, jp: Any) -> None: ...
    def host_started(self, jp: Any, host: str) -> None: ...
    def command(self, jp: Any, host: str, step: Any, rendered: str) -> None: ...
    def diff(self, jp: Any, host: str, step: Any, text: str) -> None: ...
    def step_done(self, jp: Any, host: str, step: Any, outcome: Any, seconds: float) -> None: ...
    def output(self, jp: Any, host: str, stream: str, text: str) -> None: ...
    def host_done(self, jp: Any, host: str, result: Any) -> None: ...
    def job_done(self, job_id: int, jp: Any, state: str) -> None: ...
    def error(self, message: str) -> None: ...
    def warning(self, message: str) -> None: ...
    def note(self, message: str) -> None: ...


class NullEvents:
    """Events nobody watches: every one is dropped."""

    def job_started(self, job_id: int, jp: Any) -> None:
        pass

    def host_started(self, jp: Any, host: str) -> None:
        pass

    def command(self, jp: Any, host: str, step: Any, rendered: str) -> None:
        pass

    def diff(self, jp: Any, host: str, step: Any, text: str) -> None:
        pass

    def step_done(self, jp: Any, host: str, step: Any, outcome: Any, seconds: float) -> None:
        pass

    def output(self, jp: Any, host: str, stream: str, text: str) -> None:
        pass

    def host_done(self, jp: Any, host: str, result: Any) -> None:
        pass

    def job_done(self, job_id: int, jp: Any, state: str) -> None:
        pass

    def error(self, message: str) -> None:
        pass

    def warning(self, message: str) -> None:
        pass

    def note(self, message: str) -> None:
        pass
