"""What the job store hands out: jobs, step results and output records, as values.

A parent job's state, start and end come from its children (`build_record`), with
PowerShell's rules, so no reader ever sees a parent that disagrees with them.
"""

from __future__ import annotations

import fnmatch
import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from runner.jobs.processes import Owner
from runner.jobs.states import TERMINAL, JobState, derive_parent_state
from runner.planning.model import PS_JOB_TYPE_NAMES


@dataclass(frozen=True)
class JobRecord:
    """A job as stored; for a parent, `state`, `started`, `ended` come from its children."""

    id: int
    parent_id: int | None
    name: str
    type: str
    state: JobState
    reason: str | None
    location: str
    command: str
    detach: bool
    results_to: str
    results_path: str | None
    playbook: str | None
    owner_pid: int | None
    owner_start: int | None
    stop_requested: bool
    created: float
    started: float | None
    ended: float | None
    remote_dir: str | None
    remote_pgid: int | None
    local_pid: int | None
    spec: dict[str, Any] | None  # how to reach the host again: {"connection": ..., "steps": ...}
    has_more_data: bool
    child_ids: tuple[int, ...]
    owner_machine: str | None = None
    owner_pidns: int | None = None
    local_start: int | None = None
    task_id: str | None = None  # the Celery task a child on a worker was last sent as

    @property
    def owner(self) -> Owner:
        """The process that answers for this job, as `runner.jobs.processes.judge` takes it."""
        return Owner(self.owner_machine, self.owner_pidns, self.owner_pid, self.owner_start)

    @property
    def ps_type_name(self) -> str:
        """The PowerShell type name `job list` shows: RemoteJob, BackgroundJob, ThreadJob."""
        return PS_JOB_TYPE_NAMES[self.type]


@dataclass(frozen=True)
class StepRecord:
    """The result of one step on one child job (one host)."""

    child_id: int
    index: int
    name: str
    rc: int | None
    status: str
    started: float | None
    ended: float | None
    error: str | None


@dataclass(frozen=True)
class OutputRecord:
    """One chunk of output; `id` is its place in the global production order."""

    id: int
    job_id: int
    host: str
    step: int | None
    stream: str
    data: str
    time: float


def build_record(row: sqlite3.Row, children: list[sqlite3.Row]) -> JobRecord:
    """A `JobRecord` from a job row (with its `more` flag) and its children's rows.

    HasMoreData is PowerShell's: true while the job can still produce output (it is not
    finished, Disconnected included) or output not received yet exists.
    """
    state, started, ended = JobState(row["state"]), row["started"], row["ended"]
    more = bool(row["more"])
    if children:
        state = derive_parent_state(child["state"] for child in children)
        starts = [c["started"] for c in children if c["started"] is not None]
        started = min(starts) if starts else None
        ends = [c["ended"] for c in children if c["ended"] is not None]
        ended = max(ends) if ends and state in TERMINAL else None
        more = any(child["more"] for child in children)
    more = more or state not in TERMINAL
    return JobRecord(
        id=row["id"], parent_id=row["parent_id"], name=row["name"], type=row["type"],
        state=state, reason=row["reason"], location=row["location"], command=row["command"],
        detach=bool(row["detach"]), results_to=row["results_to"],
        results_path=row["results_path"], playbook=row["playbook"],
        owner_pid=row["owner_pid"], owner_start=row["owner_start"],
        stop_requested=bool(row["stop_requested"]), created=row["created"],
        started=started, ended=ended, remote_dir=row["remote_dir"],
        remote_pgid=row["remote_pgid"], local_pid=row["local_pid"],
        spec=None if row["spec"] is None else json.loads(row["spec"]),
        has_more_data=more, child_ids=tuple(child["id"] for child in children),
        owner_machine=row["owner_machine"], owner_pidns=row["owner_pidns"],
        local_start=row["local_start"], task_id=row["task_id"],
    )  # fmt: skip


def wildcard_match(text: str, pattern: str) -> bool:
    """PowerShell's -Name / -Command matching: wildcards (``*``, ``?``, ``[...]``), any case."""
    return fnmatch.fnmatchcase(text.lower(), pattern.lower())


@dataclass(frozen=True)
class JobFilter:
    """The Get-Job filters of `list_jobs`; None means "any"."""

    state: JobState | str | None
    name: str | None
    has_more_data: bool | None
    before: float | None
    after: float | None
    command: str | None = None

    def matches(self, record: JobRecord) -> bool:
        """Whether the record passes every filter given."""
        if self.state is not None and record.state != JobState(self.state):
            return False
        if self.name is not None and not wildcard_match(record.name, self.name):
            return False
        if self.command is not None and not wildcard_match(record.command, self.command):
            return False
        if self.has_more_data is not None and record.has_more_data != self.has_more_data:
            return False
        if self.before is not None and (record.ended is None or record.ended >= self.before):
            return False
        return self.after is None or (record.ended is not None and record.ended > self.after)


def with_child_state(records: list[JobRecord], state: JobState) -> list[JobRecord]:
    """Get-Job's -ChildJobState: the parents with a child in `state`, and those children
    (not their siblings)."""
    chosen = {r.parent_id for r in records if r.parent_id is not None and r.state == state}
    return [r for r in records if r.id in chosen or (r.parent_id in chosen and r.state == state)]


def newest_ended(records: list[JobRecord], count: int) -> list[JobRecord]:
    """Get-Job's -Newest: the `count` records that ended last (unfinished ones rank
    below them), kept in their order."""
    ranked = sorted(records, key=lambda r: (r.ended is not None, r.ended or 0.0, r.id))
    keep = {r.id for r in ranked[-count:]}
    return [r for r in records if r.id in keep]


def epoch(moment: datetime | float | None) -> float | None:
    """A datetime or epoch seconds as epoch seconds."""
    return moment.timestamp() if isinstance(moment, datetime) else moment
