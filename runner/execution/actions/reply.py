"""A converge script's reply, and the outcomes the converging actions read from it.

A converge script says what it found and did on lines starting with `MARK`; everything
else it prints is the manager's own output, shown as the step's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runner.jobs.states import StepStatus

MARK = "@@runner-converge"


@dataclass
class Reply:
    """A converge script's exit status, its MARK lines split into words, its other output."""

    rc: int | None
    marks: list[list[str]] = field(default_factory=list)
    stdout: str = ""
    stderr: str = ""

    @classmethod
    def read(cls, rc: int | None, stdout: str, stderr: str) -> Reply:
        """Split the script's stdout into MARK lines and the rest."""
        marks: list[list[str]] = []
        rest: list[str] = []
        for line in stdout.splitlines(keepends=True):
            if line.startswith(MARK + " "):
                marks.append(line.split()[1:])
            else:
                rest.append(line)
        return cls(rc, marks, "".join(rest), stderr)

    def words(self, kind: str) -> list[list[str]]:
        """The words after `kind` on each MARK line of that kind."""
        return [mark[1:] for mark in self.marks if mark and mark[0] == kind]


@dataclass
class Converged:
    """What a converge step did: its status, and why it failed or what it would change."""

    status: str
    error: str | None = None


def changed(check: bool, what: list[str]) -> Converged:
    """`changed` (naming what would change in --check) when `what` is not empty, else `ok`."""
    if not what:
        return Converged(StepStatus.OK.value)
    if check:
        return Converged(StepStatus.CHANGED.value, f"check mode: would {', '.join(what)}")
    return Converged(StepStatus.CHANGED.value)


def failed(error: str) -> Converged:
    """A converge step that failed, with its one line of reason."""
    return Converged(StepStatus.FAILED.value, error)
