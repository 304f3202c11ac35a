"""What a run is planned from, as data: another process can plan it again the same way.

The planner is pure, so the same request gives the same plan; a background job's worker
(and later a worker on another machine) plans its job again from a `PlanRequest`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    """The plan `request` describes, through the planner (for a worker in another process)."""
    from runner.planning.inventory import implicit_localhost, load_inventory
    from runner.planning.planner import build_plan
    from runner.planning.playbook import load_playbook

    checked = bool(request.digest) and playbook_digest(request.playbook) == request.digest
    playbook = load_playbook(request.playbook, schema_checked=checked)
    inventory = (
        implicit_localhost() if request.inventory is None else load_inventory(request.inventory)
    )
    return build_plan(
        playbook,
        inventory,
        extra_vars=request.extra_vars,
        limit=request.limit,
        tags=list(request.tags),
        skip_tags=list(request.skip_tags),
        start_at_job=request.start_at_job,
    )
