"""What a child job is run with: the run's shared context, the child's task, and a
background child's task as plain data for its worker process."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runner.execution.flow import OnceBoard
from runner.execution.sinks import FileWriter, StoreWriter
from runner.execution.steps import Control
from runner.planning.guard import secret_values
from runner.planning.planner import JobPlan, Plan
from runner.planning.request import PlanRequest

if TYPE_CHECKING:
    from runner.execution.events import StepEvents
    from runner.execution.sessions import SessionPool
    from runner.jobs.store import JobStore


@dataclass
class RunContext:
    """What every child of a run shares. `registered` maps host -> its registered values.
    `record_groups`: record each step's process group on the child (off in a background
    worker, whose own process is the child's recorded one and holds its steps' groups)."""

    plan: Plan
    store: JobStore
    writer: StoreWriter
    files: FileWriter
    sessions: SessionPool
    registered: dict[str, dict[str, Any]]
    events: StepEvents | None = None  # the run's RunEvents; a worker's relay to it
    check: bool = False
    diff: bool = False
    request: PlanRequest | None = None  # for children planned again in another process
    store_location: str | None = None  # for a worker in another process
    record_groups: bool = True
    # With a broker: what sends children to workers (runner.distributed.dispatch), whose
    # `child_runner()` gives the ChildRunner of children on workers.
    dispatcher: Any = None
    once: OnceBoard = field(default_factory=OnceBoard)  # `run_once` results of the run


@dataclass(frozen=True)
class ChildTask:
    """One child: its job, host, id in the store and stop switch."""

    jp: JobPlan
    host: str
    child: int
    control: Control


@dataclass(frozen=True)
class BackgroundTask:
    """A background child as its worker receives it: plain data, JSON on the worker's stdin."""

    request: PlanRequest
    job: str
    host: str
    child: int
    store: str
    registered: dict[str, Any]  # the host's values registered by earlier jobs
    check: bool
    diff: bool
    detach: bool
    runner: int  # the runner's pid: an attached worker ends when it is gone
    controller: str | None = None  # on a worker machine: the runner's identity instead
    cwd: str = ""  # the runner's directory: where relative result files go on a worker
    # ansible-vault passwords ([label, hex]), for a worker on a pipe of this machine only:
    # never in the store nor a broker's message (a worker there has its own)
    vault: list[list[str]] = field(default_factory=list)

    @staticmethod
    def from_json(data: dict[str, Any]) -> BackgroundTask:
        return BackgroundTask(**{**data, "request": PlanRequest.from_json(data["request"])})


def remember(plan: Plan, registered: dict[str, Any], values: dict[str, Any]) -> None:
    """Add registered `values` to a host's `registered`, masking those the playbook calls
    secret from then on (as a step registering them does)."""
    registered.update(values)
    for name in plan.playbook.secrets:
        if name in values:
            plan.redactor.add(secret_values(values[name]))
