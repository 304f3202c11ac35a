"""The job state machine: the eight job states and the only legal moves between them.

The whole job model (children, output, waiting, owners) is written down in docs/jobs.md.

Every state change of every job goes through `check_transition`, so a finished job can
never come back to life and a bug that tries shows up as a `JobStateError` instead of a
silently wrong `job list`. A parent job has no state of its own once it has children:
`derive_parent_state` computes it from theirs, with PowerShell's rules.

Two moves go beyond PowerShell's table, because a real runner needs them:

- ``NotStarted -> Stopping``: a stop can be requested for a child that its runner has
  not started yet. Moving it straight to ``Stopped`` would race with the runner starting
  it; through ``Stopping`` the runner sees the request and ends it as ``Stopped`` itself.
- ``Disconnected -> Stopped`` is *not* added: stopping a detached job whose target is
  gone goes ``Disconnected -> Stopping -> Stopped`` like any other stop, and the reason
  on the job says the remote process could not be reached.

A child run again as its job's `retries:` allows stays Running, or goes back to
NotStarted to be sent to a worker again: not a move of this table, but the store's one
explicit `begin_retry`, which never touches a finished or stopping job.

`transition_path` finds the legal chain of moves between two states, for the one
caller that must jump (reconciling the jobs of a runner that died: ``Running`` ->
``Stopping`` -> ``Stopped``), so that even that jump never skips the table.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from enum import StrEnum

from runner.errors import JobStateError


class JobState(StrEnum):
    """A job's state, spelled as PowerShell's `JobState` enum spells it."""

    NotStarted = "NotStarted"
    Running = "Running"
    Completed = "Completed"
    Failed = "Failed"
    Stopping = "Stopping"
    Stopped = "Stopped"
    Blocked = "Blocked"
    Disconnected = "Disconnected"


S = JobState


class StepStatus(StrEnum):
    """How one step ended on one host, as the store records it and every report shows it."""

    OK = "ok"
    CHANGED = "changed"
    FAILED = "failed"
    SKIPPED = "skipped"
    UNREACHABLE = "unreachable"
    STOPPED = "stopped"
    TIMEDOUT = "timedout"
    RUNNING = "running"  # only while a step kept on its target runs


# Statuses a step ended with that fail its host (unless the step ignores errors).
FAILING_STEPS: frozenset[StepStatus] = frozenset(
    {StepStatus.FAILED, StepStatus.TIMEDOUT, StepStatus.UNREACHABLE}
)

# Finished states: a job in one of these never changes state again.
TERMINAL: frozenset[JobState] = frozenset({S.Completed, S.Failed, S.Stopped})

# States in which a job may still have a process somewhere that someone must own.
ACTIVE: frozenset[JobState] = frozenset({S.NotStarted, S.Running, S.Stopping, S.Blocked})

ALLOWED: dict[JobState, frozenset[JobState]] = {
    S.NotStarted: frozenset({S.Running, S.Stopped, S.Failed, S.Stopping}),
    S.Running: frozenset({S.Completed, S.Failed, S.Stopping, S.Blocked, S.Disconnected}),
    S.Blocked: frozenset({S.Running, S.Stopping, S.Failed}),
    S.Disconnected: frozenset({S.Running, S.Completed, S.Failed, S.Stopping}),
    S.Stopping: frozenset({S.Stopped}),
    S.Completed: frozenset(),
    S.Failed: frozenset(),
    S.Stopped: frozenset(),
}


def is_terminal(state: JobState | str) -> bool:
    """True for Completed, Failed and Stopped: the job is finished for good."""
    return JobState(state) in TERMINAL


def check_transition(old: JobState | str, new: JobState | str) -> None:
    """Refuse, with `JobStateError`, any move the state table does not allow.

    Staying in the same state is not a move and is refused too: a caller that sets the
    state a job already has is working from a stale view of it.
    """
    old, new = JobState(old), JobState(new)
    if new in ALLOWED[old]:
        return
    if old in TERMINAL:
        raise JobStateError(f"job is {old}: a finished job never changes state (not to {new})")
    allowed = ", ".join(sorted(ALLOWED[old])) or "nothing"
    raise JobStateError(f"illegal job state change {old} -> {new} (from {old}: {allowed})")


def transition_path(old: JobState | str, new: JobState | str) -> list[JobState]:
    """The shortest chain of legal moves from `old` to `new`, `old` excluded.

    Raises `JobStateError` when `new` cannot be reached from `old`.
    """
    old, new = JobState(old), JobState(new)
    came_from: dict[JobState, JobState] = {}
    queue = deque([old])
    while queue:
        state = queue.popleft()
        if state == new and state != old:
            return _unwind(came_from, old, new)
        for nxt in sorted(ALLOWED[state]):
            if nxt not in came_from:
                came_from[nxt] = state
                queue.append(nxt)
    check_transition(old, new)  # raises with the usual message
    raise AssertionError("unreachable")  # pragma: no cover


def _unwind(came_from: dict[JobState, JobState], old: JobState, new: JobState) -> list[JobState]:
    """Follow `came_from` back from `new` to `old` and return the forward path."""
    path = [new]
    while came_from[path[-1]] != old:
        path.append(came_from[path[-1]])
    return path[::-1]


def derive_parent_state(child_states: Iterable[JobState | str]) -> JobState:
    """A parent job's state, computed from its children's as PowerShell does.

    - any child NotStarted, Running or Stopping: the parent is Running, or Stopping
      while any child is stopping (a stop is in progress); if every child is still
      NotStarted, nothing has run yet and the parent is NotStarted;
    - else any child Disconnected: Disconnected; else any child Blocked: Blocked;
    - all children finished: Failed if any failed, else Stopped if any was stopped,
      else Completed.

    A parent with no children yet is NotStarted (the store uses the parent's own stored
    state in that case instead).
    """
    states = {JobState(s) for s in child_states}
    if not states or states == {S.NotStarted}:
        return S.NotStarted
    if S.Stopping in states:
        return S.Stopping
    if states & {S.Running, S.NotStarted}:
        return S.Running
    for state in (S.Disconnected, S.Blocked, S.Failed, S.Stopped):
        if state in states:
            return state
    return S.Completed
