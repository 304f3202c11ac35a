"""What a run is planned from, as data: another process can plan it again the same way.

The planner is pure, so the same request gives the same plan; a background job's worker
(and later a worker on another machine) plans its job again from a `PlanRequest`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import PlaybookError

if TYPE_CHECKING:
    from runner.planning.inventory import Inventory
    from runner.planning.model import Playbook
    from runner.planning.planner import Plan


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
    force_handlers: bool = False  # `--force-handlers`: part of the plan every worker runs

    def anchored(self) -> PlanRequest:
        """This request with its files named by absolute paths (the playbook, an
        inventory file or directory, a `--limit @FILE`), for a process started in
        another directory: a worker run as a service plans from the same files."""
        import dataclasses
        import os.path

        inventory = self.inventory
        if inventory is not None and os.path.exists(inventory):  # not a list 'h1,h2,'
            inventory = os.path.abspath(inventory)
        limit = self.limit
        if limit is not None and limit.startswith("@"):
            limit = "@" + os.path.abspath(limit[1:])
        playbook = os.path.abspath(self.playbook)
        return dataclasses.replace(self, playbook=playbook, inventory=inventory, limit=limit)

    @staticmethod
    def from_json(data: dict[str, Any]) -> PlanRequest:
        return PlanRequest(
            **{**data, "tags": tuple(data["tags"]), "skip_tags": tuple(data["skip_tags"])}
        )


def playbook_digest(path: str) -> str:
    """The sha256 of a playbook's bytes ('' when it cannot be read: the planner says why)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return ""


def replan(request: PlanRequest) -> Plan:
    """The plan `request` describes, through the planner (for a worker in another process).

    A playbook whose bytes are not the ones the run validated is refused: the worker would
    otherwise run steps nobody planned or checked."""
    from runner.planning.inventory import implicit_localhost, load_inventory
    from runner.planning.playbook import load_playbook

    if request.digest and playbook_digest(request.playbook) != request.digest:
        raise PlaybookError(
            "the playbook changed after the run planned it: a background job runs only the "
            "plan its run validated (run the playbook again)",
            request.playbook,
        )
    playbook = load_playbook(request.playbook, schema_checked=bool(request.digest))
    inventory = (
        implicit_localhost() if request.inventory is None else load_inventory(request.inventory)
    )
    return plan_for(request, playbook, inventory)


def plan_for(request: PlanRequest, playbook: Playbook, inventory: Inventory) -> Plan:
    """The plan of a loaded playbook and inventory with the request's variables, limit,
    tags and start: the one way a run, `runner plan` and a worker all plan."""
    from runner.planning.planner import build_plan

    return build_plan(
        playbook,
        inventory,
        extra_vars=request.extra_vars,
        limit=request.limit,
        tags=list(request.tags),
        skip_tags=list(request.skip_tags),
        start_at_job=request.start_at_job,
        force_handlers=request.force_handlers,
    )
