"""Handlers, `run_once` and `delegate_to` as a playbook writes them: the rules a schema
cannot state.

A handler is a step of a job's `handlers:` list. It runs on a host only when a step of
the same job notified it there (`notify:` on a step that reported changed), once, after
the job's steps, in the order of `handlers:`. Its `Step.name` says it is a handler
(`handler: restart app`) wherever a run shows or keeps it; `Step.handler` keeps the name
`notify` gives. A handler's index follows the job's steps, so each has a row of its own
in the store.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from runner.errors import LocatedError, PlaybookError
from runner.planning.blocks import walk_steps
from runner.planning.model import JobDef, Step
from runner.planning.schema import did_you_mean

if TYPE_CHECKING:
    from runner.planning.inventory import Inventory
    from runner.planning.model import Playbook
    from runner.planning.yamlsource import Document, KeyPath

HANDLER_PREFIX = "handler: "
CONTROLLER = "localhost"  # `delegate_to: localhost` runs on the controller
_MARKERS = ("{{", "{%", "{#")


def as_handler(step: Step) -> Step:
    """A step of `handlers:` as a handler: named so that it says what it is."""
    return dataclasses.replace(step, name=HANDLER_PREFIX + step.name, handler=step.name)


def step_specs(job: Any, path: KeyPath) -> list[tuple[KeyPath, dict[str, Any]]]:
    """(key path, spec) of each step (inside blocks too) and handler of the job at `path`
    as written, for the checks that read the document itself."""
    if not isinstance(job, dict):
        return []
    return [
        *walk_steps(job.get("steps"), (*path, "steps")),
        *walk_steps(job.get("handlers"), (*path, "handlers")),
    ]


def check_flow(document: Document, jobs: tuple[JobDef, ...]) -> Iterator[LocatedError]:
    """Every `notify` names a handler of its job; handler names are unique; and what
    needs the runner's hosts in one process is refused where they are not."""
    for index, job in enumerate(jobs):
        path: KeyPath = ("jobs", index)
        yield from _check_handlers(document, path, job)
        yield from _check_notify(document, path, job)
        yield from _check_placement(document, path, job)


def _check_handlers(document: Document, path: KeyPath, job: JobDef) -> Iterator[LocatedError]:
    seen: set[str] = set()
    for position, handler in enumerate(job.handlers):
        where = path + ("handlers", position)
        assert handler.handler is not None
        if handler.handler in seen:
            yield document.error(f"duplicate handler name '{handler.handler}'", where + ("name",))
        seen.add(handler.handler)
        if handler.notify:
            message = "a handler cannot notify: list the handlers to run in order instead"
            yield document.error(message, where + ("notify",))
        if handler.run_once:
            yield document.error("a handler cannot be run_once", where + ("run_once",))


def _check_notify(document: Document, path: KeyPath, job: JobDef) -> Iterator[LocatedError]:
    names = [h.handler for h in job.handlers if h.handler is not None]
    for position, step in enumerate(job.steps):
        for number, name in enumerate(step.notify):
            if name in names:
                continue
            hint = did_you_mean(name, names) if names else " (the job has no handlers:)"
            message = f"notifies unknown handler '{name}'{hint}"
            if job.tree is not None:  # in a block or an included file: placed at its step
                w = step.where
                yield document.error_class(message, w.file, w.line, w.col, f"{w.path}.notify")
                continue
            written = document.data["jobs"][path[1]]["steps"][position].get("notify")
            where = path + ("steps", position, "notify")
            if isinstance(written, list):
                where += (written.index(name) if name in written else number,)
            yield document.error(message, where)


def _check_placement(document: Document, path: KeyPath, job: JobDef) -> Iterator[LocatedError]:
    """A job kept on its target runs as one script there, without the runner: it cannot
    run handlers. A background job's children each run in a process of their own, so no
    host can wait for another's `run_once`, and they open no connection but the
    controller's."""
    if job.handlers and job.type == "remote" and (job.detach or job.results.to == "remote"):
        kind = "a detached job" if job.detach else "a job with results.to: remote"
        yield document.error(
            f"{kind} cannot have handlers: it runs on its targets as one script, without "
            "the runner that would decide which handlers were notified",
            path + ("handlers",),
        )
    if job.type != "background":
        return
    for key, steps in (("steps", job.steps), ("handlers", job.handlers)):
        for position, step in enumerate(steps):
            where = path + (key, position)
            if step.run_once:
                yield document.error(
                    "run_once cannot be used in a background job: its hosts run in separate "
                    "processes that cannot wait for each other (use type: thread)",
                    where + ("run_once",),
                )
            if step.delegate_to is not None and step.delegate_to != CONTROLLER:
                yield document.error(
                    "a background job can delegate only to localhost: its process opens no "
                    "connection to another host (use type: thread)",
                    where + ("delegate_to",),
                )


def check_delegates(playbook: Playbook, inventory: Inventory) -> None:
    """Refuse a literal `delegate_to` naming no host of the inventory (a template is
    checked when it renders, at run time)."""
    for job in playbook.jobs:
        for step in job.steps + job.handlers:
            target = step.delegate_to
            if target is None or target == CONTROLLER or any(m in target for m in _MARKERS):
                continue
            if target not in inventory.hosts:
                where = step.where
                hint = did_you_mean(target, inventory.hosts)
                raise PlaybookError(
                    f"unknown host '{target}'{hint}: not in the inventory",
                    where.file,
                    where.line,
                    where.col,
                    f"{where.path}.delegate_to",
                )
