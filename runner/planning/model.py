"""The playbook as data: frozen dataclasses built by `runner.planning.playbook.load_playbook`.

These are what the planner and the executor consume; they hold raw (unrendered)
template strings. Every object keeps the source line it came from so later errors
(an undefined variable at run time, say) can still point at the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

JOB_TYPES = ("remote", "background", "thread")
ACTIONS = (
    "run",
    "local",
    "put",
    "get",
    "template",
    "script",
    "file",
    "line",
    "package",
    "service",
    "assert",
    "fail",
    "debug",
    "vars",
)
RESULT_PLACES = ("controller", "file", "remote")
NO_LOG_TEXT = "(hidden: no_log)"  # a no_log step's command and output, wherever shown

# The PowerShell type name a user sees in `runner job list`, by `type:`.
PS_JOB_TYPE_NAMES = {"remote": "RemoteJob", "background": "BackgroundJob", "thread": "ThreadJob"}


@dataclass(frozen=True)
class Location:
    """Where a node of the playbook stands: 1-based line and column, and its key path."""

    file: str
    line: int
    col: int
    path: str  # e.g. "jobs[1].steps[0].run"


@dataclass(frozen=True)
class Step:
    """One step of a job. `args` is a string for run/local/script, a dict for put/get/template
    and the controller's actions (assert, fail, debug, vars: see runner.planning.logic)."""

    index: int
    name: str
    action: str
    args: Any
    where: Location
    when: str | None = None
    register: str | None = None
    loop: Any = None  # a list, or a template string that renders to a list
    ignore_errors: bool = False
    timeout: float | None = None
    retries: int = 0
    until: str | None = None
    delay: float = 1.0
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    sudo: bool = False
    no_log: bool = False
    tags: tuple[str, ...] = ()
    changed_when: str | None = None  # an expression over the step's result
    failed_when: str | None = None
    creates: str | None = None  # a path: run/script is skipped where it exists
    removes: str | None = None  # a path: run/script is skipped where it is absent
    notify: tuple[str, ...] = ()  # handlers of the job to run when this step changed
    run_once: bool = False  # on the batch's first host only, its result for every host
    delegate_to: str | None = None  # a template: the inventory host the step runs on
    handler: str | None = None  # a handler's name as `notify` gives it (None: a step)
    section: str = ""  # the blocks it is in, as `runner plan` shows them ("setup > rescue")
    scope_vars: dict[str, Any] = field(default_factory=dict)  # its blocks' and includes' vars


@dataclass(frozen=True)
class Block:
    """A `block:` (or an `include:` of steps) of a job. Its parts hold the indexes of
    steps in `JobDef.steps` and inner blocks, in order."""

    where: Location
    body: tuple[int | Block, ...]
    rescue: tuple[int | Block, ...] = ()
    always: tuple[int | Block, ...] = ()


@dataclass(frozen=True)
class Results:
    """Where a job's output goes: the controller's store, a local file per host, or the target."""

    to: str = "controller"
    path: str | None = None  # template, required when to == "file"


@dataclass(frozen=True)
class SessionDef:
    """A named persistent session: one connection per host, reused by every job naming it."""

    name: str
    targets: str
    where: Location
    user: str | None = None
    port: int | None = None
    connect_timeout: float | None = None
    vars: dict[str, Any] = field(default_factory=dict)  # for every job run over the session


@dataclass(frozen=True)
class JobDef:
    """A job as written. At most one of `session` and `targets` is set (checked on load);
    only a thread or background job may have neither: it runs on the controller."""

    name: str
    type: str
    steps: tuple[Step, ...]
    where: Location
    session: str | None = None
    targets: str | None = None
    needs: tuple[str, ...] = ()
    detach: bool = False
    results: Results = field(default_factory=Results)
    throttle: int | None = None
    serial: Any = None  # int, "30%", or a list of those (rolling batches, as Ansible)
    max_fail_percentage: float | None = None
    any_errors_fatal: bool = False
    retries: int = 0  # runs again of a child whose host or worker was lost (never a failed step)
    tags: tuple[str, ...] = ()
    timeout: float | None = None
    vars: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None  # the workers' queue of its children (distributed mode only)
    handlers: tuple[Step, ...] = ()  # run after the steps, each once, when notified
    # Its steps and blocks in order when it has a block (`steps` is then every step of
    # them, flattened); None when its steps simply run one after another.
    tree: tuple[int | Block, ...] | None = None


@dataclass(frozen=True)
class Playbook:
    """A loaded, schema-valid, semantically checked playbook."""

    file: str
    name: str
    vars: dict[str, Any]
    sessions: dict[str, SessionDef]
    jobs: tuple[JobDef, ...]
    secrets: tuple[str, ...] = ()  # names of variables whose values are masked everywhere
