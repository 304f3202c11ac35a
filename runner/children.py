"""One interface for every kind of child job: how the executor hands a child to what runs it.

A `ChildRunner` runs one child (one job on one host) given a `RunContext`, what the run
shares (the plan, the store and its writer, connections, registered values, check/diff,
the events sink), and a `ChildTask`, the child itself. It returns a `ChildReport`; it
never holds the executor. Three kinds:

- `InProcessChild`: `remote` and `thread` jobs, whose steps run in this process (over
  SSH, or on the controller);
- `BackgroundChild`: `background` jobs, each child in its own OS process on the
  controller (`runner.background`), which is handed a `BackgroundTask` and runs the child
  with an `InProcessChild` of its own, exactly as a thread job runs;
- `KeptChild`: children kept on their targets (`detach`, `results.to: remote`), whose
  steps run there as one script (`runner.kept`, `runner.remote`).

This is also the seam a dispatcher running children elsewhere plugs into: a
`BackgroundTask` is plain data (JSON) that says everything a worker needs.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from runner.guard import confine_located, secret_values
from runner.output import FileWriter
from runner.planner import JobPlan, Plan
from runner.steps import ChildReport, Control, StepRunner


@dataclass(frozen=True)
class PlanRequest:
    """What a run was planned from, so another process can plan it again the same way.

    `extra_vars` are the parsed values (an `@file` is not read twice), carried as JSON (a
    value JSON cannot hold, such as a YAML date, arrives as its text, as it renders);
    `digest` is the sha256 of the playbook's bytes the run validated: a worker reading
    the same bytes skips the schema pass, any other bytes are validated in full."""

    playbook: str
    inventory: str | None = None
    extra_vars: dict[str, Any] = field(default_factory=dict)
    limit: str | None = None
    tags: tuple[str, ...] = ()
    skip_tags: tuple[str, ...] = ()
    start_at_job: str | None = None
    digest: str = ""

    @staticmethod
    def from_json(data: dict[str, Any]) -> PlanRequest:
        return PlanRequest(**{**data, "tags": tuple(data["tags"]),
                              "skip_tags": tuple(data["skip_tags"])})


@dataclass
class RunContext:
    """What every child of a run shares. `registered` maps host -> its registered values.
    `record_groups`: record each step's process group on the child (off in a background
    worker, whose own process is the child's recorded one and holds its steps' groups)."""

    plan: Plan
    store: Any  # runner.store.JobStore
    writer: Any  # runner.output.StoreWriter
    files: FileWriter
    sessions: Any  # runner.sessions.SessionPool
    registered: dict[str, dict[str, Any]]
    events: Any = None
    check: bool = False
    diff: bool = False
    request: PlanRequest | None = None  # for children planned again in another process
    store_path: Path | None = None
    record_groups: bool = True


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

    @staticmethod
    def from_json(data: dict[str, Any]) -> BackgroundTask:
        return BackgroundTask(**{**data, "request": PlanRequest.from_json(data["request"])})


class ChildRunner(Protocol):
    """Runs one child to its end (or, detached, to its start) and says how it went."""

    def run(self, context: RunContext, task: ChildTask) -> ChildReport: ...


class InProcessChild:
    """`remote` and `thread` children (and a background worker's child): a StepRunner over
    the host's connection, or the controller's for a thread or background job."""

    def run(self, context: RunContext, task: ChildTask) -> ChildReport:
        jp, host, child = task.jp, task.host, task.child
        sink = open_sink(context.plan, jp, host, child, context.writer, context.files)
        local = context.sessions.local(host)
        conn = context.sessions.acquire(jp, host) if jp.job.type == "remote" else local
        runtime = functools.partial(context.writer.set_runtime, child)
        try:
            runner = StepRunner(
                context.plan, jp, host, child, conn, local, sink, context.writer,
                task.control, context.registered.setdefault(host, {}), context.events,
                context.check, diff=context.diff,
                runtime=runtime if context.record_groups else None,
            )
            return runner.run_all()
        finally:
            if conn is not local:
                context.sessions.release(jp, host, conn)
            context.files.close_job(child)


class BackgroundChild:
    """`background` children: a worker process on the controller per child."""

    def run(self, context: RunContext, task: ChildTask) -> ChildReport:
        from runner.background import run_background_child

        return run_background_child(context, task)


class KeptChild:
    """Children kept on their targets: their output stays there until it is fetched, so
    nothing is opened for it here (no result file)."""

    def run(self, context: RunContext, task: ChildTask) -> ChildReport:
        from runner.kept import run_kept_child

        return run_kept_child(context, task)


def child_runner(jp: JobPlan) -> ChildRunner:
    """The runner for `jp`'s children."""
    if jp.job.type == "background":
        return BackgroundChild()
    if jp.job.type == "remote" and kept_on_target(jp):
        return KeptChild()
    return InProcessChild()


def kept_on_target(jp: JobPlan) -> bool:
    """A job whose children run on as scripts on their targets (see runner.remote)."""
    return jp.job.detach or jp.job.results.to == "remote"


def remember(plan: Plan, registered: dict[str, Any], values: dict[str, Any]) -> None:
    """Add registered `values` to a host's `registered`, masking those the playbook calls
    secret from then on (as a step registering them does)."""
    registered.update(values)
    for name in plan.playbook.secrets:
        if name in values:
            plan.redactor.add(secret_values(values[name]))


def open_sink(
    plan: Plan, jp: JobPlan, host: str, child: int, writer: Any, files: FileWriter
) -> Any:
    """Where a child's output goes: the store's batched writer, or its own result file."""
    sink = writer.write
    if jp.job.results.to == "file":
        files.open(child, Path(render_results_path(plan, jp, host)))
        sink = files.write
    redact = plan.redactor
    if not redact:
        return sink

    def masked(job_id: int, host_: str, step: int, stream: str, data: str) -> None:
        sink(job_id, host_, step, stream, redact(data))

    return masked


def render_results_path(plan: Plan, jp: JobPlan, host: str) -> str:
    """A child's result file, confined to the directory the path's literal part names."""
    variables = plan.variables(host, jp.job)
    template = str(jp.job.results.path)
    rendered = str(plan.templar.render(template, variables, jp.job.where))
    return confine_located(template, rendered, "results.path", jp.job.where)


def playbook_digest(path: str) -> str:
    """The sha256 of a playbook's bytes ('' when it cannot be read: the planner says why)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return ""


def replan(request: PlanRequest) -> Plan:
    """The plan `request` describes, through the planner (for a worker in another process)."""
    from runner.inventory import implicit_localhost, load_inventory
    from runner.planner import build_plan
    from runner.playbook import load_playbook

    checked = bool(request.digest) and playbook_digest(request.playbook) == request.digest
    playbook = load_playbook(request.playbook, schema_checked=checked)
    inventory = (implicit_localhost() if request.inventory is None
                 else load_inventory(request.inventory))
    return build_plan(
        playbook, inventory, extra_vars=request.extra_vars, limit=request.limit,
        tags=list(request.tags), skip_tags=list(request.skip_tags),
        start_at_job=request.start_at_job,
    )
