"""The job state machine: PowerShell's state table, and how a parent's state is derived."""

from __future__ import annotations

import itertools

import pytest

from runner.errors import JobStateError
from runner.jobs.states import (
    TERMINAL,
    JobState,
    check_transition,
    derive_parent_state,
    is_terminal,
    transition_path,
)

S = JobState

# The table of powershell-jobs.md, written out again here as the specification.
DOCUMENTED = {
    (S.NotStarted, S.Running), (S.NotStarted, S.Stopped), (S.NotStarted, S.Failed),
    (S.Running, S.Completed), (S.Running, S.Failed), (S.Running, S.Stopping),
    (S.Running, S.Blocked), (S.Running, S.Disconnected),
    (S.Blocked, S.Running), (S.Blocked, S.Stopping), (S.Blocked, S.Failed),
    (S.Disconnected, S.Running), (S.Disconnected, S.Completed), (S.Disconnected, S.Failed),
    (S.Disconnected, S.Stopping),
    (S.Stopping, S.Stopped),
}  # fmt: skip
# The one move a real runner adds: a stop requested before the job started.
ADDED = {(S.NotStarted, S.Stopping)}
ALL_PAIRS = list(itertools.product(JobState, repeat=2))


def test_the_eight_states_are_spelled_as_powershell_spells_them() -> None:
    assert [s.value for s in JobState] == [
        "NotStarted", "Running", "Completed", "Failed",
        "Stopping", "Stopped", "Blocked", "Disconnected",
    ]  # fmt: skip
    assert JobState("Running") is S.Running
    assert str(S.Disconnected) == "Disconnected"


def test_finished_states_are_completed_failed_stopped() -> None:
    assert {S.Completed, S.Failed, S.Stopped} == TERMINAL
    assert [s for s in JobState if is_terminal(s)] == [S.Completed, S.Failed, S.Stopped]


@pytest.mark.parametrize(("old", "new"), sorted(DOCUMENTED | ADDED))
def test_every_move_in_the_table_is_allowed(old: JobState, new: JobState) -> None:
    check_transition(old, new)


@pytest.mark.parametrize(
    ("old", "new"), [pair for pair in ALL_PAIRS if pair not in DOCUMENTED | ADDED]
)
def test_every_move_outside_the_table_is_refused(old: JobState, new: JobState) -> None:
    with pytest.raises(JobStateError):
        check_transition(old, new)


def test_completed_to_running_is_refused_because_a_finished_job_never_changes() -> None:
    with pytest.raises(JobStateError, match="finished job never changes state"):
        check_transition("Completed", "Running")


def test_an_illegal_move_names_both_states_and_what_is_allowed() -> None:
    with pytest.raises(JobStateError) as caught:
        check_transition(S.Stopping, S.Completed)
    assert "Stopping -> Completed" in str(caught.value)
    assert "Stopped" in str(caught.value)


def test_an_unknown_state_name_is_an_error() -> None:
    with pytest.raises(ValueError):
        check_transition("Running", "Suspended")


def test_transition_path_walks_only_legal_moves() -> None:
    assert transition_path(S.Running, S.Stopped) == [S.Stopping, S.Stopped]
    assert transition_path(S.NotStarted, S.Stopped) == [S.Stopped]
    assert transition_path(S.Blocked, S.Disconnected) == [S.Running, S.Disconnected]
    with pytest.raises(JobStateError):
        transition_path(S.Completed, S.Running)
    with pytest.raises(JobStateError):
        transition_path(S.Running, S.Running)


@pytest.mark.parametrize(
    ("children", "parent"),
    [
        ([S.Completed, S.Running, S.Completed], S.Running),
        ([S.Completed, S.NotStarted], S.Running),
        ([S.Failed, S.Running], S.Running),
        ([S.Stopping, S.Running, S.Completed], S.Stopping),
        ([S.Stopping, S.Stopped], S.Stopping),
        ([S.Completed, S.Disconnected, S.Blocked], S.Disconnected),
        ([S.Failed, S.Disconnected], S.Disconnected),
        ([S.Completed, S.Blocked], S.Blocked),
        ([S.Completed, S.Failed, S.Completed], S.Failed),
        ([S.Stopped, S.Failed], S.Failed),
        ([S.Completed, S.Stopped, S.Completed], S.Stopped),
        ([S.Completed, S.Completed, S.Completed], S.Completed),
        ([S.NotStarted, S.NotStarted], S.NotStarted),
        ([], S.NotStarted),
    ],
)
def test_parent_state_is_derived_from_the_children(
    children: list[JobState], parent: JobState
) -> None:
    assert derive_parent_state(children) == parent
    assert derive_parent_state(reversed([c.value for c in children])) == parent
